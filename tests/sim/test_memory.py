"""Memory accounting: in-flight LISTs, the OOM signal, and what a restart frees."""

from __future__ import annotations

import asyncio

import pytest

from loadlab.clock import FakeClock
from loadlab.sim.overload.memory import MemoryAccount
from loadlab.sim.overload.model import OutOfMemory, OverloadModel, WorkEstimate
from loadlab.sim.overload.parameters import OverloadConfig
from loadlab.sim.promtext import PromRegistry
from tests.sim.helpers import req, run

MB = 1024 * 1024

LIST_PODS = req("system:serviceaccount:monitoring:telemetry", "list")


def test_reserve_counts_baseline_and_in_flight_against_the_limit() -> None:
    account = MemoryAccount(100)
    account.set_baseline(60)
    held = account.reserve(30)
    assert account.in_use_bytes == 90
    with pytest.raises(OutOfMemory):
        account.reserve(11)
    assert account.in_use_bytes == 90  # a failed reservation holds nothing
    account.release(held)
    assert account.in_use_bytes == 60


def test_release_after_reset_does_not_go_negative() -> None:
    account = MemoryAccount(100)
    held = account.reserve(40)
    account.reset()
    account.release(held)
    assert account.in_flight_bytes == 0


def test_parallel_lists_above_the_limit_raise_out_of_memory_and_count_a_restart() -> None:
    clock = FakeClock()
    model = OverloadModel(OverloadConfig(memory_limit_mb=1024), clock, PromRegistry())
    model.set_baseline_memory(200 * MB)
    # a 100 MB response held 5x while in flight (KEP-3157) = 500 MB per LIST
    est = model.estimate(
        LIST_PODS,
        objects_scanned=50_000,
        response_bytes=100 * MB,
        from_cache=True,
        watchers=0,
    )
    assert est.memory_bytes == 500 * MB

    async def one() -> str:
        try:
            async with model.admit(LIST_PODS, est):
                await model.serve(est)
        except OutOfMemory:
            return "oom"
        return "ok"

    async def scenario() -> tuple[list[str], int]:
        tasks = [asyncio.ensure_future(one()) for _ in range(2)]
        await asyncio.sleep(0)
        seats_after_oom = model.snapshot()["levels"]["workload-low"]["executing_seats"]
        return await asyncio.gather(*tasks), seats_after_oom

    results, seats_after_oom = run(clock, scenario())
    assert sorted(results) == ["ok", "oom"]  # 200 + 500 fits in 1024 MB, 200 + 1000 does not
    assert seats_after_oom == est.seats  # the OOM'd request gave its seats back
    assert model.snapshot()["restarts"] == 1
    assert "loadlab_sim_restarts_total 1\n" in model.metrics.render()


def test_reset_frees_in_flight_memory_but_keeps_the_baseline() -> None:
    clock = FakeClock()
    model = OverloadModel(OverloadConfig(memory_limit_mb=1024), clock, PromRegistry())
    model.set_baseline_memory(100 * MB)

    async def scenario() -> int:
        est = WorkEstimate(seats=1, hold_s=10.0, memory_bytes=300 * MB)
        async with model.admit(LIST_PODS, est):
            model.reset()
            in_use = model.snapshot()["memory_in_use_bytes"]
        return int(in_use)

    assert run(clock, scenario()) == 100 * MB
    assert model.snapshot()["memory_in_use_bytes"] == 100 * MB
    assert f"loadlab_sim_memory_bytes {100 * MB}\n" in model.metrics.render()
