"""The HTTP target against real servers on loopback: one outcome per kind of answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.errors import TargetMisbehaving, TargetUnreachable
from loadlab.targets.base import Outcome
from loadlab.targets.http import HttpOperation, HttpTarget, probe_http, retry_after_s

from ..engine.fakes import Completion, FakeRecorder

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


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send_all(
    base_url: str,
    ops: Sequence[HttpOperation],
    order: Sequence[int],
    **kwargs: object,
) -> list[Completion]:
    clock = MonotonicClock()
    target = HttpTarget(base_url, ops, clock=clock, **kwargs)  # type: ignore[arg-type]
    rec = FakeRecorder()
    await target.open(rec)
    try:
        for op in order:
            target.submit(op, clock.now_ns())
        await target.drain(clock.now_ns() + 10 * NS_PER_S)
        assert target.in_flight == 0
    finally:
        await target.close()
    return rec.completions


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
    url = f"http://127.0.0.1:{closed_port()}"
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


def test_http_target_holds_the_connection_for_retry_after_when_honouring_it() -> None:
    ops = [HttpOperation("throttled", "GET", "/throttle"), HttpOperation("ok", "GET", "/ok")]

    async def go(honour: bool) -> list[Completion]:
        async with http_server([]) as url:
            return await send_all(
                url, ops, [0, 1], connections=1, honour_retry_after=honour, max_retry_after_s=0.2
            )

    first, second = asyncio.run(go(True))
    assert (first.outcome, second.outcome) == (Outcome.THROTTLED, Outcome.OK)
    # Retry-After said 1 s, capped at 0.2 s: the next request waited at least that long.
    assert second.sent_ns - first.done_ns >= NS_PER_S // 5
    # The wait is charged to the request from its intended time.
    assert second.done_ns - second.intended_ns >= NS_PER_S // 5


def test_http_target_close_times_out_what_is_still_queued_or_active() -> None:
    async def go() -> tuple[list[Completion], int]:
        async with http_server([]) as url:
            clock = MonotonicClock()
            target = HttpTarget(url, [HttpOperation("slow", "GET", "/slow")], connections=2)
            rec = FakeRecorder()
            await target.open(rec)
            for _ in range(5):
                target.submit(0, clock.now_ns())
            await asyncio.sleep(0.05)
            in_flight = target.in_flight
            await target.close()
            return rec.completions, in_flight

    completions, in_flight = asyncio.run(go())
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
        asyncio.run(probe_http(f"http://127.0.0.1:{closed_port()}", timeout_s=2))


def test_probe_http_says_misbehaving_when_the_answer_is_not_http() -> None:
    async def go() -> None:
        async with garbage_server() as url:
            await probe_http(url, timeout_s=2)

    with pytest.raises(TargetMisbehaving, match="not with HTTP"):
        asyncio.run(go())
