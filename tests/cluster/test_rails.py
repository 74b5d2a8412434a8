"""The safety rails: the run's own figures (pure) and the canary (a real server on loopback)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from loadlab import runloop
from loadlab.analysis.abort import AbortLimits, AbortRules, IntervalFigures
from loadlab.clock import MonotonicClock
from loadlab.cluster.canary import Canary, CanarySettings

LIMITS = AbortLimits(max_error_rate=0.5, max_429_share=0.5, max_p99_ms=1000, sustain_intervals=3)


def feed(rules: AbortRules, figures: list[IntervalFigures]) -> list[str | None]:
    return [rules.observe(f) for f in figures]


def test_a_sustained_429_share_stops_the_run_on_its_third_second() -> None:
    shed = IntervalFigures(completed=100, errors=80, throttled=80, p99_ms=5)
    fine = IntervalFigures(completed=100, errors=0, throttled=0, p99_ms=5)
    said = feed(AbortRules(LIMITS), [shed, shed, fine, shed, shed, shed])
    assert said[:5] == [None] * 5  # a healthy second in between restarts the count
    assert said[5] is not None
    assert "error rate was 80.0% > 50.0% for 3 s" in said[5]


def test_a_slow_p99_and_silence_are_judged_apart() -> None:
    slow = IntervalFigures(completed=10, errors=0, throttled=0, p99_ms=4000)
    quiet = IntervalFigures(completed=0, errors=0, throttled=0, p99_ms=0)
    said = feed(AbortRules(LIMITS), [slow, quiet, slow, slow])
    assert said[-1] == "the run's API p99 was 4,000 ms > 1,000 ms for 3 s"


class Cluster:
    """A loopback server with a /readyz and a cheap read that can be made sick."""

    def __init__(self) -> None:
        self.readyz = 200
        self.delay_s = 0.0
        self.seen: list[str] = []

    def app(self) -> web.Application:
        async def readyz(request: web.Request) -> web.Response:
            self.seen.append(request.headers.get("Authorization", ""))
            return web.Response(status=self.readyz, text="ok")

        async def read(request: web.Request) -> web.Response:
            await asyncio.sleep(self.delay_s)
            return web.json_response({"kind": "Namespace"})

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/api/v1/namespaces/default", read)
        return app


async def serve(cluster: Cluster) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(cluster.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.realtime
def test_the_canary_sees_readyz_failing_and_a_slow_read() -> None:
    async def scenario() -> None:
        cluster = Cluster()
        runner, url = await serve(cluster)
        settings = CanarySettings(
            url,
            readyz=True,
            path="/api/v1/namespaces/default",
            max_ms=200,
            headers={"Authorization": "Bearer admin"},
        )
        breaches: list[str] = []
        canary = Canary(settings, MonotonicClock(), breaches.append)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer admin"}) as http:
                assert await canary.look(http) is None
                cluster.readyz = 500
                assert await canary.look(http) == "GET /readyz answered 500"
                cluster.readyz = 200
                cluster.delay_s = 0.5
                assert await canary.look(http) == (
                    "canary GET /api/v1/namespaces/default took more than 200 ms"
                )
            cluster.delay_s = 0.0
            task = asyncio.ensure_future(canary.run())
            await asyncio.sleep(1.5)
            assert not task.done()
            assert breaches == []
            cluster.readyz = 503
            await asyncio.wait_for(task, timeout=2.0)  # seen within a second, then it stops
            assert breaches == ["GET /readyz answered 503"]
            assert canary.samples >= 2
            assert set(cluster.seen) == {"Bearer admin"}
        finally:
            await runner.cleanup()

    runloop.run(scenario())
