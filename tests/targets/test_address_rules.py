"""Addresses loadlab will aim at: loopback IP literals and ``localhost``, mapped by loadlab itself.

No name ever reaches the system resolver, so ``foo.localhost`` or an /etc/hosts entry cannot send
load elsewhere; every refusal is a UsageError (exit 2) whose line states the rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadlab.cli import main
from loadlab.errors import EXIT_USAGE, UsageError
from loadlab.targets.address import (
    ApiAddress,
    format_host_port,
    is_loopback,
    parse_api_url,
    parse_host_port,
    resolve_loopback,
)
from loadlab.testing.cli_output import assert_one_clear_line

RULE = "loadlab aims only at loopback: an IP in 127.0.0.0/8, ::1, or the name localhost"


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", id="v4"),
        pytest.param("127.255.0.9", "127.255.0.9", id="v4-anywhere-in-8"),
        pytest.param("::1", "::1", id="v6"),
        pytest.param("[::1]", "::1", id="v6-bracketed"),
        pytest.param("0:0:0:0:0:0:0:1", "::1", id="v6-long-form"),
        pytest.param("localhost", "127.0.0.1", id="localhost"),
        pytest.param("LocalHost", "127.0.0.1", id="localhost-any-case"),
        pytest.param("localhost.", "127.0.0.1", id="localhost-trailing-dot"),
    ],
)
def test_loopback_hosts_resolve_to_an_ip_literal_without_the_resolver(host: str, ip: str) -> None:
    assert resolve_loopback(host) == ip
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("foo.localhost", id="subdomain-of-localhost"),
        pytest.param("localhost..", id="two-trailing-dots"),
        pytest.param("ip6-localhost", id="hosts-file-name"),
        pytest.param("kube.example.com", id="name"),
        pytest.param("127.1", id="short-v4-form"),
        pytest.param("0x7f.0.0.1", id="hex-v4"),
        pytest.param("::ffff:127.0.0.1", id="v4-mapped-v6"),
        pytest.param("::1%lo", id="scoped-v6"),
        pytest.param("0.0.0.0", id="unspecified"),
        pytest.param("192.0.2.1", id="test-net"),
        pytest.param("", id="empty"),
    ],
)
def test_every_other_host_is_refused_naming_the_rule(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError) as caught:
        resolve_loopback(host)
    assert str(caught.value).startswith(f"refusing to send load to {host}: {RULE}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "http://127.0.0.1:6443",
            ApiAddress("http", "127.0.0.1", "127.0.0.1", 6443, "", "http://127.0.0.1:6443"),
            id="v4",
        ),
        pytest.param(
            "http://localhost:8080",
            ApiAddress("http", "localhost", "127.0.0.1", 8080, "", "http://127.0.0.1:8080"),
            id="localhost-mapped-by-loadlab",
        ),
        pytest.param(
            "HTTPS://LOCALHOST./",
            ApiAddress("https", "LOCALHOST.", "127.0.0.1", 443, "", "https://127.0.0.1:443"),
            id="https-default-port",
        ),
        pytest.param(
            "http://[::1]:6443",
            ApiAddress("http", "::1", "::1", 6443, "", "http://[::1]:6443"),
            id="v6-bracketed",
        ),
        pytest.param(
            "http://127.0.0.1",
            ApiAddress("http", "127.0.0.1", "127.0.0.1", 80, "", "http://127.0.0.1:80"),
            id="http-default-port",
        ),
        pytest.param(
            "http://localhost:6443/prefix/",
            ApiAddress(
                "http", "localhost", "127.0.0.1", 6443, "/prefix", "http://127.0.0.1:6443/prefix"
            ),
            id="path-prefix-allowed",
        ),
    ],
)
def test_api_url_gives_an_address_with_nothing_left_to_resolve(
    url: str, expected: ApiAddress
) -> None:
    assert parse_api_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://127.0.0.1:6443/?x=1", "a query string or fragment", id="query"),
        pytest.param("http://127.0.0.1:6443/?", "a query string or fragment", id="empty-query"),
        pytest.param("http://127.0.0.1:6443/#frag", "a query string or fragment", id="fragment"),
        pytest.param(
            "http://user:pw@127.0.0.1",
            "--api http://...@127.0.0.1: credentials in the URL are not supported",
            id="userinfo",
        ),
        pytest.param("ftp://127.0.0.1", "scheme 'ftp' is not supported", id="ftp"),
        pytest.param("unix:///run/k.sock", "scheme 'unix' is not supported", id="unix"),
        pytest.param("127.0.0.1:6443", "not a URL", id="no-scheme"),
        pytest.param("http://", "no host", id="no-host"),
        pytest.param("http://[::1", "not a URL", id="unclosed-bracket"),
        pytest.param("http://::1:6443", "an IPv6 address needs brackets", id="v6-unbracketed"),
        pytest.param("http://127.0.0.1:99999", "expected a number from 1 to 65535", id="port-big"),
        pytest.param("http://127.0.0.1:0", "expected a number from 1 to 65535", id="port-0"),
        pytest.param("http://127.0.0.1:", "got nothing", id="port-empty"),
        pytest.param("http://127.0.0.1:\u0663", "from 1 to 65535", id="port-non-ascii-digit"),
        pytest.param("http://127.0.0.1\n:6443", "control character", id="newline"),
        pytest.param("http://foo.localhost:6443", RULE, id="subdomain-of-localhost"),
        pytest.param("http://192.0.2.1:6443", RULE, id="not-loopback"),
    ],
)
def test_api_url_refusals_are_one_usage_error(url: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_api_url(url)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value)  # a password is never echoed


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        pytest.param("127.0.0.1:", "bad port in '127.0.0.1:'", id="empty-port"),
        pytest.param("[::1]:", "bad port in '[::1]:'", id="v6-empty-port"),
        pytest.param("127.0.0.1:99999", "got '99999'", id="port-big"),
        pytest.param("127.0.0.1:0", "got '0'", id="port-0"),
        pytest.param("127.0.0.1:" + "9" * 5000, "expected a number from 1 to 65535", id="huge"),
    ],
)
def test_host_port_refuses_ports_outside_1_to_65535(addr: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_host_port(addr, default_port=53)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [("127.0.0.1", 53, "127.0.0.1:53"), ("::1", 5353, "[::1]:5353")],
    ids=["v4", "v6"],
)
def test_format_host_port_round_trips(host: str, port: int, text: str) -> None:
    assert format_host_port(host, port) == text
    assert parse_host_port(text, default_port=1) == (host, port)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["dns-knee", "--dns", "127.0.0.1:"], "bad port", id="dns-empty-port"),
        pytest.param(["dns-knee", "--dns", "127.0.0.1:99999"], "bad port", id="dns-port-big"),
        pytest.param(["dns-knee", "--dns", "foo.localhost:53"], RULE, id="dns-subdomain"),
        pytest.param(["http-knee", "--api", "http://foo.localhost:1"], RULE, id="api-subdomain"),
        pytest.param(
            ["http-knee", "--api", "ftp://127.0.0.1:1"],
            "expected a URL like http://127.0.0.1:6443",
            id="api-scheme",
        ),
    ],
)
def test_cli_refuses_bad_addresses_before_any_traffic(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], expected: str
) -> None:
    assert main(["run", *args, "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert expected in assert_one_clear_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
