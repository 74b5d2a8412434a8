"""What only the lean agent client has: its bounded pool, FIFO waiting, the sweep that times calls
out, and the bytes it renders. What both agent clients share is in ``test_agent_http``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time

import pytest

from loadlab.agents.base import ApiCall, ApiReply, Identity
from loadlab.clock import NS_PER_S, FakeClock
from loadlab.targets.agent_fast_http import FastAgentHttpClient
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import ClusterAccess
from loadlab.targets.credentials import KubeconfigCredentials
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from loadlab.testing.waiting import wait_for
from tests.targets.helpers import sweeper_asleep
from tests.targets.test_fast_http import SILENT, Wire, ok, raw_server

NODE_1 = Identity("system:node:node-1", "kubelet/v1.32 (loadlab) node-1")
TIMEOUT_S = 5.0
GET = ApiCall("get-lease", "GET", "/lease")
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def paths(wire: Wire) -> list[str]:
    return [head.split(" ")[1] for head in wire.heads]


@pytest.mark.realtime
def test_the_pool_never_opens_more_than_pool_connections() -> None:
    """Two herds of 500 calls at once through 3 connections: 3 are opened, and kept."""

    async def go() -> tuple[list[ApiReply], int, int]:
        async with (
            HostileHttpServer(HttpBehaviour.OK) as server,
            FastAgentHttpClient(server.url, pool_connections=3, timeout_s=TIMEOUT_S) as client,
        ):
            replies = await asyncio.gather(*[client.call(NODE_1, GET) for _ in range(500)])
            replies += await asyncio.gather(*[client.call(NODE_1, GET) for _ in range(500)])
            stats = server.stats()
            return replies, stats.connections, stats.requests

    replies, connections, requests = asyncio.run(go())
    assert {(r.status, r.outcome) for r in replies} == {(200, Outcome.OK)}
    assert (connections, requests) == (3, 1000)


@pytest.mark.realtime
def test_calls_that_find_every_connection_busy_are_sent_in_the_order_they_came() -> None:
    wire = Wire()

    async def go() -> None:
        async with (
            raw_server(lambda n, path: ok(), wire) as url,
            FastAgentHttpClient(url, pool_connections=1, timeout_s=TIMEOUT_S) as client,
        ):
            calls = [ApiCall("get", "GET", f"/{i}") for i in range(40)]
            await asyncio.gather(*[client.call(NODE_1, call) for call in calls])

    asyncio.run(go())
    assert (wire.connections, paths(wire)) == (1, [f"/{i}" for i in range(40)])


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.realtime
def test_a_call_on_a_connection_the_server_closed_while_idle_is_a_conn_error_never_resent() -> None:
    """The server closes the kept-alive connection between two calls, and the client writes the
    second before it has read the close (the test holds the event loop until the close is sent):
    the request is lost, so CONN_ERROR, and it must not reach the server a second time."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(TIMEOUT_S)
    heads: list[bytes] = []
    close_now, closed = threading.Event(), threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            heads.append(_read_head(conn))
            conn.sendall(OK_ANSWER)
            close_now.wait(TIMEOUT_S)
        closed.set()
        conn, _ = listener.accept()  # the next connection: whatever comes on it is counted
        with conn:
            conn.settimeout(TIMEOUT_S)
            while head := _read_head(conn):
                heads.append(head)
                conn.sendall(OK_ANSWER)

    async def go() -> list[ApiReply]:
        url = f"http://127.0.0.1:{port}"
        async with FastAgentHttpClient(url, pool_connections=1, timeout_s=TIMEOUT_S) as client:
            first = await client.call(NODE_1, GET)
            close_now.set()
            assert closed.wait(TIMEOUT_S)  # blocks the loop on purpose: the FIN is not read yet
            second = await client.call(NODE_1, GET)
            third = await client.call(NODE_1, GET)
        return [first, second, third]

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with listener:
        replies = asyncio.run(go())
        server.join(TIMEOUT_S)
    assert [(r.status, r.outcome) for r in replies] == [
        (200, Outcome.OK),
        (0, Outcome.CONN_ERROR),
        (200, Outcome.OK),
    ]
    assert len(heads) == 2  # the first and the third: the second was never sent again


@pytest.mark.realtime
def test_a_silent_call_times_out_at_the_first_sweep_past_its_deadline_and_is_disconnected() -> None:
    """On a fake clock: a 10 s call first (a sweep every second), then a 0.2 s one to a silent
    path (the sweep restarts every 20 ms) and one waiting behind it with 10 s. The silent call
    ends at the first sweep past 0.2 s, its connection is closed, and the waiting call goes on a
    new one. The replies' ``now_ns`` are the fake clock's."""
    wire = Wire()
    clock = FakeClock(1_000 * NS_PER_S)
    timeout_ns = NS_PER_S // 5

    async def go() -> tuple[int, list[ApiReply]]:
        async with (
            raw_server(lambda n, path: SILENT if path == "/silent" else ok(), wire) as url,
            FastAgentHttpClient(url, pool_connections=1, timeout_s=10, clock=clock) as client,
        ):
            warm = await client.call(NODE_1, GET)
            started_ns = clock.now_ns()
            silent = ApiCall("silent", "GET", "/silent", timeout_s=0.2)
            calls = [
                asyncio.ensure_future(client.call(NODE_1, silent)),
                asyncio.ensure_future(client.call(NODE_1, GET)),
            ]
            await wait_for(lambda: wire.requests == 2, "the silent call at the server")
            for _ in range(100):  # 2 s of sweeps: far past the timeout
                await wait_for(lambda: sweeper_asleep(clock), "the next sweep")
                if calls[0].done():
                    break
                clock.advance_to(clock.next_deadline_ns or 0)
            return started_ns, [warm, *await asyncio.gather(*calls)]

    started_ns, replies = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [
        (200, Outcome.OK),
        (0, Outcome.TIMEOUT),
        (200, Outcome.OK),
    ]
    waited_ns = replies[1].now_ns - started_ns
    assert timeout_ns <= waited_ns <= timeout_ns + timeout_ns // 10  # the sweep's resolution
    assert (wire.connections, paths(wire)) == (2, ["/lease", "/silent", "/lease"])


@pytest.mark.realtime
def test_calls_that_time_out_or_are_cancelled_while_waiting_are_never_sent() -> None:
    wire = Wire()

    async def go() -> list[ApiReply]:
        async with (
            raw_server(lambda n, path: SILENT if path == "/silent" else ok(), wire) as url,
            FastAgentHttpClient(url, pool_connections=1, timeout_s=TIMEOUT_S) as client,
        ):
            silent = ApiCall("silent", "GET", "/silent", timeout_s=0.3)
            waits = ApiCall("waits", "GET", "/waits", timeout_s=0.1)
            busy, cancelled, waiting = [
                asyncio.ensure_future(client.call(NODE_1, call))
                for call in (silent, ApiCall("c", "GET", "/cancel"), waits)
            ]
            await wait_for(lambda: wire.requests == 1, "the silent call at the server")
            cancelled.cancel()
            replies = [await busy, await waiting, await client.call(NODE_1, GET)]
            assert cancelled.cancelled()
            return replies

    replies = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [
        (0, Outcome.TIMEOUT),
        (0, Outcome.TIMEOUT),
        (200, Outcome.OK),
    ]
    assert paths(wire) == ["/silent", "/lease"]


@pytest.mark.realtime
def test_close_ends_calls_in_flight_and_waiting_as_conn_errors() -> None:
    wire = Wire()

    async def go() -> list[ApiReply]:
        async with raw_server(lambda n, path: SILENT, wire) as url:
            client = FastAgentHttpClient(url, pool_connections=1, timeout_s=TIMEOUT_S)
            calls = [asyncio.ensure_future(client.call(NODE_1, GET)) for _ in range(3)]
            await wait_for(lambda: wire.requests == 1, "the first call at the server")
            await client.close()
            return list(await asyncio.gather(*calls))

    replies = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [(0, Outcome.CONN_ERROR)] * 3
    assert wire.requests == 1


@pytest.mark.realtime
def test_a_tls_handshake_that_never_comes_fails_the_call_at_the_connect_timeout() -> None:
    """A loopback listener that accepts and never answers: the TLS handshake waits for nothing.
    The pool gives up at its connect timeout (the client's ``timeout_s``), well before the call's
    own 60 s, and the next call connects again."""
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections.append(writer)
        await reader.read()

    async def go() -> tuple[list[ApiReply], int, float]:
        server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
        started = time.monotonic()
        port = server.sockets[0].getsockname()[1]
        call = ApiCall("get-lease", "GET", "/lease", timeout_s=60.0)
        try:
            async with FastAgentHttpClient(
                f"https://127.0.0.1:{port}",
                timeout_s=0.3,
                ssl_context=ssl.create_default_context(),
            ) as client:
                replies = [await client.call(NODE_1, call) for _ in range(2)]
                took_s = time.monotonic() - started
        finally:
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()
        return replies, len(connections), took_s

    replies, seen, took_s = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [(0, Outcome.CONN_ERROR)] * 2
    assert seen == 2
    assert took_s < 30.0  # two connect timeouts of 0.3 s, not a call's 60 s: a wide margin


def test_requests_are_rendered_with_agent_http_headers_host_and_length() -> None:
    client = FastAgentHttpClient("https://api.example:6443/prefix/")
    patch = ApiCall(
        "patch-node",
        "PATCH",
        "/api/v1/nodes/node 1/status",
        params={"fieldManager": "kubelet", "labelSelector": "a=b,c in (d)"},
        body={"status": {"phase": "Running"}},
        content_type="application/strategic-merge-patch+json",
    )
    body = b'{"status": {"phase": "Running"}}'
    assert client.render(NODE_1, patch) == (
        b"PATCH /prefix/api/v1/nodes/node%201/status"
        b"?fieldManager=kubelet&labelSelector=a%3Db%2Cc+in+%28d%29 HTTP/1.1\r\n"
        b"Host: api.example:6443\r\n"
        b"User-Agent: kubelet/v1.32 (loadlab) node-1\r\n"
        b"Accept: application/json\r\n"
        b"Authorization: Bearer system:node:node-1\r\n"
        b"Content-Type: application/strategic-merge-patch+json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    post = ApiCall("evict", "post", "/api/v1/x", content_type="ignored/without-a-body")
    assert client.render(NODE_1, post).endswith(
        b"Authorization: Bearer system:node:node-1\r\nContent-Length: 0\r\n\r\n"
    )


def test_a_kubeconfig_without_a_token_sends_no_authorization() -> None:
    access = ClusterAccess("http://127.0.0.1:1", "ctx", None, KubeconfigCredentials(None), "kc")
    client = FastAgentHttpClient(access.server, access=access)
    assert client.render(NODE_1, GET) == (
        b"GET /lease HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
        b"User-Agent: kubelet/v1.32 (loadlab) node-1\r\nAccept: application/json\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("identity", "call"),
    [
        pytest.param(Identity("u", "ua\r\nX-Evil: 1"), GET, id="line-break-in-a-header"),
        pytest.param(NODE_1, ApiCall("head", "HEAD", "/lease"), id="head"),
        pytest.param(NODE_1, ApiCall("bad", "GE T", "/lease"), id="space-in-the-method"),
    ],
)
def test_a_request_that_would_break_the_wire_is_refused_before_sending(
    identity: Identity, call: ApiCall
) -> None:
    client = FastAgentHttpClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"line break|not supported"):
        client.render(identity, call)


@pytest.mark.realtime
def test_an_answer_nobody_asked_for_closes_the_connection_and_the_next_call_opens_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = Wire()
    twice = ok() + ok()  # two answers to one request, in one write

    async def go() -> list[ApiReply]:
        async with (
            raw_server(lambda n, path: twice, wire) as url,
            FastAgentHttpClient(url, pool_connections=1, timeout_s=TIMEOUT_S) as client,
        ):
            return [await client.call(NODE_1, GET) for _ in range(2)]

    replies = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [(200, Outcome.OK)] * 2
    assert (wire.connections, wire.requests) == (2, 2)
    # Not an exception out of the parser's callbacks, which asyncio logs as a fatal error.
    assert [r for r in caplog.records if r.getMessage().startswith("Fatal error")] == []
