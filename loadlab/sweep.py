"""Running an agent scenario at one cluster size: agents, recording, and what the size came to.

For a size of N nodes: build the agents (``loadlab.scenario.build_agents``), open the transports
(one shared HTTP pool, a connection per watch, a DNS client), and run every flow for
``phases.duration_s`` while a ticker rotates the recorders once per interval and writes each
interval out (``timeline.csv`` and one hlog per agent kind, in the size's own folder). Then judge
it (``loadlab.analysis.onset``): when the API saturated, when DNS failed, how long the caches
hid it, and whether the generator itself kept up (its event loop's lag), which decides whether
the size's answer is the server's at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loadlab.agents.rollout import RolloutPlan
from loadlab.analysis.abort import IntervalFigures
from loadlab.analysis.steps import StepCriteria
from loadlab.clock import NS_PER_S, Clock
from loadlab.cluster.rails import Rails
from loadlab.cluster.settings import AbortSection
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.ledger import LookupCounts
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.metrics.stats import window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import IntervalView, ProgressSink
from loadlab.scenario import Phases, Placement, api_op_bounds
from loadlab.sweep_load import (
    LOOKUP_OP,
    POOL_CONNECTIONS,
    AgentLoad,
    OnInterval,
    effective_phases,
)
from loadlab.sweep_watch import OnsetWatch
from loadlab.targets.cluster import AccessRecipe, ClusterAccess

__all__ = ["LOOKUP_OP", "POOL_CONNECTIONS", "SizeRun", "effective_phases", "run_size"]


class LagReading(Protocol):
    """The generator's event-loop lag: one process's probe, or the worst of the workers'."""

    def p99_ms(self) -> float: ...


class SizeLoad(Protocol):
    """What runs the agents of one size: ``AgentLoad`` in this process, or
    ``loadlab.workers.agent_pool.PooledAgentLoad`` over worker processes."""

    @property
    def ops(self) -> dict[str, tuple[str, ...]]: ...

    @property
    def agent_count(self) -> dict[str, int]: ...

    @property
    def lookups(self) -> LookupCounts | None:
        """Lookups by send second, once ``run`` has started."""

    @property
    def monitor(self) -> GeneratorMonitor: ...

    @property
    def lag(self) -> LagReading: ...

    def tallies(self) -> dict[str, dict[str, int]]: ...

    def stop(self) -> None: ...

    async def run(
        self,
        start_ns: int,
        until_ns: int,
        *,
        interval_ns: int,
        on_interval: OnInterval,
    ) -> None: ...


@dataclass
class SizeRun:
    """What one size measured, as it ran (filled in by ``run_size``)."""

    nodes: int
    out_dir: Path
    start_ns: int = 0
    end_ns: int = 0
    complete: bool = False
    agent_count: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, dict[str, int]] = field(default_factory=dict)
    """What the agents counted themselves (``loadlab.sweep_load.agent_tallies``)."""
    snapshots: dict[str, list[IntervalSnapshot]] = field(default_factory=dict)
    lookups: LookupCounts | None = None
    monitor: GeneratorMonitor | None = None
    lag: LagReading | None = None
    workers: int = 1


def effective_sizes(profile: Profile, quick: bool, sizes: Sequence[int] | None) -> tuple[int, ...]:
    if sizes:
        return tuple(sizes)
    if quick and profile.quick is not None and profile.quick.sizes is not None:
        return profile.quick.sizes
    return profile.size_list


async def open_load(
    profile: Profile,
    size: int,
    *,
    clock: Clock,
    quick: bool,
    workers: int,
    api_url: str | None,
    dns_addr: str | None,
    out_dir: Path,
    cluster: SizeCluster | None = None,
) -> SizeLoad:
    """The agents of ``size`` nodes, ready to run: in this process, or in ``workers`` worker
    processes (started here, each with its segment built and its sockets checked)."""
    placement = cluster.placement if cluster is not None else None
    if workers == 1:
        load = AgentLoad(
            profile,
            size,
            clock=clock,
            quick=quick,
            with_pod_dns=dns_addr is not None,
            placement=placement,
            api_url=api_url,
            dns_addr=dns_addr,
            access=cluster.access if cluster is not None else None,
        )
        load.check_sockets()
        return load
    from loadlab.workers.agent_pool import PooledAgentLoad

    return await PooledAgentLoad.open(
        profile,
        size,
        workers=workers,
        clock=clock,
        quick=quick,
        with_pod_dns=dns_addr is not None,
        api_url=api_url,
        dns_addr=dns_addr,
        out_dir=out_dir,
        placement=placement,
        recipe=cluster.recipe if cluster is not None else None,
    )


async def run_size(
    profile: Profile,
    size: int,
    *,
    clock: Clock,
    api_url: str | None,
    dns_addr: str | None,
    out_dir: Path,
    progress: ProgressSink,
    quick: bool,
    run: SizeRun,
    cluster: SizeCluster | None = None,
    workers: int = 1,
) -> None:
    """Run the scenario at ``size`` nodes, filling ``run`` as it goes (so a run stopped by a
    signal still has everything up to then). ``cluster``: against a real cluster (TLS and
    credentials, where the agents put what they create, the rails). ``workers``: generator
    processes (``--workers``); their intervals are merged here into one record."""
    assert profile.agents is not None
    phases = effective_phases(profile, quick)
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    load = await open_load(
        profile,
        size,
        clock=clock,
        quick=quick,
        workers=workers,
        api_url=api_url,
        dns_addr=dns_addr,
        out_dir=out_dir,
        cluster=cluster,
    )
    run.start_ns = start_ns = clock.now_ns()
    run.workers = workers
    ops = load.ops
    run.agent_count = agent_count = load.agent_count
    run.snapshots = {kind: [] for kind in ops}
    run.monitor = monitor = load.monitor
    run.lag = load.lag
    timeline = TimelineWriter(out_dir / "timeline.csv", list(ops), ops)
    epoch_s = time.time()
    hlogs = {kind: TargetHlogs(out_dir, kind, start_time_epoch_s=epoch_s) for kind in ops}
    interval_ns = int(profile.interval_s * NS_PER_S)
    until_ns = start_ns + int(phases.duration_s * NS_PER_S)
    watch = OnsetWatch(
        StepCriteria(
            max_error_rate=profile.sweep.max_error_rate,
            slo_p99_ms=api_op_bounds(profile.agents, profile.slo),
        ),
        window_s=profile.sweep.window_s,
        dns_failure_rate=profile.sweep.dns_failure_rate,
        warmup_s=phases.warmup_s,
    )
    rails: Rails | None = None

    async def on_interval(now_ns: int, snaps: Mapping[str, IntervalSnapshot], final: bool) -> None:
        run.lookups = load.lookups
        if final:
            run.end_ns = now_ns
            run.tallies = load.tallies()
        for kind, snap in snaps.items():
            run.snapshots[kind].append(snap)
            hlogs[kind].write(snap)
        sample = monitor.sample()
        stats = timeline.write(dict(snaps), offered_per_s={}, generator=sample)
        elapsed_s = (now_ns - start_ns) / NS_PER_S
        phase = _phase_label(size, elapsed_s, phases, profile, quick)
        api_snaps = {k: v for k, v in run.snapshots.items() if k != "pod-dns"}
        if rails is not None:
            rails.observe(api_figures(snaps))
        lookups = run.lookups.seconds(since_ns=start_ns) if run.lookups is not None else []
        for line in watch.look(elapsed_s, api_snaps, lookups):
            progress.note(f"{size:,} nodes: {line}")
        for kind, st in stats.items():
            progress.interval(
                IntervalView(
                    target=kind,
                    phase=f"{phase} ({agent_count.get(kind, 0):,} agents)",
                    elapsed_s=elapsed_s,
                    offered_per_s=st.sent_per_s,
                    achieved_per_s=st.achieved_per_s,
                    errors_per_s=st.per_s(st.errors),
                    p99_ms=st.latency.p99_ms,
                    in_flight=0,
                )
            )

    access = cluster.access if cluster is not None else None
    try:
        if cluster is not None and cluster.rails is not None and access is not None:
            rails = Rails(cluster.rails, access, clock, start_ns, on_abort=cluster.on_abort)
            rails.start()
        await load.run(start_ns, until_ns, interval_ns=interval_ns, on_interval=on_interval)
        run.complete = True
    finally:
        run.lookups = load.lookups
        if rails is not None:
            await rails.stop()
        if run.end_ns == 0:
            run.end_ns = clock.now_ns()
        for writer in hlogs.values():
            writer.close()
        timeline.close()


def api_figures(snaps: Mapping[str, IntervalSnapshot]) -> IntervalFigures:
    """One interval of every API agent kind together, for the rails."""
    api = [window_stats([snap]) for kind, snap in snaps.items() if kind != "pod-dns"]
    return IntervalFigures(
        completed=sum(st.completed for st in api),
        errors=sum(st.errors for st in api),
        throttled=sum(st.errors_by_outcome.get("429", 0) for st in api),
        p99_ms=max((st.latency.p99_ms for st in api), default=0.0),
    )


@dataclass(frozen=True)
class SizeCluster:
    """A size run against a real cluster."""

    access: ClusterAccess
    placement: Placement
    rails: AbortSection | None
    """None: the rails are off."""
    on_abort: Callable[[str], None] = lambda reason: None
    """How the size's run is stopped when a rail fires (set by the size's own run)."""
    recipe: AccessRecipe | None = None
    """How workers rebuild ``access`` (``--workers``)."""


def _phase_label(size: int, elapsed_s: float, phases: Phases, profile: Profile, quick: bool) -> str:
    """``2,000 nodes: rollout 1,200/2,000`` for the live view."""
    where = f"{size:,} nodes"
    if elapsed_s < phases.warmup_s:
        return f"{where}: warm-up"
    telemetry = profile.agents.telemetry if profile.agents is not None else None
    if telemetry is None or elapsed_s < phases.steady_s:
        return f"{where}: steady"
    pace = telemetry.pace_nodes_per_s
    if quick and profile.quick is not None and profile.quick.pace_nodes_per_s is not None:
        pace = profile.quick.pace_nodes_per_s
    plan = RolloutPlan(start_s=phases.steady_s, pace_nodes_per_s=pace)
    rolled = plan.nodes_rolled_out(elapsed_s, size)
    return f"{where}: telemetry on {rolled:,}/{size:,}"
