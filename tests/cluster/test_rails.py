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
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from loadlab.testing.ports import closed_tcp_port

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
        self.readyz_fails_from: int | None = None
        """From this many /readyz on (1-based), answer 503."""
        self.delay_s = 0.0
        self.seen: list[str] = []

    def app(self) -> web.Application:
        async def readyz(request: web.Request) -> web.Response:
            self.seen.append(request.headers.get("Authorization", ""))
            sick = self.readyz_fails_from is not None and len(self.seen) >= self.readyz_fails_from
            return web.Response(status=503 if sick else self.readyz, text="ok")

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
            cluster.seen.clear()
            cluster.readyz_fails_from = 3  # healthy twice, then sick
            fast = Canary(settings, MonotonicClock(), breaches.append, interval_s=0.01)
            await asyncio.wait_for(fast.run(), timeout=30)  # a bound, not the measure
            assert breaches == ["GET /readyz answered 503"]  # reported once, then it stops
            assert fast.samples == 3
            assert set(cluster.seen) == {"Bearer admin"}
        finally:
            await runner.cleanup()

    runloop.run(scenario())


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        (HttpBehaviour.STATUS_500, "GET /readyz answered 500"),
        (HttpBehaviour.STATUS_429, "GET /readyz answered 429"),
        (HttpBehaviour.RESET, "GET /readyz failed ("),
        (HttpBehaviour.GARBAGE, "GET /readyz failed"),
        (HttpBehaviour.SILENCE, "GET /readyz took more than 200 ms"),
    ],
)
def test_the_canary_calls_a_cluster_that_lies_a_breach(behaviour: HttpBehaviour, why: str) -> None:
    async def scenario() -> None:
        async with HostileHttpServer(behaviour) as server:
            breaches: list[str] = []
            settings = CanarySettings(server.url, readyz=True, path="/api/v1", max_ms=200)
            canary = Canary(settings, MonotonicClock(), breaches.append, interval_s=0.01)
            await asyncio.wait_for(canary.run(), timeout=30)  # a bound, not the measure
            assert len(breaches) == 1
            assert breaches[0].startswith(why), breaches

    runloop.run(scenario())


@pytest.mark.realtime
def test_the_canary_calls_a_cluster_that_died_a_breach() -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{closed_tcp_port()}"
        breaches: list[str] = []
        settings = CanarySettings(url, readyz=True, path="/api/v1", max_ms=200)
        await Canary(settings, MonotonicClock(), breaches.append).run()
        assert breaches == ["GET /readyz failed (ClientConnectorError)"]

    runloop.run(scenario())
