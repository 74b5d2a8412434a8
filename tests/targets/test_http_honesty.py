"""The HTTP target counts what the server saw: no resends, bounded bodies, visible pending requests,
clear TLS and file-descriptor errors. Real servers on loopback, written here at the socket level."""

from __future__ import annotations

import asyncio
import errno
import json
import resource
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.errors import TargetMisbehaving, TargetUnreachable, UsageError
from loadlab.targets.base import FD_MARGIN, Outcome, check_fd_budget
from loadlab.targets.http import HttpOperation, HttpTarget, probe_http
from loadlab.testing.fakes import Completion, FakeRecorder
from loadlab.testing.ports import closed_tcp_port
from loadlab.testing.waiting import wait_for

pytestmark = pytest.mark.realtime

MAX_REQUESTS_PER_CONNECTION = 100
"""Bounds each test server's loop over one connection's requests."""
SERVER_EXIT_TIMEOUT_S = 5.0

Respond = Callable[[int, str], bytes | None]
"""``(request number on this connection from 0, request path) -> answer``; None resets."""


@dataclass
class WireLog:
    """What the server saw."""

    connections: int = 0
    requests: int = 0


def ok(body: bytes = b"{}") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def chunked(body: bytes, chunk: int = 16 * 1024) -> bytes:
    """A 200 whose body comes in chunks, with no Content-Length to judge it by up front."""
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        parts.append(b"%x\r\n%b\r\n" % (len(piece), piece))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing or overloaded server would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@asynccontextmanager
async def raw_http_server(respond: Respond, log: WireLog) -> AsyncIterator[str]:
    """An HTTP/1.1 keep-alive server that answers each request with ``respond``."""
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        log.connections += 1
        try:
            for n in range(MAX_REQUESTS_PER_CONNECTION):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next(
                    (
                        int(line.split(":")[1])
                        for line in head.lower().split("\r\n")[1:]
                        if line.startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                log.requests += 1
                answer = respond(n, head.split(" ")[1])
                if answer is None:
                    reset(writer)
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return  # the client went away
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        if handlers:
            await asyncio.wait(handlers, timeout=SERVER_EXIT_TIMEOUT_S)
        await server.wait_closed()


async def send_in_order(
    url: str, ops: Sequence[HttpOperation], order: Sequence[int], **kwargs: object
) -> list[Completion]:
    """Send ``order`` over one connection, each request after the previous one completed."""
    clock = MonotonicClock()
    target = HttpTarget(url, ops, connections=1, clock=clock, **kwargs)  # type: ignore[arg-type]
    rec = FakeRecorder()
    await target.open(rec)
    try:
        for op in order:
            target.submit(op, clock.now_ns())
        await target.drain(clock.now_ns() + 10 * NS_PER_S)
    finally:
        await target.close()
    return rec.completions


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_http_target_never_resends_a_request_the_server_reset_on_a_reused_connection(
    method: str,
) -> None:
    """aiohttp resends idempotent requests once when a kept-alive connection fails; the server
    would then see three requests for two recorded."""
    log = WireLog()

    def second_request_resets(n: int, path: str) -> bytes | None:
        return ok(b"") if n == 0 else None

    async def go() -> list[Completion]:
        async with raw_http_server(second_request_resets, log) as url:
            body = b"{}" if method == "PUT" else None
            op = HttpOperation("op", method, "/x", body=body)
            return await send_in_order(url, [op], [0, 0])

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.OK, Outcome.CONN_ERROR]
    assert log.requests == len(completions) == 2
    assert log.connections == 1


BIG = b"x" * (256 * 1024)
LIMIT = 64 * 1024


def by_path(n: int, path: str) -> bytes:
    return {
        "/small": ok(),
        "/at-limit": ok(b"y" * LIMIT),
        "/big-length": ok(BIG),
        "/big-chunked": chunked(BIG),
    }[path]


SIZED_OPS = [
    HttpOperation("small", "GET", "/small"),
    HttpOperation("at-limit", "GET", "/at-limit"),
    HttpOperation("big-length", "GET", "/big-length"),
    HttpOperation("big-chunked", "GET", "/big-chunked"),
]


@pytest.mark.parametrize(
    ("op", "outcome", "connections"),
    [
        pytest.param(0, Outcome.OK, 1, id="small-body-keeps-the-connection"),
        pytest.param(1, Outcome.OK, 1, id="body-at-the-limit-is-fine"),
        pytest.param(2, Outcome.TOO_LARGE, 2, id="content-length-over-the-limit"),
        pytest.param(3, Outcome.TOO_LARGE, 2, id="chunked-body-over-the-limit"),
    ],
)
def test_http_target_ends_a_body_over_the_limit_as_too_large_and_drops_its_connection(
    op: int, outcome: Outcome, connections: int
) -> None:
    """The sized request, then a small one on the same worker: after TOO_LARGE it needs a new
    connection, since the rest of the big body was never read."""
    log = WireLog()

    async def go() -> list[Completion]:
        async with raw_http_server(by_path, log) as url:
            return await send_in_order(url, SIZED_OPS, [op, 0], max_body_bytes=LIMIT)

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [outcome, Outcome.OK]
    assert log.connections == connections
    assert log.requests == 2


def test_too_large_is_the_last_outcome_so_the_others_keep_their_values() -> None:
    assert max(Outcome) is Outcome.TOO_LARGE
    assert Outcome.TOO_LARGE.label == "too_large"
    assert [o.value for o in Outcome] == list(range(len(Outcome)))


def test_http_target_lists_every_queued_and_sending_request_with_its_intended_time() -> None:
    seen = WireLog()

    async def go() -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[Completion]]:
        release = asyncio.Event()

        async def hold(request: web.Request) -> web.Response:
            seen.requests += 1
            await release.wait()
            return web.Response()

        app = web.Application()
        app.router.add_get("/hold", hold)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ops = [HttpOperation("a", "GET", "/hold"), HttpOperation("b", "GET", "/hold")]
        target = HttpTarget(url, ops, connections=2)
        rec = FakeRecorder()
        try:
            await target.open(rec)
            for i in range(5):
                target.submit(i % 2, 1_000 + i)
            await wait_for(lambda: seen.requests == 2, "both connections' requests")
            while_held = target.pending_intended_ns()
            release.set()
            await wait_for(lambda: len(rec.completions) == 5, "every request to complete")
            after = target.pending_intended_ns()
        finally:
            await target.close()
            await runner.cleanup()
        return while_held, after, rec.completions

    while_held, after, completions = asyncio.run(go())
    assert sorted(while_held) == sorted((i % 2, 1_000 + i) for i in range(5))
    assert after == []
    assert [c.outcome for c in completions] == [Outcome.OK] * 5


@asynccontextmanager
async def aiohttp_server(routes: web.RouteTableDef) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_probe_http_says_the_scheme_is_wrong_when_tls_meets_plain_http() -> None:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        return web.Response(text="{}")

    async def go() -> None:
        async with aiohttp_server(routes) as hostport:
            await probe_http(f"https://{hostport}", timeout_s=2)

    with pytest.raises(TargetMisbehaving, match=r"does not speak TLS.*http vs https"):
        asyncio.run(go())


def test_probe_http_says_the_scheme_is_wrong_when_a_plain_server_stalls_the_handshake() -> None:
    """A server that waits for a header line never answers the TLS hello; plain HTTP it does."""
    log = WireLog()

    async def go() -> None:
        async with raw_http_server(lambda n, path: ok(), log) as url:
            await probe_http(url.replace("http://", "https://"), timeout_s=0.3)

    with pytest.raises(TargetMisbehaving, match=r"plain HTTP works.*http vs https"):
        asyncio.run(go())
    assert log.requests == 1  # the plain-HTTP check


GO_TLS_PORT_400 = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
"""What Go's net/http answers to plain HTTP on a TLS port (then it closes)."""


def test_probe_http_says_the_scheme_is_wrong_when_plain_http_meets_a_go_tls_port() -> None:
    log = WireLog()

    async def go() -> None:
        async with raw_http_server(lambda n, path: GO_TLS_PORT_400, log) as url:
            await probe_http(url, timeout_s=2)

    with pytest.raises(TargetMisbehaving, match=r"TLS port.*http vs https"):
        asyncio.run(go())


def test_probe_http_calls_a_stalled_handshake_slow_when_plain_http_meets_tls_there_too() -> None:
    """A slow TLS server: the hello stalls, and a plain request draws Go's TLS-port 400."""
    log = WireLog()

    async def go() -> None:
        async with raw_http_server(lambda n, path: GO_TLS_PORT_400, log) as url:
            await probe_http(url.replace("http://", "https://"), timeout_s=0.3)

    with pytest.raises(TargetUnreachable, match=r"did not answer within 0\.3 s"):
        asyncio.run(go())


def test_probe_http_passes_on_a_body_over_the_limit_without_reading_it_all() -> None:
    log = WireLog()

    async def go() -> None:
        async with raw_http_server(lambda n, path: chunked(BIG), log) as url:
            await probe_http(url, timeout_s=2, max_body_bytes=LIMIT)

    asyncio.run(go())
    assert log.requests == 1


def test_fd_budget_passes_under_the_limit_and_says_how_to_raise_it_over() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit to exceed")
    check_fd_budget(soft - FD_MARGIN)
    with pytest.raises(UsageError, match=r"open-file limit is \d+") as caught:
        check_fd_budget(soft - FD_MARGIN + 1)
    assert "\n" not in str(caught.value)
    assert "ulimit -n" in str(caught.value) or "hard limit" in str(caught.value)


FD_CHILD = textwrap.dedent(
    """
    import asyncio, errno, json, os, resource, sys

    import dns.flags, dns.message

    from loadlab.errors import UsageError
    from loadlab.targets.base import check_fd_budget
    from loadlab.targets.dns import DnsQuery, DnsTarget
    from loadlab.targets.fast_http import FastHttpTarget
    from loadlab.targets.http import HttpOperation, HttpTarget

    class Sink:
        def __init__(self):
            self.labels = []

        def complete(self, op, outcome, intended_ns, sent_ns, done_ns):
            self.labels.append(outcome.label)

    class Truncating(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            answer = dns.message.make_response(dns.message.from_wire(data))
            answer.flags |= dns.flags.TC
            self.transport.sendto(answer.to_wire(), addr)

    async def first_completion(sink):
        for _ in range(500):  # at most 5 s
            if sink.labels:
                return
            await asyncio.sleep(0.01)

    def report(target, sink):
        error = target.last_os_error
        return {
            "labels": sink.labels,
            "fd_exhausted": target.fd_exhausted,
            "errno": error.errno if error is not None else None,
        }

    async def main():
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Truncating, local_addr=("127.0.0.1", 0))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            check_fd_budget(16)
            budget = "passed"
        except UsageError as exc:
            budget = str(exc)
        http_sink, fast_sink, dns_sink = Sink(), Sink(), Sink()
        get = [HttpOperation("get", "GET", "/")]
        http = HttpTarget(sys.argv[1], get, connections=1)
        fast = FastHttpTarget(sys.argv[1], get, connections=1)
        query = DnsQuery("kubernetes.default.svc.cluster.local")
        resolver = DnsTarget(*server.get_extra_info("sockname"), [query], timeout_s=5)
        await http.open(http_sink)
        await fast.open(fast_sink)
        await resolver.open(dns_sink)
        held = []
        try:
            for _ in range(64):  # fill the descriptor table: at most the limit
                held.append(os.dup(0))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        http.submit(0, 0)
        fast.submit(0, 0)
        resolver.submit(0, 0)  # truncated: its TCP retry needs a new socket
        await first_completion(http_sink)
        await first_completion(fast_sink)
        await first_completion(dns_sink)
        for fd in held:
            os.close(fd)
        await http.close()
        await fast.close()
        await resolver.close()
        server.close()
        print(json.dumps({
            "budget": budget,
            "http": report(http, http_sink),
            "fast": report(fast, fast_sink),
            "dns": report(resolver, dns_sink),
        }))

    asyncio.run(main())
    """
)


def test_targets_say_when_the_process_ran_out_of_file_descriptors() -> None:
    """In a child process whose open-file limit is lowered to 64 and then used up: the HTTP
    connects (aiohttp's and the lean target's) and the DNS TCP fallback fail with EMFILE, and
    the targets say so."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 128:
        pytest.skip(f"the hard open-file limit {hard} leaves no room for this test")
    url = f"http://127.0.0.1:{closed_tcp_port()}"
    done = subprocess.run(
        [sys.executable, "-c", FD_CHILD, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["budget"].startswith("this run needs about 80 file descriptors")
    assert "ulimit -n 80" in result["budget"]
    exhausted = {"labels": ["conn_error"], "fd_exhausted": True, "errno": errno.EMFILE}
    assert result["http"] == exhausted
    assert result["fast"] == exhausted
    assert result["dns"] == exhausted


def test_http_target_keeps_the_last_socket_error_but_is_not_fd_exhausted_by_a_refusal() -> None:
    url = f"http://127.0.0.1:{closed_tcp_port()}"

    async def go() -> HttpTarget:
        target = HttpTarget(url, [HttpOperation("get", "GET", "/")], connections=1)
        rec = FakeRecorder()
        await target.open(rec)
        target.submit(0, 0)
        await wait_for(lambda: len(rec.completions) == 1, "the refusal")
        await target.close()
        return target

    target = asyncio.run(go())
    assert target.last_os_error is not None
    assert target.fd_exhausted is False
