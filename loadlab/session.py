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
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from loadlab.analysis.abort import IntervalFigures
from loadlab.analysis.knee import find_knee
from loadlab.analysis.ramp import RampPlan, RampSearch, StopReason
from loadlab.analysis.steps import StepCriteria, StepVerdict, judge_step
from loadlab.clock import NS_PER_MS, NS_PER_S, NS_PER_US, Clock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import MAX_LAG_S, ClosedLoopRunner, OpenLoopRunner
from loadlab.engine.schedule import ConstantRate, PoissonArrivals, Schedule
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.errors import GeneratorResourceError, LoadlabError, ResultsWriteError
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.metrics.stats import window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import IntervalView, ProgressSink, StepView
from loadlab.results import append_jsonl, rounded
from loadlab.targets.base import CompleteFn, CompletionSink, Outcome, Target
from loadlab.workers.segment import Segment

# Between ramp steps, wait this long at most for the previous step's requests to finish.
DRAIN_BETWEEN_STEPS_S = 5.0
# A fixed-rate or closed-loop run ends early when a target has had no successful answer for this
# long while load was offered: the server is down or answers only errors, and the rest of the run
# would measure a dead port. Not from a reference: long enough to ride out a restart of a few
# seconds, short beside the default 30 s run.
STALL_S = 10.0
# An operation without an SLO: a request unanswered this long when its step is judged is counted
# as unanswered. kube-apiserver's own --request-timeout default is 60 s; we take the sig-scalability
# LIST bound (30 s), the loosest latency SLO there is.
DEFAULT_UNANSWERED_MS = 30_000.0


class SwitchableSink:
    """The sink a target is opened with; completions go to ``to``, which a phase may change
    (a closed loop routes them through its refilling sink, which then calls the recorder).

    A target on the hot path may ``follow`` it instead of calling ``complete``: it is handed the
    current sink's own ``complete`` now and on every switch, and saves a call per completion."""

    def __init__(self, to: CompletionSink) -> None:
        self._to = to
        self._followers: list[Callable[[CompleteFn], None]] = []

    @property
    def to(self) -> CompletionSink:
        return self._to

    @to.setter
    def to(self, sink: CompletionSink) -> None:
        self._to = sink
        for bind in self._followers:
            bind(sink.complete)

    def follow(self, bind: Callable[[CompleteFn], None]) -> None:
        self._followers.append(bind)
        bind(self._to.complete)

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        self._to.complete(op, outcome, intended_ns, sent_ns, done_ns)


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
    slo_p50_ms: float | None = None
    """The target's median bound (DNS), or None."""
    snapshots: list[IntervalSnapshot] = field(default_factory=list)
    steps: list[StepVerdict] = field(default_factory=list)
    stop_reason: StopReason | None = None
    """Why this target's ramp search ended (None: no ramp, or it did not end)."""
    stalled_at_s: float | None = None
    """Run time at which a fixed run was ended because this target stopped serving."""
    quiet_intervals: int = 0
    """Consecutive intervals with requests sent and not one success."""

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def generator_limited(self) -> bool:
        """The run ended on a generator-limited step (a ramp stops there; a retried one that
        then passed does not count)."""
        return bool(self.steps) and self.steps[-1].generator_limited


class RailsObserver(Protocol):
    def observe(self, figures: IntervalFigures) -> None: ...


class LoadPool(Protocol):
    """The workers of ``--workers N`` (``loadlab.workers.pool``), as the leader's session uses
    them: they send every phase's load; the leader only decides, merges and writes."""

    async def collect(self, boundary_ns: int) -> None:
        """Wait (briefly) until every worker has sent its intervals up to ``boundary_ns``."""
        ...

    async def open_loop(
        self, target: str, rate_per_s: float, start_ns: int, end_ns: int
    ) -> None: ...

    async def closed(self, target: str, end_ns: int) -> None: ...


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
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a target stopped serving during a fixed run (see STALL_S)."""
    abort: Callable[[str], None] = lambda reason: None
    """Stops the whole run (the launcher cancels its main task); called with the reason when the
    results cannot be written or the generator runs out of file descriptors."""
    fatal: LoadlabError | None = None
    """What made the session abort, for the summary and the one-line message."""
    rails: RailsObserver | None = None
    """Against a real cluster: told each interval's API figures (``loadlab.cluster.rails``)."""
    segment: Segment | None = None
    """In a worker of ``--workers N``: the part of every phase's load this process sends."""
    pool: LoadPool | None = None
    """In the leader of ``--workers N``: the workers that send the load."""
    load_s: float | None = None
    """How long a fixed run's load ran (None: a ramp, or not yet run): its whole-run rates are
    per second of load, not of the run's warm-up and drain around it."""

    # -- the interval ticker -------------------------------------------------------------------

    def next_boundary_ns(self, now_ns: int) -> int:
        k = math.floor((now_ns - self.start_ns) / self.interval_ns) + 1
        return self.start_ns + k * self.interval_ns

    async def tick_forever(self) -> None:
        """Rotate every recorder on each interval boundary and write the interval out; stop the
        run when the results cannot be written or the generator ran out of descriptors."""
        while self.fatal is None:
            boundary = self.next_boundary_ns(self.clock.now_ns())
            await self.clock.sleep_until(boundary)
            if self.pool is not None:
                await self.pool.collect(boundary)
            self.write_safely(lambda: self.rotate_all(self.clock.now_ns()))
            self._check_descriptors()

    def write_safely(self, write: Callable[[], object]) -> None:
        """Run ``write``; a write error (disk full, quota, read-only) stops the run at once: load
        that is not recorded is load nobody can judge. The first error is the one reported."""
        try:
            write()
        except OSError as exc:
            self.fail(
                ResultsWriteError(
                    f"writing results to {self.out_dir} failed ({exc.strerror or exc}): the load "
                    "was stopped; everything written before is kept"
                )
            )

    def fail(self, error: LoadlabError) -> None:
        if self.fatal is None:
            self.fatal = error
            self.abort(type(error).__name__)

    def _check_descriptors(self) -> None:
        for rig in self.rigs:
            if rig.target.fd_exhausted:
                limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                self.fail(
                    GeneratorResourceError(
                        f"the generator ran out of file descriptors (ulimit -n is {limit}) while "
                        f"connecting to {rig.address}: the run was stopped; raise the limit "
                        "(ulimit -n) or lower api.connections"
                    )
                )

    def rotate_all(self, now_ns: int) -> None:
        snaps: dict[str, IntervalSnapshot] = {}
        cpu = self.monitor.sample()
        for rig in self.rigs:
            snap = rig.recorder.rotate(now_ns)
            rig.snapshots.append(snap)
            snaps[rig.name] = snap
            self._watch_stall(rig, snap)
        for rig in self.rigs:
            rig.hlogs.write(snaps[rig.name])
        stats_by_target = self.timeline.write(
            snaps, offered_per_s=self.offered_per_s, generator=cpu
        )
        if self.rails is not None and "api" in stats_by_target:
            api = stats_by_target["api"]
            self.rails.observe(
                IntervalFigures(
                    completed=api.completed,
                    errors=api.errors,
                    throttled=api.errors_by_outcome.get("429", 0),
                    p99_ms=api.latency.p99_ms,
                )
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

    def _watch_stall(self, rig: Rig, snap: IntervalSnapshot) -> None:
        if snap.ok > 0 or (snap.sent == 0 and snap.completed == 0):
            rig.quiet_intervals = 0
            return
        rig.quiet_intervals += 1
        stall_intervals = max(1, math.ceil(STALL_S * NS_PER_S / self.interval_ns))
        if rig.quiet_intervals >= stall_intervals and rig.stalled_at_s is None:
            rig.stalled_at_s = (snap.end_ns - self.start_ns) / NS_PER_S
            self.stalled.set()

    # -- phases ------------------------------------------------------------------------------

    def _schedule(self, rate_per_s: float, start_ns: int, end_ns: int) -> Schedule:
        if self.segment is not None:
            if self.profile.traffic.arrival != "poisson":
                start_ns += self.segment.offset_ns(rate_per_s)
            rate_per_s = self.segment.rate(rate_per_s)
        if self.profile.traffic.arrival == "poisson":
            return PoissonArrivals(
                rate_per_s, start_ns=start_ns, end_ns=end_ns, seed=self.profile.traffic.seed
            )
        return ConstantRate(rate_per_s, start_ns=start_ns, end_ns=end_ns)

    async def open_loop(self, rig: Rig, rate_per_s: float, start_ns: int, end_ns: int) -> None:
        self.offered_per_s[rig.name] = rate_per_s
        if self.pool is not None:
            try:
                await self.pool.open_loop(rig.name, rate_per_s, start_ns, end_ns)
                await self.clock.sleep_until(end_ns)
            finally:
                self.offered_per_s[rig.name] = 0.0
            return
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
        try:
            await runner.run()
            await self.clock.sleep_until(end_ns)
        finally:
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
            slo_p50_ms=rig.slo_p50_ms,
            min_achieved_ratio=c.min_achieved_ratio,
        )

    async def step(
        self, rig: Rig, rate_per_s: float, step_s: float, warmup_s: float, role: str = "search"
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
        verdict = self.judge(rig, measure_from_ns, end_ns, offered_per_s=rate_per_s, role=role)
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
        self,
        rig: Rig,
        start_ns: int,
        end_ns: int,
        *,
        offered_per_s: float | None,
        role: str = "search",
        load_s: float | None = None,
    ) -> StepVerdict:
        """Judge the intervals in [start, end] as one step; record and write the verdict.

        Without an offered rate (a closed loop), what the generator planned stands for it.
        ``load_s``: how long the load ran, when the window also holds its drain.
        """
        snaps = self.window(rig, start_ns, end_ns)
        if not snaps:  # the ticker could not keep up at all: nothing to judge the server by
            snaps = [rig.recorder.rotate(self.clock.now_ns())]
        stats = window_stats(
            snaps,
            offered_per_s=offered_per_s,
            unanswered=self.unanswered(rig, start_ns, end_ns),
            load_s=load_s,
        )
        if offered_per_s is None:
            offered_per_s = stats.planned_per_s
        verdict = self.blame_generator_cpu(
            judge_step(stats, offered_per_s, self.criteria(rig)), start_ns
        )
        if role != verdict.role:
            verdict = replace(verdict, role=role)
        rig.steps.append(verdict)
        self.write_safely(
            lambda: append_jsonl(self.out_dir / "steps.jsonl", rounded(verdict.as_dict(), digits=6))
        )
        return verdict

    def unanswered(self, rig: Rig, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        """(op, age in us) of requests intended in [start, end) and still unanswered now, though
        older than their operation's SLO: a silent server's requests never complete in the step
        that sent them, and must not leave it looking idle."""
        now_ns = self.clock.now_ns()
        slo_ns = [
            int(rig.slo_p99_ms.get(name, DEFAULT_UNANSWERED_MS) * NS_PER_MS)
            for name in rig.recorder.op_names
        ]
        return [
            (op, (now_ns - intended_ns) // NS_PER_US)
            for op, intended_ns in rig.target.pending_intended_ns()
            if start_ns <= intended_ns < end_ns and now_ns - intended_ns > slo_ns[op]
        ]

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
        ramp = self.profile.traffic.ramp
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
        rig.stop_reason = search.stop_reason
        knee = find_knee(search.verdicts)
        if knee is not None and search.stop_reason is not StopReason.SERVED_NOTHING:
            # Re-run the knee: a saturating server serves it again, one that degrades with time
            # (or died after the last passing step) does not (loadlab.analysis.findings).
            self.phase = f"confirm {rig.name} knee"
            await self.step(rig, knee.offered, step_s, warmup_s, role="confirm")

    async def fixed(self, rigs: Sequence[Rig]) -> None:
        load = self.profile.traffic
        start_ns = self.next_boundary_ns(self.clock.now_ns())
        end_ns = start_ns + int(load.duration_s * NS_PER_S)
        await self.clock.sleep_until(start_ns)
        if load.mode == "closed":
            self.phase = f"closed loop x{load.concurrency}"
            load_task = asyncio.gather(*(self._closed(rig, end_ns) for rig in rigs))
        else:
            rate = load.rate_per_s
            assert rate is not None
            self.phase = f"open loop {rate:,.0f}/s"
            load_task = asyncio.gather(
                *(self.open_loop(rig, rate, start_ns, end_ns) for rig in rigs)
            )
        stall: asyncio.Future[Any] = asyncio.ensure_future(self.stalled.wait())
        waiters: list[asyncio.Future[Any]] = [load_task, stall]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stall.cancel()
            if not load_task.done():
                load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load_task
        if self.stalled.is_set():
            end_ns = min(end_ns, self.clock.now_ns())
            self.phase = "stopped: a target stopped serving"
        for rig in rigs:
            await rig.target.drain(self.clock.now_ns() + int(DRAIN_BETWEEN_STEPS_S * NS_PER_S))
        await self.clock.sleep_until(self.next_boundary_ns(self.clock.now_ns()) + 1)
        await asyncio.sleep(0)
        offered = load.rate_per_s if load.mode == "open" else None
        self.load_s = (end_ns - start_ns) / NS_PER_S
        for rig in rigs:
            self.judge(
                rig,
                start_ns,
                end_ns + self.interval_ns,
                offered_per_s=offered,
                load_s=self.load_s,
            )

    async def _closed(self, rig: Rig, end_ns: int) -> None:
        if self.pool is not None:
            await self.pool.closed(rig.name, end_ns)
            return
        concurrency = self.profile.traffic.concurrency
        if self.segment is not None:
            concurrency = self.segment.share(concurrency)
            if concurrency == 0:  # more workers than requests in flight: this one sends none
                await self.clock.sleep_until(end_ns)
                return
        runner = ClosedLoopRunner(
            self.clock,
            rig.target,
            self.mixes[rig.name],
            rig.recorder,
            concurrency=concurrency,
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
