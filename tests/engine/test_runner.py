"""Runners driven by a FakeClock against a fake slot-limited server: no sleeping, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from hdrh.histogram import HdrHistogram

from loadlab.clock import NS_PER_MS, NS_PER_S, FakeClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import (
    ClosedLoopRunner,
    ClosedLoopStats,
    OpenLoopRunner,
    OpenLoopStats,
)
from loadlab.engine.schedule import ConstantRate
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.targets.base import Outcome
from loadlab.testing.fakes import (
    FailAtOnceTarget,
    FakeRecorder,
    SlotServerTarget,
    SteppedSlotServerTarget,
)

T = TypeVar("T")
START_NS = 1_000 * NS_PER_S


def run_fake(clock: FakeClock, aw: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(clock.run(aw), timeout=30)

    return asyncio.run(main())


def open_loop(
    *,
    rate_per_s: float,
    duration_s: float,
    slots: int,
    service_ms: int,
    max_backlog: int = 1_000_000,
    max_lag_ms: int = 10,
    send_cost_ns: int = 0,
) -> tuple[OpenLoopStats, FakeRecorder, SlotServerTarget]:
    clock = FakeClock(START_NS)
    end_ns = START_NS + int(duration_s * NS_PER_S)
    target = SlotServerTarget(
        clock, slots=slots, service_ns=service_ms * NS_PER_MS, send_cost_ns=send_cost_ns
    )
    recorder = FakeRecorder()

    async def go() -> OpenLoopStats:
        await target.open(recorder)
        runner = OpenLoopRunner(
            clock,
            target,
            ConstantRate(rate_per_s, start_ns=START_NS, end_ns=end_ns),
            OpMix([1, 1], seed=0),
            recorder,
            end_ns=end_ns,
            max_lag_ns=max_lag_ms * NS_PER_MS,
            max_backlog=max_backlog,
        )
        stats = await runner.run()
        await target.drain(end_ns + 60 * NS_PER_S)
        await target.close()
        return stats

    return run_fake(clock, go()), recorder, target


def test_open_loop_under_capacity_sends_every_planned_request_on_time() -> None:
    stats, rec, _ = open_loop(rate_per_s=100, duration_s=10, slots=4, service_ms=10)
    assert stats == OpenLoopStats(
        planned=1000, dispatched=1000, skipped=0, overflowed=0, max_lag_ns=0
    )
    assert len(rec.dispatches) == 1000
    assert all(intended == dispatched for intended, dispatched in rec.dispatches)
    assert len(rec.completions) == 1000
    assert {c.done_ns - c.intended_ns for c in rec.completions} == {10 * NS_PER_MS}
    assert {c.op for c in rec.completions} == {0, 1}


def test_open_loop_over_capacity_achieves_slots_over_service_time() -> None:
    # Capacity 4 slots / 10 ms = 400/s, offered 1000/s for 2 s.
    stats, rec, _ = open_loop(rate_per_s=1000, duration_s=2, slots=4, service_ms=10)
    assert stats.dispatched == 2000
    end_ns = START_NS + 2 * NS_PER_S
    done_in_window = sum(c.done_ns <= end_ns for c in rec.completions)
    assert done_in_window == pytest.approx(400 * 2, abs=4)


def test_open_loop_charges_queueing_to_the_server_from_the_intended_time() -> None:
    _, rec, _ = open_loop(rate_per_s=1000, duration_s=2, slots=4, service_ms=10)
    by_intended = sorted(rec.completions, key=lambda c: c.intended_ns)
    first, last = by_intended[0], by_intended[-1]
    assert first.done_ns - first.intended_ns == 10 * NS_PER_MS
    # The last request waited behind ~1200 others: about 3 s late, not 10 ms.
    assert last.done_ns - last.intended_ns > 2 * NS_PER_S
    # The generator itself never fell behind.
    assert all(i == d for i, d in rec.dispatches)


def test_open_loop_overflows_instead_of_queueing_past_the_backlog() -> None:
    stats, rec, target = open_loop(
        rate_per_s=1000, duration_s=1, slots=4, service_ms=10, max_backlog=20
    )
    overflows = [c for c in rec.completions if c.outcome is Outcome.OVERFLOW]
    assert stats.overflowed == len(overflows) > 500
    assert stats.dispatched + stats.overflowed == stats.planned == 1000
    assert target.max_in_flight <= 20
    assert all(c.done_ns == c.sent_ns for c in overflows)
    assert len(rec.dispatches) == 1000  # every completion has its dispatch
    assert stats.skipped == 0


def test_open_loop_skips_sends_once_the_generator_lags_past_the_bound() -> None:
    # Each send blocks the generator for 3 ms while the schedule asks for one every 1 ms.
    stats, rec, _ = open_loop(
        rate_per_s=1000,
        duration_s=1,
        slots=100,
        service_ms=1,
        send_cost_ns=3 * NS_PER_MS,
        max_lag_ms=5,
    )
    assert stats.skipped > 0
    assert sum(rec.skipped) == stats.skipped
    assert stats.dispatched + stats.skipped == stats.planned == 1000
    assert 0 < stats.max_lag_ns <= 5 * NS_PER_MS
    assert max(d - i for i, d in rec.dispatches) == stats.max_lag_ns


def test_open_loop_batches_every_send_that_is_already_due() -> None:
    # Sends cost 2.5 ms at 1 ms spacing: each wake finds 2-3 sends due, and a generous lag bound
    # lets them all out (late, with their lag recorded) rather than skipping.
    stats, rec, _ = open_loop(
        rate_per_s=1000,
        duration_s=0.1,
        slots=100,
        service_ms=1,
        send_cost_ns=2 * NS_PER_MS + NS_PER_MS // 2,
        max_lag_ms=1000,
    )
    assert stats.skipped == 0
    assert stats.dispatched == 100
    lags = [d - i for i, d in rec.dispatches]
    assert lags == sorted(lags)  # falls further behind, by construction
    assert stats.max_lag_ns == lags[-1] > 0


class StepLessRecorder(FakeRecorder):
    """An observer without ``closed_step``: the runner takes its general path."""

    closed_step = None  # type: ignore[assignment]


@pytest.mark.parametrize("recorder", [FakeRecorder, StepLessRecorder])
@pytest.mark.parametrize("target_type", [SlotServerTarget, SteppedSlotServerTarget])
def test_closed_loop_keeps_concurrency_in_flight_and_achieves_concurrency_over_latency(
    recorder: type[FakeRecorder], target_type: type[SlotServerTarget]
) -> None:
    clock = FakeClock(START_NS)
    end_ns = START_NS + NS_PER_S
    target = target_type(clock, slots=100, service_ns=10 * NS_PER_MS)
    rec = recorder()

    async def go() -> tuple[int, int]:
        runner = ClosedLoopRunner(clock, target, OpMix.single(), rec, concurrency=8, end_ns=end_ns)
        await target.open(runner.sink)
        stats = await runner.run()
        await target.drain(end_ns + NS_PER_S)
        return stats.dispatched, stats.completed

    dispatched, completed = run_fake(clock, go())
    assert target.max_in_flight == 8
    # 8 slots x 100 rounds of 10 ms, less the last round: it completes exactly at end_ns, and
    # FakeClock wakes sleepers due together in the order they slept, so the runner (asleep since
    # the start) stops counting before those 8 completions arrive.
    assert completed == 8 * 100 - 8
    assert dispatched == completed + 8
    assert {c.done_ns - c.intended_ns for c in rec.completions} == {10 * NS_PER_MS}
    # Every dispatch the runner counted was recorded, on time (a closed loop never lags).
    assert len(rec.dispatches) == dispatched
    assert {d - i for i, d in rec.dispatches} == {0}
    if isinstance(target, SteppedSlotServerTarget):
        # With a recorder that makes a step, all but the first 8 requests were the step's, and
        # the target was given it back when the run ended.
        stepping = recorder is FakeRecorder
        assert target.steps == (dispatched - 8 if stepping else 0)
        assert target.step is None


def test_the_recorders_own_step_records_every_send_and_completion_of_a_closed_loop() -> None:
    clock = FakeClock(START_NS)
    end_ns = START_NS + NS_PER_S
    target = SteppedSlotServerTarget(clock, slots=100, service_ns=10 * NS_PER_MS)
    rec = Recorder(target.name, target.op_names, start_ns=START_NS)

    async def go() -> tuple[ClosedLoopStats, IntervalSnapshot]:
        runner = ClosedLoopRunner(clock, target, OpMix.single(), rec, concurrency=8, end_ns=end_ns)
        await target.open(runner.sink)
        stats = await runner.run()
        await target.drain(end_ns + NS_PER_S)
        return stats, rec.rotate(clock.now_ns())

    stats, snap = run_fake(clock, go())
    assert target.steps == stats.dispatched - 8 > 0
    assert target.step is None
    assert snap.sent == stats.dispatched
    # The last 8 complete at the end, after the runner stopped counting: the recorder has them.
    assert snap.completed == stats.completed + 8 == stats.dispatched
    lag = HdrHistogram.decode(snap.lag)
    assert (lag.get_total_count(), lag.get_max_value()) == (stats.dispatched, 0)
    latency = HdrHistogram.decode(snap.corrected[(0, Outcome.OK)])
    assert latency.get_total_count() == snap.completed
    # Every one took one service time, 10 ms: one bucket, from 10,000 us.
    assert latency.get_min_value() == 10_000
    assert latency.get_lowest_equivalent_value(latency.get_max_value()) == 10_000


def test_a_cancelled_closed_loop_takes_its_step_back_from_the_target() -> None:
    clock = FakeClock(START_NS)
    target = SteppedSlotServerTarget(clock, slots=100, service_ns=10 * NS_PER_MS)
    rec = FakeRecorder()

    async def go() -> None:
        runner = ClosedLoopRunner(
            clock, target, OpMix.single(), rec, concurrency=4, end_ns=START_NS + 60 * NS_PER_S
        )
        await target.open(runner.sink)
        running = asyncio.ensure_future(runner.run())
        await clock.sleep_until(START_NS + NS_PER_S)
        assert target.step is not None
        assert target.steps > 0
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await target.close()

    run_fake(clock, go())
    assert target.step is None


@pytest.mark.parametrize("target_type", [SlotServerTarget, SteppedSlotServerTarget])
def test_closed_loop_against_fewer_server_slots_queues_and_achieves_the_server_rate(
    target_type: type[SlotServerTarget],
) -> None:
    # With a step, the queued requests still go first: none waits more than one service time.
    clock = FakeClock(START_NS)
    end_ns = START_NS + NS_PER_S
    target = target_type(clock, slots=4, service_ns=10 * NS_PER_MS)
    rec = FakeRecorder()

    async def go() -> int:
        runner = ClosedLoopRunner(clock, target, OpMix.single(), rec, concurrency=8, end_ns=end_ns)
        await target.open(runner.sink)
        stats = await runner.run()
        await target.close()
        return stats.completed

    completed = run_fake(clock, go())
    assert completed == pytest.approx(400, abs=4)
    late = rec.completions[-1]
    assert late.done_ns - late.intended_ns == 20 * NS_PER_MS  # waits one service time in queue
    assert max(c.done_ns - c.intended_ns for c in rec.completions) == 20 * NS_PER_MS


def test_closed_loop_against_a_target_failing_at_once_ends_at_end_time() -> None:
    clock = FakeClock(START_NS)
    end_ns = START_NS + NS_PER_S
    target = FailAtOnceTarget(clock)
    rec = FakeRecorder()

    async def go() -> int:
        runner = ClosedLoopRunner(clock, target, OpMix.single(), rec, concurrency=4, end_ns=end_ns)
        await target.open(runner.sink)
        stats = await runner.run()
        return stats.dispatched

    dispatched = run_fake(clock, go())
    assert dispatched == target.submits == len(rec.completions) > 4
    assert all(c.outcome is Outcome.CONN_ERROR for c in rec.completions)


def test_open_loop_at_an_absurd_rate_skips_in_bulk_and_ends_on_time() -> None:
    # 1e9/s with each send costing the generator 1 us: it can send about 1 in 1,000. Drawing the
    # late times one by one would never catch up with the clock; bulk skipping ends on schedule
    # with every planned send accounted for.
    stats, rec, _ = open_loop(
        rate_per_s=1e9,
        duration_s=0.05,
        slots=1_000_000,
        service_ms=1,
        send_cost_ns=1_000,
        max_lag_ms=1,
    )
    assert stats.planned == 50_000_000
    assert stats.dispatched + stats.skipped == stats.planned
    assert stats.skipped > 0.99 * stats.planned
    assert 0 < stats.dispatched <= 60_000
    assert sum(rec.skipped) == stats.skipped
