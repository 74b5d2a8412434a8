"""The safety rails for real clusters: a kubeconfig context is aimed at only when allowlisted, a
URL or DNS server beyond loopback only when named again in --allow-api / --allow-dns; and the
static token file. No test here connects beyond loopback (192.0.2.1 is TEST-NET-1: parsed only).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from loadlab.errors import EXIT_USAGE, UsageError
from loadlab.targets.address import loopback_targets, parse_api_url
from loadlab.targets.cluster import api_access, check_context_allowed, load_kubeconfig
from loadlab.targets.credentials import read_token_file
from loadlab.targets.http import probe_http
from tests.targets.pki import kubeconfig

REFUSAL = (
    "context test: not allowlisted; pass --allow-context test "
    "(or allow_contexts: in the profile) to aim load at it"
)


@asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A plain-HTTP server on loopback that counts the connections it accepts."""
    accepted: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.realtime
def test_an_unlisted_context_is_refused_before_any_connection(tmp_path: Path) -> None:
    async def body() -> None:
        async with counting_server() as (url, accepted):
            path = kubeconfig(tmp_path / "config", server=url, user={"token": "t"})
            with pytest.raises(UsageError) as early:
                await load_kubeconfig(path, None, allow_contexts=["prod-eu"])
            access = await load_kubeconfig(path, None)
            with pytest.raises(UsageError) as late:
                check_context_allowed(access, ["prod-eu"])
            assert accepted == []
            assert str(early.value) == str(late.value) == REFUSAL
            assert late.value.exit_code == EXIT_USAGE
            # The control: once allowlisted, the same target is reached. The server accepts in
            # order, so a connection made before the probe's two (GET / and GET /api, each
            # closed by the server) would be counted by now too.
            check_context_allowed(access, ["prod-eu", "test"])
            await probe_http(access.server, 2.0, access=access)
            assert len(accepted) == 2

    asyncio.run(body())


def test_a_context_beyond_loopback_is_loaded_and_allowed_by_name_only(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server="https://192.0.2.1:6443", context="prod-eu")
    access = asyncio.run(load_kubeconfig(path, None))
    assert (access.server, access.context) == ("https://192.0.2.1:6443", "prod-eu")
    with pytest.raises(UsageError, match=r"^context prod-eu: not allowlisted; pass --allow-cont"):
        check_context_allowed(access, [])
    check_context_allowed(access, ["prod-eu"])


def test_api_and_sim_targets_name_no_context_so_the_allowlist_does_not_apply() -> None:
    access = api_access("http://127.0.0.1:6443/")
    assert (access.server, access.context, access.ssl) == ("http://127.0.0.1:6443", None, None)
    check_context_allowed(access, [])
    assert access.credentials.authorization("system:node:node-1") == "Bearer system:node:node-1"
    assert access.credentials.authorization(None) is None


@pytest.mark.parametrize(
    ("api", "allow"),
    [
        pytest.param("https://192.0.2.1:6443", [], id="no-allow"),
        pytest.param("https://192.0.2.1:6443", ["https://192.0.2.1:6444"], id="other-port"),
        pytest.param("https://192.0.2.1:6443", ["http://192.0.2.1:6443"], id="other-scheme"),
        pytest.param("https://192.0.2.1:6443/x", ["https://192.0.2.1:6443"], id="other-path"),
        pytest.param("https://kube.example:6443", ["https://kube.example.com:6443"], id="name"),
    ],
)
def test_api_beyond_loopback_is_refused_unless_allowlisted_exactly(
    api: str, allow: list[str]
) -> None:
    with pytest.raises(UsageError) as caught:
        loopback_targets(api, None, allow_api=allow)
    message = str(caught.value)
    assert "loadlab aims only at loopback" in message
    assert message.endswith(f"pass --allow-api {api.lower()} to aim load at it")


@pytest.mark.parametrize(
    ("api", "allow", "base_url"),
    [
        pytest.param(
            "https://192.0.2.1:6443", "https://192.0.2.1:6443", "https://192.0.2.1:6443", id="same"
        ),
        pytest.param(
            "HTTPS://192.0.2.1:6443/", "https://192.0.2.1:6443", "https://192.0.2.1:6443", id="case"
        ),
        pytest.param(
            "https://192.0.2.1", "https://192.0.2.1:443", "https://192.0.2.1:443", id="port"
        ),
        pytest.param(
            "https://[2001:db8::1]:6443",
            "https://[2001:0db8:0:0::1]:6443",
            "https://[2001:db8::1]:6443",
            id="v6-spelling",
        ),
        pytest.param(
            "https://Kube.Example.:6443/",
            "https://kube.example:6443",
            "https://kube.example:6443",
            id="name",
        ),
    ],
)
def test_api_beyond_loopback_passes_when_allowlisted_after_normalising(
    api: str, allow: str, base_url: str
) -> None:
    assert loopback_targets(api, None, allow_api=[allow]) == (base_url, None)
    assert parse_api_url(api, allow=[allow]).base_url == base_url


def test_loopback_needs_no_allowlist_and_localhost_is_still_mapped() -> None:
    assert loopback_targets("http://localhost:6443", "localhost:1053") == (
        "http://127.0.0.1:6443",
        "127.0.0.1:1053",
    )


@pytest.mark.parametrize(
    ("dns", "allow", "expected"),
    [
        pytest.param(
            "192.0.2.1:53", [], "pass --allow-dns 192.0.2.1:53 to aim load at it", id="none"
        ),
        pytest.param("192.0.2.1", ["192.0.2.1:5353"], "pass --allow-dns 192.0.2.1:53", id="port"),
        pytest.param(
            "coredns.example:53", ["coredns.example:53"], "given as IP:PORT", id="name-never"
        ),
    ],
)
def test_dns_beyond_loopback_is_refused_unless_its_ip_is_allowlisted(
    dns: str, allow: list[str], expected: str
) -> None:
    with pytest.raises(UsageError) as caught:
        loopback_targets(None, dns, allow_dns=allow)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"--dns {dns}: refusing to send load to")


@pytest.mark.parametrize(
    ("dns", "allow", "addr"),
    [
        pytest.param("192.0.2.1", ["192.0.2.1:53"], "192.0.2.1:53", id="default-port"),
        pytest.param("192.0.2.1:53", ["192.0.2.1"], "192.0.2.1:53", id="allow-default-port"),
        pytest.param("[2001:db8::a]:53", ["[2001:0db8::a]"], "[2001:db8::a]:53", id="v6"),
    ],
)
def test_dns_beyond_loopback_passes_when_allowlisted(dns: str, allow: list[str], addr: str) -> None:
    assert loopback_targets(None, dns, allow_dns=allow) == (None, addr)


def test_token_file_in_kube_apiserver_format_maps_users_to_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(
        'admin-tok,loadlab-admin,uid-0,"system:masters"\n'
        "\n"
        'node-1-tok,system:node:node-1,uid-1,"system:nodes,system:authenticated"\n'
        "telemetry-tok, system:serviceaccount:monitoring:telemetry, uid-2\n"
        "second-tok,system:node:node-1,uid-1\n"
    )
    assert read_token_file(path) == {
        "loadlab-admin": "admin-tok",
        "system:node:node-1": "node-1-tok",  # the first of a user's tokens
        "system:serviceaccount:monitoring:telemetry": "telemetry-tok",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a,b,c\nonly-two,cols\n", "line 2: expected token,user,uid", id="columns"),
        pytest.param("a,b,c\n\n,user,uid\n", "line 3: empty token", id="empty-token"),
        pytest.param('a,b,c\nt,u,"unclosed\n', "line 2", id="bad-quote"),
        pytest.param("\n\n", "no tokens in it", id="empty"),
    ],
)
def test_bad_token_files_are_one_line_naming_the_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        read_token_file(path)
    assert str(caught.value).startswith(f"--tokens-file {path}")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
