"""A load session: the wiring of targets, runners, recorders and writers for one ``loadlab run``.

The session owns the interval ticker (every recorder rotates on the same boundaries, so each
interval is written to the hlog and timeline files as the run goes) and the phases of the run:
a fixed-rate open loop, a closed loop, or a stepped ramp per target. Everything it decides is
delegated to pure functions in ``loadlab.analysis``; everything it measures comes from
``loadlab.metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from loadlab.analysis.ramp import RampPlan, RampSearch
from loadlab.analysis.steps import StepCriteria, StepVerdict, judge_step
from loadlab.clock import NS_PER_S, Clock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import ClosedLoopRunner, OpenLoopRunner
from loadlab.engine.schedule import ConstantRate, PoissonArrivals, Schedule
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.metrics.stats import window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import IntervalView, ProgressSink, StepView
from loadlab.results import append_jsonl, rounded
from loadlab.targets.base import CompletionSink, Outcome, Target

# A send more than this late is skipped, not sent in a burst (see OpenLoopRunner).
MAX_LAG_S = 0.5
# Between ramp steps, wait this long at most for the previous step's requests to finish.
DRAIN_BETWEEN_STEPS_S = 5.0


class SwitchableSink:
    """The sink a target is opened with; completions go to ``to``, which a phase may change
    (a closed loop routes them through its refilling sink, which then calls the recorder)."""

    def __init__(self, to: CompletionSink) -> None:
        self.to = to

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        self.to.complete(op, outcome, intended_ns, sent_ns, done_ns)


@dataclass
class Rig:
    """One target under load, with its recorder and its files."""

    target: Target
    recorder: Recorder
    sink: SwitchableSink
    address: str
    slo_p99_ms: dict[str, float]
    hlogs: TargetHlogs
    max_backlog: int
    snapshots: list[IntervalSnapshot] = field(default_factory=list)
    steps: list[StepVerdict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def generator_limited(self) -> bool:
        """The run ended on a generator-limited step (a ramp stops there; a retried one that
        then passed does not count)."""
        return bool(self.steps) and self.steps[-1].generator_limited


@dataclass
class Session:
    profile: Profile
    clock: Clock
    rigs: list[Rig]
    timeline: TimelineWriter
    out_dir: Path
    progress: ProgressSink
    monitor: GeneratorMonitor
    start_ns: int
    interval_ns: int
    mixes: dict[str, OpMix]
    """Operation mix per target name."""
    phase: str = "starting"
    offered_per_s: dict[str, float] = field(default_factory=dict)

    # -- the interval ticker -------------------------------------------------------------------

    def next_boundary_ns(self, now_ns: int) -> int:
        k = math.floor((now_ns - self.start_ns) / self.interval_ns) + 1
        return self.start_ns + k * self.interval_ns

    async def tick_forever(self) -> None:
        """Rotate every recorder on each interval boundary and write the interval out."""
        while True:
            boundary = self.next_boundary_ns(self.clock.now_ns())
            await self.clock.sleep_until(boundary)
            self.rotate_all(self.clock.now_ns())

    def rotate_all(self, now_ns: int) -> None:
        snaps: dict[str, IntervalSnapshot] = {}
        cpu = self.monitor.sample()
        for rig in self.rigs:
            snap = rig.recorder.rotate(now_ns)
            rig.snapshots.append(snap)
            rig.hlogs.write(snap)
            snaps[rig.name] = snap
        stats_by_target = self.timeline.write(
            snaps, offered_per_s=self.offered_per_s, generator=cpu
        )
        for rig in self.rigs:
            stats = stats_by_target[rig.name]
            self.progress.interval(
                IntervalView(
                    target=rig.name,
                    phase=self.phase,
                    elapsed_s=(now_ns - self.start_ns) / NS_PER_S,
                    offered_per_s=self.offered_per_s.get(rig.name, 0.0),
                    achieved_per_s=stats.achieved_per_s,
                    errors_per_s=stats.per_s(stats.errors),
                    p99_ms=stats.latency.p99_ms,
                    in_flight=rig.target.in_flight,
                )
            )

    # -- phases ------------------------------------------------------------------------------

    def _schedule(self, rate_per_s: float, start_ns: int, end_ns: int) -> Schedule:
        if self.profile.load.arrival == "poisson":
            return PoissonArrivals(
                rate_per_s, start_ns=start_ns, end_ns=end_ns, seed=self.profile.load.seed
            )
        return ConstantRate(rate_per_s, start_ns=start_ns, end_ns=end_ns)

    async def open_loop(self, rig: Rig, rate_per_s: float, start_ns: int, end_ns: int) -> None:
        self.offered_per_s[rig.name] = rate_per_s
        runner = OpenLoopRunner(
            self.clock,
            rig.target,
            self._schedule(rate_per_s, start_ns, end_ns),
            self.mixes[rig.name],
            rig.recorder,
            end_ns=end_ns,
            max_lag_ns=int(MAX_LAG_S * NS_PER_S),
            max_backlog=rig.max_backlog,
        )
        await runner.run()
        await self.clock.sleep_until(end_ns)
        self.offered_per_s[rig.name] = 0.0

    def window(self, rig: Rig, start_ns: int, end_ns: int) -> list[IntervalSnapshot]:
        """Snapshots inside [start, end], allowing half an interval of ticker slack."""
        slack = self.interval_ns // 2
        return [
            s
            for s in rig.snapshots
            if s.start_ns >= start_ns - slack and s.end_ns <= end_ns + slack
        ]

    def criteria(self, rig: Rig) -> StepCriteria:
        c = self.profile.criteria
        return StepCriteria(
            min_sent_ratio=c.min_sent_ratio,
            max_lag_p99_ms=c.max_lag_p99_ms,
            max_error_rate=c.max_error_rate,
            slo_p99_ms=dict(rig.slo_p99_ms),
            min_achieved_ratio=c.min_achieved_ratio,
        )

    async def step(
        self, rig: Rig, rate_per_s: float, step_s: float, warmup_s: float
    ) -> StepVerdict:
        """Run one step at ``rate_per_s`` and judge its measuring window."""
        start_ns = self.next_boundary_ns(self.clock.now_ns())
        measure_from_ns = start_ns + int(warmup_s * NS_PER_S)
        end_ns = start_ns + int(step_s * NS_PER_S)
        await self.clock.sleep_until(start_ns)
        await self.open_loop(rig, rate_per_s, start_ns, end_ns)
        # Let the ticker close the last interval of the step before judging it.
        await self.clock.sleep_until(end_ns + self.interval_ns // 10)
        await asyncio.sleep(0)
        verdict = self.judge(rig, measure_from_ns, end_ns, offered_per_s=rate_per_s)
        self.progress.step(
            StepView(
                target=rig.name,
                offered_per_s=verdict.offered,
                achieved_per_s=verdict.achieved,
                p99_ms=verdict.p99_ms,
                error_rate=verdict.error_rate,
                verdict=verdict_label(verdict),
                why=verdict.why,
            )
        )
        drain_deadline = self.clock.now_ns() + int(DRAIN_BETWEEN_STEPS_S * NS_PER_S)
        await rig.target.drain(drain_deadline)
        return verdict

    def judge(
        self, rig: Rig, start_ns: int, end_ns: int, *, offered_per_s: float | None
    ) -> StepVerdict:
        """Judge the intervals in [start, end] as one step; record and write the verdict.

        Without an offered rate (a closed loop), what the generator planned stands for it.
        """
        snaps = self.window(rig, start_ns, end_ns)
        if not snaps:  # the ticker could not keep up at all: nothing to judge the server by
            snaps = [rig.recorder.rotate(self.clock.now_ns())]
        stats = window_stats(snaps, offered_per_s=offered_per_s)
        if offered_per_s is None:
            offered_per_s = stats.planned_per_s
        verdict = self.blame_generator_cpu(
            judge_step(stats, offered_per_s, self.criteria(rig)), start_ns
        )
        rig.steps.append(verdict)
        append_jsonl(self.out_dir / "steps.jsonl", rounded(verdict.as_dict(), digits=6))
        return verdict

    def blame_generator_cpu(self, verdict: StepVerdict, since_ns: int) -> StepVerdict:
        """A failing step while the generator's core was saturated says nothing of the server.

        The open loop's schedule lag stays small even then (sends are dispatched on time into
        the target's queue), so the queueing that follows would be charged to the server; the
        generator's own CPU is the tell.
        """
        if not verdict.failed:
            return verdict
        cpu = self.monitor.summary(since_ns=since_ns).cpu_percent_mean
        limit = self.profile.criteria.max_generator_cpu_percent
        if cpu < limit:
            return verdict
        why = f"generator-limited: its CPU at {cpu:.0f}% of a core (> {limit:g}%)"
        return replace(
            verdict, passed=False, generator_limited=True, why=why, check="generator_cpu"
        )

    async def ramp(self, rig: Rig) -> None:
        ramp = self.profile.load.ramp
        assert ramp is not None
        # Steps start and end on interval boundaries, so a step's window is whole intervals.
        interval_s = self.interval_ns / NS_PER_S
        step_s = math.ceil(ramp.step_s / interval_s) * interval_s
        warmup_s = math.ceil(ramp.warmup_s / interval_s) * interval_s
        search = RampSearch(
            RampPlan(
                start_per_s=ramp.start_per_s,
                factor=ramp.factor,
                max_per_s=ramp.max_per_s,
                refine_within=ramp.refine_within,
                max_steps=ramp.max_steps,
            )
        )
        self.phase = f"ramp {rig.name}"
        while (rate := search.next_rate()) is not None:
            verdict = await self.step(rig, rate, step_s, warmup_s)
            if verdict.generator_limited:
                # One stall (another process on the core, a GC pause) should not end the search:
                # run the step once more; a generator that is really too slow fails it again.
                verdict = await self.step(rig, rate, step_s, warmup_s)
            search.record(verdict)

    async def fixed(self, rigs: Sequence[Rig]) -> None:
        load = self.profile.load
        start_ns = self.next_boundary_ns(self.clock.now_ns())
        end_ns = start_ns + int(load.duration_s * NS_PER_S)
        await self.clock.sleep_until(start_ns)
        if load.mode == "closed":
            self.phase = f"closed loop x{load.concurrency}"
            await asyncio.gather(*(self._closed(rig, end_ns) for rig in rigs))
        else:
            rate = load.rate_per_s
            assert rate is not None
            self.phase = f"open loop {rate:,.0f}/s"
            await asyncio.gather(*(self.open_loop(rig, rate, start_ns, end_ns) for rig in rigs))
        for rig in rigs:
            await rig.target.drain(self.clock.now_ns() + int(DRAIN_BETWEEN_STEPS_S * NS_PER_S))
        await self.clock.sleep_until(self.next_boundary_ns(self.clock.now_ns()) + 1)
        await asyncio.sleep(0)
        offered = load.rate_per_s if load.mode == "open" else None
        for rig in rigs:
            self.judge(rig, start_ns, end_ns + self.interval_ns, offered_per_s=offered)

    async def _closed(self, rig: Rig, end_ns: int) -> None:
        runner = ClosedLoopRunner(
            self.clock,
            rig.target,
            self.mixes[rig.name],
            rig.recorder,
            concurrency=self.profile.load.concurrency,
            end_ns=end_ns,
        )
        rig.sink.to = runner.sink
        try:
            await runner.run()
        finally:
            rig.sink.to = rig.recorder


def verdict_label(verdict: StepVerdict) -> str:
    if verdict.generator_limited:
        return "generator-limited"
    return "pass" if verdict.passed else "FAIL"


async def cancel_quietly(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
