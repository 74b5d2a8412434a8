"""Overload behaviour of the sim API server seen by a client: 429, 504, and the OOM crash/restart.

Time is a FakeClock advanced by hand: a request's service time passes only when the test says.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import PODS
from loadlab.sim.overload.parameters import OverloadConfig
from loadlab.sim.server import seeded_store
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST

pytestmark = pytest.mark.realtime

MIB = 1024 * 1024


async def next_line_or_raise(stream: aiohttp.ClientResponse) -> bytes:
    """The next line of a stream; the stream's end raises IncompleteReadError."""
    line = await asyncio.wait_for(stream.content.readline(), 10)
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    return line


def test_request_beyond_max_inflight_gets_429_with_retry_after(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()
    overload = {
        "apf_enabled": False,
        "max_requests_inflight": 1,
        "cost": {**FREE_COST, "etcd_object_s": 1.0},  # a consistent pod LIST holds its seat 15 s
    }

    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            slow = asyncio.ensure_future(s.get(f"{api.url}/api/v1/pods"))
            await wait_for(lambda: api.model.snapshot()["in_flight"]["readOnly"] == 1)
            async with s.get(f"{api.url}/api/v1/nodes/node-0") as resp:
                code, retry_after, status = (
                    resp.status,
                    resp.headers.get("Retry-After"),
                    await resp.json(),
                )
            clock.advance(20 * NS_PER_S)
            async with await slow as done:
                assert done.status == 200
        assert (code, retry_after) == (429, "1")
        assert status["reason"] == "TooManyRequests"
        assert status["details"]["retryAfterSeconds"] == 1

    run_with_api(body, sim_config(overload=overload), clock)


def test_request_still_running_after_60_s_gets_504_timeout_and_frees_its_seat(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()
    overload = {"cost": {**FREE_COST, "etcd_object_s": 10.0}}  # 15 pods x 10 s: 150 s of work

    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            slow = asyncio.ensure_future(s.get(f"{api.url}/api/v1/pods"))
            await wait_for(lambda: api.model.snapshot()["in_flight"]["readOnly"] == 1)
            clock.advance(61 * NS_PER_S)
            async with await slow as resp:
                code, status = resp.status, await resp.json()
        assert (code, status["reason"]) == (504, "Timeout")
        assert api.model.snapshot()["in_flight"]["readOnly"] == 0

    run_with_api(body, sim_config(overload=overload), clock)


def _limit_between_baseline_and_a_pod_list(config: Any) -> float:
    store = seeded_store(config)
    factor = OverloadConfig().response_memory_factor  # docs/control-plane-model.md, "Memory"
    pod_list = factor * store.count(PODS) * store.approx_object_bytes(PODS)
    return (store.approx_total_bytes() + pod_list // 2) / MIB


def test_out_of_memory_drops_connections_refuses_then_restarts_with_a_fresh_watch_cache(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()
    shape = {"nodes": 20, "pods_per_node": 20}
    limit_mb = _limit_between_baseline_and_a_pod_list(sim_config(**shape))
    config = sim_config(
        **shape, overload={"cost": FREE_COST, "memory_limit_mb": limit_mb, "restart_s": 30}
    )

    async def body(api: SimApiServer) -> None:
        port = api.port
        nodes = f"{api.url}/api/v1/nodes"
        async with aiohttp.ClientSession() as s, aiohttp.ClientSession() as w:
            async with s.get(nodes) as resp:
                old_rv = (await resp.json())["metadata"]["resourceVersion"]
            stream = await w.get(f"{nodes}?watch=1&resourceVersion={old_rv}")
            assert stream.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"{api.url}/api/v1/pods") as resp:
                    await resp.read()
            await wait_for(lambda: not api.listening)
            with pytest.raises((aiohttp.ClientError, asyncio.IncompleteReadError)):
                await next_line_or_raise(stream)
            stream.release()
            with pytest.raises(aiohttp.ClientConnectorError):
                async with s.get(f"{api.url}/healthz"):
                    pass
            clock.advance(31 * NS_PER_S)
            await wait_for(lambda: api.listening)
            async with s.get(f"{api.url}/healthz") as resp:
                assert resp.status == 200
            async with s.get(f"{nodes}?watch=1&resourceVersion={old_rv}") as resp:
                event = json.loads(await asyncio.wait_for(resp.content.readline(), 10))
            async with s.get(f"{api.url}/metrics") as resp:
                metrics = await resp.text()
        assert api.port == port
        assert api.restarts == 1
        assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
        assert "loadlab_sim_restarts_total 1" in metrics

    run_with_api(body, config, clock)
