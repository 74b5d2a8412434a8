"""The HTTP target against real servers on loopback: one outcome per kind of answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from loadlab.clock import NS_PER_S, FakeClock, MonotonicClock
from loadlab.errors import EXIT_UNREACHABLE, LoadlabError, TargetMisbehaving, TargetUnreachable
from loadlab.targets.base import Outcome
from loadlab.targets.http import (
    HttpOperation,
    HttpTarget,
    probe_http,
    retry_after_s,
    retry_hold_ns,
)
from loadlab.testing.fakes import Completion, FakeRecorder
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from loadlab.testing.ports import closed_tcp_port
from loadlab.testing.waiting import wait_for
from tests.targets.helpers import send_and_drain

pytestmark = pytest.mark.realtime


@asynccontextmanager
async def http_server(seen: list[tuple[str, str]]) -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization", "")))
        body = await request.read()
        return web.Response(body=b'{"kind":"Lease"}' + body)

    async def throttle(request: web.Request) -> web.Response:
        seen.append((request.path, ""))
        return web.Response(status=429, headers={"Retry-After": "1"})

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def slow(request: web.Request) -> web.Response:
        seen.append((request.path, ""))
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/ok/{i}", ok)
    app.router.add_get("/throttle", throttle)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def garbage_server() -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def send_all(
    base_url: str,
    ops: Sequence[HttpOperation],
    order: Sequence[int],
    **kwargs: object,
) -> list[Completion]:
    clock = MonotonicClock()
    target = HttpTarget(base_url, ops, clock=clock, **kwargs)  # type: ignore[arg-type]
    return await send_and_drain(target, clock, order)


OPS = [
    HttpOperation("ok", "GET", "/ok"),
    HttpOperation("throttled", "GET", "/throttle"),
    HttpOperation("missing", "GET", "/missing"),
    HttpOperation("fail", "GET", "/fail"),
    HttpOperation("slow", "GET", "/slow"),
]


def test_http_target_maps_each_status_to_its_outcome() -> None:
    async def go() -> list[Completion]:
        async with http_server([]) as url:
            return await send_all(url, OPS, [0, 1, 2, 3, 4], connections=5, timeout_s=0.3)

    by_op = {c.op: c for c in asyncio.run(go())}
    assert {OPS[op].name: c.outcome for op, c in by_op.items()} == {
        "ok": Outcome.OK,
        "throttled": Outcome.THROTTLED,
        "missing": Outcome.CLIENT_ERROR,
        "fail": Outcome.SERVER_ERROR,
        "slow": Outcome.TIMEOUT,
    }
    for c in by_op.values():
        assert c.intended_ns <= c.sent_ns <= c.done_ns


def test_http_target_reports_garbage_as_malformed() -> None:
    async def go() -> list[Completion]:
        async with garbage_server() as url:
            return await send_all(url, [HttpOperation("get", "GET", "/")], [0, 0])

    assert [c.outcome for c in asyncio.run(go())] == [Outcome.MALFORMED] * 2


def test_http_target_reports_a_closed_port_as_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_tcp_port()}"
    completions = asyncio.run(send_all(url, [HttpOperation("get", "GET", "/")], [0, 0, 0]))
    assert [c.outcome for c in completions] == [Outcome.CONN_ERROR] * 3


def test_http_target_spreads_paths_and_bodies_round_robin_with_the_token() -> None:
    seen: list[tuple[str, str]] = []
    op = HttpOperation("put", "PUT", "/ok/{i}", body=b'{"n":{i}}', spread=3)

    async def go() -> list[Completion]:
        async with http_server(seen) as url:
            return await send_all(url, [op], [0] * 6, connections=1, bearer_token="t0k")

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.OK] * 6
    assert seen == [(f"/ok/{i % 3}", "Bearer t0k") for i in range(6)]


@pytest.mark.parametrize(
    ("honour", "hold_ns"),
    [pytest.param(True, NS_PER_S // 5, id="honoured"), pytest.param(False, 0, id="ignored")],
)
def test_http_target_holds_the_connection_for_retry_after_only_when_honouring_it(
    honour: bool, hold_ns: int
) -> None:
    """The server says Retry-After: 1, capped at 0.2 s; time moves only when the test says."""
    ops = [HttpOperation("throttled", "GET", "/throttle"), HttpOperation("ok", "GET", "/ok")]
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()

    async def go() -> None:
        async with http_server([]) as url:
            target = HttpTarget(
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
                    await wait_for(lambda: clock.next_deadline_ns is not None, "the hold")
                    assert len(rec.completions) == 1  # the next request waits for the clock
                    clock.advance(hold_ns)
                await wait_for(lambda: len(rec.completions) == 2, "the request after the 429")
            finally:
                await target.close()

    asyncio.run(go())
    first, second = rec.completions
    assert (first.outcome, second.outcome) == (Outcome.THROTTLED, Outcome.OK)
    assert second.sent_ns - first.done_ns == hold_ns
    # The wait is charged to the request from its intended time.
    assert second.done_ns - second.intended_ns == hold_ns


@pytest.mark.parametrize(
    ("header", "expected_ns"),
    [
        pytest.param("1", NS_PER_S, id="under-the-cap"),
        pytest.param("2.5", 2 * NS_PER_S, id="capped"),
        pytest.param("0", 0, id="zero"),
        pytest.param(None, 0, id="absent"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0, id="http-date"),
    ],
)
def test_retry_hold_is_the_header_seconds_up_to_the_cap(
    header: str | None, expected_ns: int
) -> None:
    assert retry_hold_ns(header, max_hold_ns=2 * NS_PER_S) == expected_ns


def test_http_target_close_times_out_what_is_still_queued_or_active() -> None:
    seen: list[tuple[str, str]] = []

    async def go() -> tuple[list[Completion], int]:
        async with http_server(seen) as url:
            clock = MonotonicClock()
            target = HttpTarget(url, [HttpOperation("slow", "GET", "/slow")], connections=2)
            rec = FakeRecorder()
            await target.open(rec)
            for _ in range(5):
                target.submit(0, clock.now_ns())
            await wait_for(lambda: len(seen) == 2, "both connections' requests at the server")
            in_flight = target.in_flight
            await target.close()
            return rec.completions, in_flight

    completions, in_flight = asyncio.run(go())
    assert len(seen) == 2  # two connections: the other three never left the queue
    assert in_flight == 5
    assert [c.outcome for c in completions] == [Outcome.TIMEOUT] * 5


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), (" 0 ", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None), ("-1", None)],
)
def test_retry_after_reads_delta_seconds_only(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header) == expected


def test_probe_http_passes_on_any_http_answer() -> None:
    async def go() -> None:
        async with http_server([]) as url:
            await probe_http(url + "/missing", timeout_s=2)

    asyncio.run(go())


def test_probe_http_says_unreachable_when_nothing_listens() -> None:
    with pytest.raises(TargetUnreachable, match="check --api"):
        asyncio.run(probe_http(f"http://127.0.0.1:{closed_tcp_port()}", timeout_s=2))


def test_probe_http_says_misbehaving_when_the_answer_is_not_http() -> None:
    async def go() -> None:
        async with garbage_server() as url:
            await probe_http(url, timeout_s=2)

    with pytest.raises(TargetMisbehaving, match="not with HTTP"):
        asyncio.run(go())


@pytest.mark.parametrize(
    ("behaviour", "error", "says"),
    [
        pytest.param(HttpBehaviour.STATUS_500, None, "", id="500-passes"),
        pytest.param(HttpBehaviour.STATUS_429, None, "", id="429-passes"),
        pytest.param(HttpBehaviour.RESET, TargetUnreachable, "cannot reach", id="reset"),
        pytest.param(HttpBehaviour.SILENCE, TargetUnreachable, "did not answer", id="silence"),
    ],
)
def test_probe_http_passes_any_status_and_stops_a_server_that_resets_or_stays_silent(
    behaviour: HttpBehaviour, error: type[LoadlabError] | None, says: str
) -> None:
    async def go() -> tuple[LoadlabError | None, int]:
        async with HostileHttpServer(behaviour) as server:
            try:
                await probe_http(server.url, timeout_s=0.3)
            except LoadlabError as exc:
                return exc, server.stats().requests
            return None, server.stats().requests

    caught, requests = asyncio.run(go())
    # One GET; after a reset aiohttp sends an idempotent request once more (the probe has no
    # ``never_resend``: it counts nothing, so a second GET costs only the server one answer).
    assert requests == (2 if behaviour is HttpBehaviour.RESET else 1)
    if error is None:
        assert caught is None
        return
    assert isinstance(caught, error)
    assert caught.exit_code == EXIT_UNREACHABLE
    assert says in str(caught)
    assert "\n" not in str(caught)
