"""The lean HTTP target against real servers on loopback: every answer a server can give (and the
lies of ``loadlab.testing.hostile``) ends as exactly one completion with its outcome, and what the
server saw matches what was recorded."""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadlab.clock import NS_PER_S, FakeClock, MonotonicClock
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import ClusterAccess
from loadlab.targets.credentials import KubeconfigCredentials, SimIdentity
from loadlab.targets.fast_http import FastHttpTarget, render_requests
from loadlab.targets.http import HttpOperation
from loadlab.testing.fakes import Completion, FakeRecorder
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from loadlab.testing.ports import closed_tcp_port
from loadlab.testing.waiting import wait_for
from tests.targets.helpers import closed_loop, send_and_drain, sweeper_asleep
from tests.targets.pki import CertificateAuthority

pytestmark = pytest.mark.realtime

RESET = b"<reset>"
"""No answer: the connection is aborted at once (the client sees it end before any byte)."""
SILENT = b"<silent>"
"""An answer that never comes (the connection stays open)."""
MAX_REQUESTS_PER_CONNECTION = 100
GET = HttpOperation("get", "GET", "/x")


@dataclass
class Wire:
    """What a raw server saw."""

    connections: int = 0
    heads: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.heads)


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def chunked(body: bytes, chunk: int = 16 * 1024) -> bytes:
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        parts.append(b"%x\r\n%b\r\n" % (len(piece), piece))
    return b"".join([*parts, b"0\r\n\r\n"])


Respond = Callable[[int, str], bytes]
"""``(request number on its connection from 0, path) -> answer``, or RESET or SILENT. An answer
that says ``Connection: close`` (or has no length) is followed by a close."""


@asynccontextmanager
async def raw_server(
    respond: Respond, wire: Wire, context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        wire.connections += 1
        try:
            for n in range(MAX_REQUESTS_PER_CONNECTION):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.lower().split("\r\n")
                length = next(
                    (int(ln.split(":")[1]) for ln in lines if ln.startswith("content-length:")),
                    0,
                )
                wire.heads.append(head)
                wire.bodies.append(await reader.readexactly(length))
                answer = respond(n, head.split(" ")[1])
                if answer == RESET:
                    writer.transport.abort()
                    return
                if answer == SILENT:
                    await reader.read()
                    return
                writer.write(answer)
                await writer.drain()
                head_out = answer.split(b"\r\n\r\n")[0]
                if b"Connection: close" in head_out or not (
                    b"Length" in head_out or b"chunked" in head_out
                ):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def send_in_order(
    url: str, ops: Sequence[HttpOperation], order: Sequence[int], **kwargs: object
) -> list[Completion]:
    """Submit ``order`` at once to a target (one connection unless told), drain, close."""
    clock = MonotonicClock()
    options: dict[str, object] = {"connections": 1, "timeout_s": 5.0, **kwargs}
    target = FastHttpTarget(url, ops, clock=clock, **options)  # type: ignore[arg-type]
    return await send_and_drain(target, clock, order)


@pytest.mark.parametrize(
    ("behaviour", "body_bytes", "outcome"),
    [
        pytest.param(HttpBehaviour.OK, 1000, Outcome.OK, id="ok"),
        pytest.param(HttpBehaviour.STATUS_500, 1000, Outcome.SERVER_ERROR, id="500"),
        pytest.param(HttpBehaviour.STATUS_429, 1000, Outcome.THROTTLED, id="429"),
        pytest.param(HttpBehaviour.GARBAGE, 1000, Outcome.MALFORMED, id="garbage"),
        pytest.param(HttpBehaviour.RESET, 1000, Outcome.CONN_ERROR, id="reset"),
        pytest.param(HttpBehaviour.HUGE_BODY, 1_000_000, Outcome.TOO_LARGE, id="huge-body"),
    ],
)
def test_each_hostile_answer_is_one_completion_with_its_outcome_and_never_resent(
    behaviour: HttpBehaviour, body_bytes: int, outcome: Outcome
) -> None:
    async def go() -> tuple[list[Completion], int]:
        async with HostileHttpServer(behaviour, body_bytes=body_bytes) as server:
            done = await send_in_order(
                server.url, [GET], [0] * 6, connections=2, max_body_bytes=64 * 1024
            )
            return done, server.stats().requests

    completions, seen = asyncio.run(go())
    assert [c.outcome for c in completions] == [outcome] * 6
    assert seen == 6  # one request at the server per completion: nothing resent
    for c in completions:
        assert c.intended_ns <= c.sent_ns <= c.done_ns


def test_a_silent_server_times_out_at_the_first_sweep_past_the_timeout_then_reconnects() -> None:
    """Timeout 0.2 s, so a sweep every 20 ms: the fake clock steps from sweep to sweep while the
    server stays silent, and the requests queued behind go on a new connection."""
    wire = Wire()
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()
    timeout_ns = NS_PER_S // 5

    async def go() -> None:
        async with raw_server(lambda n, path: SILENT if path == "/silent" else ok(), wire) as url:
            ops = [HttpOperation("silent", "GET", "/silent"), GET]
            target = FastHttpTarget(url, ops, connections=1, timeout_s=0.2, clock=clock)
            await target.open(rec)
            try:
                for op in (0, 1, 1):
                    target.submit(op, clock.now_ns())
                await wait_for(lambda: wire.requests == 1, "the silent request at the server")
                for _ in range(100):  # 2 s of sweeps: far past the timeout
                    await wait_for(lambda: sweeper_asleep(clock), "the next sweep")
                    if rec.completions:
                        break
                    clock.advance_to(clock.next_deadline_ns or 0)
                await wait_for(lambda: len(rec.completions) == 3, "the requests after it")
            finally:
                await target.close()

    asyncio.run(go())
    assert [c.outcome for c in rec.completions] == [Outcome.TIMEOUT, Outcome.OK, Outcome.OK]
    waited_ns = rec.completions[0].done_ns - rec.completions[0].sent_ns
    assert timeout_ns < waited_ns <= timeout_ns + timeout_ns // 10  # the sweep's resolution
    assert (wire.connections, wire.requests) == (2, 3)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_reset_on_a_reused_connection_is_a_conn_error_not_a_resend(method: str) -> None:
    wire = Wire()

    async def go() -> list[Completion]:
        async with raw_server(lambda n, path: ok() if n == 0 else RESET, wire) as url:
            op = HttpOperation("op", method, "/x", body=b"{}" if method == "PUT" else None)
            return await send_in_order(url, [op], [0, 0])

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.OK, Outcome.CONN_ERROR]
    assert (wire.connections, wire.requests) == (1, 2)


@pytest.mark.parametrize(
    ("answer", "connections"),
    [
        pytest.param(ok(), 1, id="content-length-keeps-alive"),
        pytest.param(chunked(b"y" * 40_000, chunk=1000), 1, id="chunked-keeps-alive"),
        pytest.param(ok(extra=b"Connection: close\r\n"), 4, id="connection-close-reopens"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n{}", 4, id="body-until-close"),
    ],
)
def test_bodies_are_read_to_their_end_and_connections_reused_unless_closed(
    answer: bytes, connections: int
) -> None:
    wire = Wire()

    async def go() -> list[Completion]:
        async with raw_server(lambda n, path: answer, wire) as url:
            return await send_in_order(url, [GET], [0] * 4)

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.OK] * 4
    assert (wire.connections, wire.requests) == (connections, 4)


LIMIT = 64 * 1024
BIG = b"x" * (4 * LIMIT)
SIZED = {"/small": ok(), "/at-limit": ok(b"y" * LIMIT), "/big": ok(BIG), "/chunked": chunked(BIG)}


@pytest.mark.parametrize(
    ("path", "outcome", "connections"),
    [
        pytest.param("/small", Outcome.OK, 1, id="small"),
        pytest.param("/at-limit", Outcome.OK, 1, id="at-the-limit"),
        pytest.param("/big", Outcome.TOO_LARGE, 2, id="content-length-over"),
        pytest.param("/chunked", Outcome.TOO_LARGE, 2, id="chunked-over"),
    ],
)
def test_a_body_over_the_limit_is_too_large_and_its_connection_dropped(
    path: str, outcome: Outcome, connections: int
) -> None:
    wire = Wire()

    async def go() -> list[Completion]:
        async with raw_server(lambda n, p: SIZED[p], wire) as url:
            ops = [HttpOperation("sized", "GET", path), HttpOperation("small", "GET", "/small")]
            return await send_in_order(url, ops, [0, 1], max_body_bytes=LIMIT)

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [outcome, Outcome.OK]
    assert (wire.connections, wire.requests) == (connections, 2)


def test_statuses_map_to_outcomes_and_unparseable_answers_are_malformed() -> None:
    answers = {
        "/404": b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "/503": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        "/bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    }
    ops = [HttpOperation(p, "GET", p) for p in answers]

    async def go() -> list[Completion]:
        async with raw_server(lambda n, path: answers[path], Wire()) as url:
            return await send_in_order(url, ops, [0, 1, 2, 0])

    outcomes = [c.outcome for c in asyncio.run(go())]
    assert outcomes == [
        Outcome.CLIENT_ERROR,
        Outcome.SERVER_ERROR,
        Outcome.MALFORMED,
        Outcome.CLIENT_ERROR,
    ]


def test_requests_carry_method_spread_path_body_and_each_users_authorization() -> None:
    wire = Wire()
    ops = [
        HttpOperation("put", "PUT", "/ok/{i}", body=b'{"n":{i}}', spread=2, user="node-1"),
        HttpOperation("post-empty", "post", "/empty"),
        HttpOperation("get", "GET", "/get", headers={"X-Probe": "1"}),
    ]

    async def go() -> list[Completion]:
        async with raw_server(lambda n, path: ok(), wire) as url:
            return await send_in_order(url + "/base", ops, [0, 0, 1, 2])

    assert [c.outcome for c in asyncio.run(go())] == [Outcome.OK] * 4
    lines = [head.split("\r\n") for head in wire.heads]
    assert [ln[0] for ln in lines] == [
        "PUT /base/ok/0 HTTP/1.1",
        "PUT /base/ok/1 HTTP/1.1",
        "POST /base/empty HTTP/1.1",
        "GET /base/get HTTP/1.1",
    ]
    assert wire.bodies == [b'{"n":0}', b'{"n":1}', b"", b""]
    assert "Authorization: Bearer node-1" in lines[0]
    assert "Content-Type: application/json" in lines[0]
    assert "Content-Length: 0" in lines[2]
    assert "X-Probe: 1" in lines[3]
    assert not any(ln.startswith("Authorization") for ln in lines[3])
    assert not any(ln.startswith("Content-Length") for ln in lines[3])


def test_a_renewed_token_is_on_the_next_request_and_variants_keep_their_turn() -> None:
    wire = Wire()
    credentials = KubeconfigCredentials("Bearer old")
    op = HttpOperation("get", "GET", "/n/{i}", spread=3)

    async def go() -> list[Completion]:
        async with raw_server(lambda n, path: ok(), wire) as url:
            access = ClusterAccess(url, "ctx", None, credentials, url)
            clock = MonotonicClock()
            target = FastHttpTarget(url, [op], clock=clock, connections=1, access=access)
            recorder = FakeRecorder()
            await target.open(recorder)
            try:
                for batch in range(2):
                    if batch:  # what ``refresh`` does when the credential plugin renews
                        credentials._header = "Bearer new"
                        credentials.generation += 1
                    for _ in range(2):
                        target.submit(0, clock.now_ns())
                    await target.drain(clock.now_ns() + 5 * NS_PER_S)
            finally:
                await target.close()
            return recorder.completions

    assert [c.outcome for c in asyncio.run(go())] == [Outcome.OK] * 4
    lines = [head.split("\r\n") for head in wire.heads]
    tokens = [next(ln for ln in head if ln.startswith("Authorization")) for head in lines]
    assert tokens == ["Authorization: Bearer old"] * 2 + ["Authorization: Bearer new"] * 2
    assert [ln[0] for ln in lines][:2] == ["GET /n/0 HTTP/1.1", "GET /n/1 HTTP/1.1"]


def test_a_header_with_a_line_break_is_refused_up_front() -> None:
    op = HttpOperation("evil", "GET", "/", headers={"X-A": "1\r\nX-Injected: 2"})
    with pytest.raises(ValueError, match="control character"):
        render_requests("http://127.0.0.1:1", op, None, SimIdentity())


@pytest.mark.parametrize(
    ("honour", "hold_ns"),
    [pytest.param(True, NS_PER_S // 5, id="honoured"), pytest.param(False, 0, id="ignored")],
)
def test_a_429_holds_its_connection_for_retry_after_only_when_honouring_it(
    honour: bool, hold_ns: int
) -> None:
    """Retry-After: 1, capped at 0.2 s; the fake clock moves only when the test says."""
    throttle = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()
    ops = [HttpOperation("throttled", "GET", "/throttle"), GET]

    async def go() -> None:
        answer: Respond = lambda n, path: throttle if path == "/throttle" else ok()  # noqa: E731
        async with raw_server(answer, Wire()) as url:
            target = FastHttpTarget(
                url,
                ops,
                connections=1,
                honour_retry_after=honour,
                max_retry_after_s=0.2,
                clock=clock,
            )
            await target.open(rec)
            try:
                target.submit(0, clock.now_ns())
                target.submit(1, clock.now_ns())
                await wait_for(lambda: len(rec.completions) >= 1, "the 429")
                if hold_ns:
                    held_until_ns = rec.completions[0].done_ns + hold_ns
                    await wait_for(lambda: clock.next_deadline_ns == held_until_ns, "the hold")
                    assert len(rec.completions) == 1  # the next request waits for the clock
                    assert target.in_flight == 1
                    clock.advance(hold_ns)
                await wait_for(lambda: len(rec.completions) == 2, "the request after the 429")
            finally:
                await target.close()

    asyncio.run(go())
    first, second = rec.completions
    assert (first.outcome, second.outcome) == (Outcome.THROTTLED, Outcome.OK)
    assert second.sent_ns - first.done_ns == hold_ns


def test_pending_lists_queued_and_active_requests_and_close_times_them_out() -> None:
    wire = Wire()

    async def go() -> tuple[int, list[tuple[int, int]], list[Completion]]:
        async with raw_server(lambda n, path: SILENT, wire) as url:
            ops = [HttpOperation("a", "GET", "/a"), HttpOperation("b", "GET", "/b")]
            target = FastHttpTarget(url, ops, connections=2)
            rec = FakeRecorder()
            await target.open(rec)
            for i in range(5):
                target.submit(i % 2, 1_000 + i)
            await wait_for(lambda: wire.requests == 2, "both connections' requests")
            in_flight, pending = target.in_flight, target.pending_intended_ns()
            await target.close()
            return in_flight, pending, rec.completions

    in_flight, pending, completions = asyncio.run(go())
    assert in_flight == 5
    assert sorted(pending) == sorted((i % 2, 1_000 + i) for i in range(5))
    assert sorted(c.intended_ns for c in completions) == [1_000 + i for i in range(5)]
    assert [c.outcome for c in completions] == [Outcome.TIMEOUT] * 5
    assert wire.requests == 2  # the other three never left the queue


def test_a_sink_that_resubmits_while_the_target_closes_meets_an_error_not_a_hang() -> None:
    # A closed loop still running while its target closes would resubmit each request close()
    # times out; before, close() then spun forever timing out what it had just been given.
    wire = Wire()

    async def go() -> None:
        async with raw_server(lambda n, path: SILENT, wire) as url:
            target = FastHttpTarget(url, [GET], connections=1)
            rec = FakeRecorder()

            class Resubmitting:
                def complete(self, op: int, outcome: Outcome, i: int, s: int, done: int) -> None:
                    rec.complete(op, outcome, i, s, done)
                    target.submit(op, done)

            await target.open(Resubmitting())
            target.submit(0, 0)
            await wait_for(lambda: wire.requests == 1, "the request at the server")
            with pytest.raises(RuntimeError, match="submit after close"):
                await target.close()

    asyncio.run(go())


def test_a_closed_port_is_a_conn_error_that_does_not_claim_fd_exhaustion() -> None:
    async def go() -> tuple[list[Completion], FastHttpTarget]:
        url = f"http://127.0.0.1:{closed_tcp_port()}"
        target = FastHttpTarget(url, [GET], connections=2)
        rec = FakeRecorder()
        await target.open(rec)
        for _ in range(3):
            target.submit(0, 0)
        await target.drain(MonotonicClock().now_ns() + 5 * NS_PER_S)
        await target.close()
        return rec.completions, target

    completions, target = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.CONN_ERROR] * 3
    assert target.last_os_error is not None
    assert target.last_os_error.errno == errno.ECONNREFUSED
    assert target.fd_exhausted is False


def test_the_closed_loop_runner_gets_one_completion_per_request_the_server_saw() -> None:
    async def go() -> tuple[int, int, int]:
        async with HostileHttpServer(HttpBehaviour.STATUS_500, good_for_requests=300) as server:
            clock = MonotonicClock()
            target = FastHttpTarget(server.url, [GET], connections=8, clock=clock)
            completions = await closed_loop(target, clock, concurrency=8, run_s=0.5)
            oks = sum(c.outcome is Outcome.OK for c in completions)
            return len(completions), server.stats().requests, oks

    completions, seen, oks = asyncio.run(go())
    assert completions == seen > 300
    assert oks == 300


def test_with_more_requests_than_connections_the_closed_loops_step_serves_the_queue_first() -> None:
    # A closed loop of 6 over 2 connections keeps 4 requests queued. A slot that sent its own
    # replacement at once would leave those 4 queued until the run ended (a latency of the whole
    # run); served first, they wait a few round trips.
    run_s = 1.0

    async def go() -> tuple[list[Completion], int]:
        async with HostileHttpServer(HttpBehaviour.OK) as server:
            clock = MonotonicClock()
            target = FastHttpTarget(server.url, [GET], connections=2, clock=clock)
            completions = await closed_loop(target, clock, concurrency=6, run_s=run_s)
            return completions, server.stats().requests

    completions, seen = asyncio.run(go())
    assert len(completions) == seen > 100
    assert {c.outcome for c in completions} == {Outcome.OK}
    assert max(c.done_ns - c.intended_ns for c in completions) < run_s / 2 * NS_PER_S


@pytest.mark.parametrize("honour_retry_after", [False, True])
def test_a_server_that_answers_twice_in_one_read_never_completes_a_request_twice(
    honour_retry_after: bool,
) -> None:
    # The closed loop's step writes the next request from the first answer's callback, and the
    # parser goes on to the second answer of the same read. That answer is to nothing sent: it
    # is a stray, its connection is dropped, and the request just written there is MALFORMED;
    # it never completes a request of its own (nor, after the run's end, a request -1).
    async def go() -> tuple[list[Completion], FastHttpTarget]:
        async with raw_server(lambda n, path: ok() + ok(), Wire()) as url:
            clock = MonotonicClock()
            target = FastHttpTarget(
                url, [GET], connections=2, clock=clock, honour_retry_after=honour_retry_after
            )
            return await closed_loop(target, clock, concurrency=2, run_s=0.2), target

    completions, target = asyncio.run(go())
    assert len(completions) > 10
    assert {c.op for c in completions} == {0}
    assert (target.in_flight, target.active) == (0, 0)
    assert len(completions) == len({(c.intended_ns, c.sent_ns) for c in completions})
    malformed = sum(c.outcome is Outcome.MALFORMED for c in completions)
    assert {c.outcome for c in completions} <= {Outcome.OK, Outcome.MALFORMED}
    assert target.stray >= malformed > 0


def test_tls_verifies_against_the_access_context_and_its_server_name(tmp_path: Path) -> None:
    ca = CertificateAuthority("fast-http-test")
    client = ssl.create_default_context(cadata=ca.pem.decode())
    wire = Wire()

    async def go(server_name: str | None) -> list[Completion]:
        async with raw_server(lambda n, p: ok(), wire, ca.server_context(tmp_path)) as url:
            access = ClusterAccess(url, None, client, SimIdentity(), url, server_name)
            return await send_in_order(url, [GET], [0, 0], access=access)

    assert [c.outcome for c in asyncio.run(go("localhost"))] == [Outcome.OK] * 2
    assert [c.outcome for c in asyncio.run(go("not-in-the-cert"))] == [Outcome.CONN_ERROR] * 2
    assert wire.requests == 2  # a certificate that does not verify: nothing sent
