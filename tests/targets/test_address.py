"""The loopback guard and HOST:PORT parsing."""

from __future__ import annotations

import pytest

from loadlab.errors import UsageError
from loadlab.targets.address import parse_host_port, resolve_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_guard_lets_loopback_through(host: str) -> None:
    resolve_loopback(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "192.0.2.1", "2001:db8::1", "kube.example.com", "api.localhost"]
)
def test_guard_refuses_anything_else_naming_the_rule(host: str) -> None:
    with pytest.raises(UsageError, match="aims only at loopback"):
        resolve_loopback(host)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("localhost:10053", ("localhost", 10053)),
    ],
)
def test_host_port_parses_the_usual_spellings(addr: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(addr, default_port=53) == expected


@pytest.mark.parametrize(
    "addr", ["127.0.0.1:0", "127.0.0.1:dns", ":53", "[::1", "h:70000", "127.0.0.1:", "[::1]:"]
)
def test_host_port_refuses_bad_addresses(addr: str) -> None:
    with pytest.raises(UsageError):
        parse_host_port(addr, default_port=53)
