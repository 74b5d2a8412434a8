"""Hot paths of the engine (pytest-benchmark; not part of the test suite): schedules, the mix,
and the closed loop's dispatch of one completion.

Run: ``.venv/bin/pytest bench/test_bench_engine.py --benchmark-only``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import ClosedLoopRunner
from loadlab.engine.schedule import ConstantRate, JitteredAgents, PoissonArrivals
from loadlab.metrics.recorder import Recorder
from loadlab.session import SwitchableSink
from loadlab.targets.base import CompletionSink, Outcome
from loadlab.targets.http import HttpOperation, HttpTarget

FOREVER_NS = 10**6 * NS_PER_S


class _Sender:
    """A target whose ``submit`` only counts: the runner's own cost, without a wire."""

    name = "dns"
    op_names: tuple[str, ...] = ("a",)
    fd_exhausted = False
    stray = 0

    def __init__(self) -> None:
        self.submitted = 0

    async def open(self, sink: CompletionSink) -> None:
        pass

    def submit(self, op: int, intended_ns: int) -> None:
        self.submitted += 1

    @property
    def in_flight(self) -> int:
        return 0

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        return []

    async def drain(self, deadline_ns: int) -> None:
        pass

    async def close(self) -> None:
        pass


def test_bench_closed_loop_dispatch_of_one_completion(benchmark: Any) -> None:
    """A completion as ``loadlab run``'s closed loop takes it: the session's switchable sink,
    the runner recording it and dispatching the next request (a clock read, the mix, the
    dispatch record, ``submit``)."""

    async def main() -> int:
        clock = FakeClock(1)
        target = _Sender()
        recorder = Recorder("dns", target.op_names, start_ns=0)
        runner = ClosedLoopRunner(
            clock, target, OpMix([1.0], seed=1), recorder, concurrency=100, end_ns=FOREVER_NS
        )
        sink = SwitchableSink(runner.sink)
        running = asyncio.ensure_future(runner.run())
        await asyncio.sleep(0)  # the runner is running: its first 100 sent
        benchmark(sink.complete, 0, Outcome.OK, 0, 0, 1)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        return target.submitted

    assert asyncio.run(main()) > 100  # one submit per completion after the first 100


def test_bench_closed_loop_step_of_one_completion(benchmark: Any) -> None:
    """A completion as a target with ``set_step`` hands it to a closed loop: the recorder's step
    records it and its on-time replacement and names the next op (the target then writes that
    request itself). Compare with the runner's path above."""
    recorder = Recorder("dns", ("get",), start_ns=0)

    def late(op: int, outcome: Outcome, intended: int, sent: int, done: int) -> int:
        raise AssertionError("the benchmark never reaches the end")

    step, steps_taken = recorder.closed_step(OpMix([1.0], seed=1).next_op, FOREVER_NS, late)
    assert benchmark(step, 0, Outcome.OK, 0, 0, 1) == 0
    assert steps_taken() > 0


def test_bench_constant_rate_tick(benchmark: Any) -> None:
    benchmark(ConstantRate(100_000, start_ns=0, end_ns=FOREVER_NS).next_ns)


def test_bench_poisson_tick(benchmark: Any) -> None:
    benchmark(PoissonArrivals(100_000, start_ns=0, end_ns=FOREVER_NS, seed=1).next_ns)


def test_bench_jittered_agents_tick(benchmark: Any) -> None:
    sched = JitteredAgents(5000, 10.0, jitter=0.04, start_ns=0, end_ns=FOREVER_NS, seed=1)
    benchmark(sched.next_ns)


def test_bench_mix_next_op(benchmark: Any) -> None:
    benchmark(OpMix([5, 3, 1, 1], seed=1).next_op)


def test_bench_http_target_submit(benchmark: Any) -> None:
    """submit() with no idle worker to wake: the deque append and bookkeeping."""

    async def main() -> None:
        target = HttpTarget("http://127.0.0.1:9", [HttpOperation("get", "GET", "/")])

        def submit_and_trim() -> None:
            target.submit(0, 0)
            if len(target._queue) > 10_000:
                target._queue.clear()

        benchmark(submit_and_trim)

    asyncio.run(main())
