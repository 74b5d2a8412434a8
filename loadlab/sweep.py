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

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadlab.agents.base import Agent
from loadlab.agents.rollout import RolloutPlan
from loadlab.analysis.abort import IntervalFigures
from loadlab.analysis.steps import StepCriteria
from loadlab.clock import NS_PER_S, Clock
from loadlab.cluster.rails import Rails
from loadlab.cluster.settings import AbortSection
from loadlab.engine.agents import (
    AgentRunner,
    check_agent_sockets,
    ops_by_kind,
)
from loadlab.engine.quietgc import QuietGc
from loadlab.engine.selfmon import GeneratorMonitor, LoopLagProbe
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.ledger import SendSecondLedger
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.metrics.stats import window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import IntervalView, ProgressSink
from loadlab.runloop import raise_open_file_limit
from loadlab.scenario import Phases, Placement, api_op_bounds, build_agents
from loadlab.sweep_watch import OnsetWatch
from loadlab.targets.address import DNS_DEFAULT_PORT, parse_host_port
from loadlab.targets.agent_fast_http import FastAgentHttpClient
from loadlab.targets.cluster import ClusterAccess
from loadlab.targets.dns_client import DnsClient

POOL_CONNECTIONS = 256
"""Connections the agents' ordinary requests share (watches have their own). Not from a
reference: enough that a saturated API server, not the client pool, is where requests wait, at
kube-apiserver's 400 + 200 in-flight limit the pool is not the bottleneck of a default server."""
DNS_SOCKETS = 4
"""UDP sockets of the agents' DNS client (65,536 query IDs each). Not from a reference: 200 nodes
x 10 pods resolving every 10 s ask a few hundred questions a second, far below one socket's IDs;
four spread the kernel's per-socket receive buffer so a burst of answers is not dropped."""
LOOKUP_OP = "lookup"
SETTLE_BEFORE_WARM_NS = 2 * NS_PER_S
"""How long before the warm-up ends the generator's heap is frozen (``QuietGc.settled``): its
one full collection, about a second at 10,000 nodes, ends before the measuring starts."""
API_TIMEOUT_S = 60.0
"""kube-apiserver's own --request-timeout."""


@dataclass
class SizeRun:
    """What one size measured, as it ran (filled in by ``run_size``)."""

    nodes: int
    out_dir: Path
    start_ns: int = 0
    end_ns: int = 0
    complete: bool = False
    agents: list[Agent] = field(default_factory=list)
    snapshots: dict[str, list[IntervalSnapshot]] = field(default_factory=dict)
    lookups: SendSecondLedger | None = None
    monitor: GeneratorMonitor | None = None
    lag: LoopLagProbe | None = None


def effective_phases(profile: Profile, quick: bool) -> Phases:
    if quick and profile.quick is not None and profile.quick.phases is not None:
        return profile.quick.phases
    return profile.phases


def effective_sizes(profile: Profile, quick: bool, sizes: Sequence[int] | None) -> tuple[int, ...]:
    if sizes:
        return tuple(sizes)
    if quick and profile.quick is not None and profile.quick.sizes is not None:
        return profile.quick.sizes
    return profile.size_list


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
) -> None:
    """Run the scenario at ``size`` nodes, filling ``run`` as it goes (so a run stopped by a
    signal still has everything up to then). ``cluster``: against a real cluster (TLS and
    credentials, where the agents put what they create, the rails)."""
    assert profile.agents is not None
    phases = effective_phases(profile, quick)
    run.start_ns = start_ns = clock.now_ns()
    wall_offset_ns = time.time_ns() - start_ns
    agents = build_agents(
        profile.agents,
        size,
        steady_s=phases.steady_s,
        wall_offset_ns=wall_offset_ns,
        quick=profile.quick if quick else None,
        placement=cluster.placement if cluster is not None else None,
        with_pod_dns=dns_addr is not None,
    )
    run.agents = agents
    raise_open_file_limit()
    check_agent_sockets(agents, pool_connections=POOL_CONNECTIONS, dns_sockets=DNS_SOCKETS)
    ops = ops_by_kind(agents)
    agent_count = Counter(a.kind for a in agents)
    recorders = _recorders(ops, start_ns, run)
    run.snapshots = {kind: [] for kind in ops}
    run.monitor = monitor = GeneratorMonitor(clock)
    run.lag = lag = LoopLagProbe(clock)
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    timeline = TimelineWriter(out_dir / "timeline.csv", list(ops), ops)
    epoch_s = time.time()
    hlogs = {kind: TargetHlogs(out_dir, kind, start_time_epoch_s=epoch_s) for kind in ops}
    interval_ns = int(profile.interval_s * NS_PER_S)
    until_ns = start_ns + int(phases.duration_s * NS_PER_S)

    async with contextlib.AsyncExitStack() as stack:
        access = cluster.access if cluster is not None else None
        http, dns = await _transports(stack, ops, api_url, dns_addr, clock, access)
        rails = None
        if cluster is not None and cluster.rails is not None and access is not None:
            rails = Rails(cluster.rails, access, clock, start_ns, on_abort=cluster.on_abort)
            rails.start()
            stack.push_async_callback(rails.stop)
        runner = AgentRunner(clock, agents, http=http, dns=dns, recorders=recorders, rng_seed=size)

        watch = OnsetWatch(
            StepCriteria(
                max_error_rate=profile.sweep.max_error_rate,
                slo_p99_ms=api_op_bounds(profile.agents, profile.slo),
            ),
            window_s=profile.sweep.window_s,
            dns_failure_rate=profile.sweep.dns_failure_rate,
            warmup_s=phases.warmup_s,
        )

        def rotate(now_ns: int) -> None:
            snaps = {}
            for kind, recorder in recorders.items():
                snap = recorder.rotate(now_ns)
                run.snapshots[kind].append(snap)
                hlogs[kind].write(snap)
                snaps[kind] = snap
            sample = monitor.sample()
            stats = timeline.write(snaps, offered_per_s={}, generator=sample)
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
                        phase=f"{phase} ({agent_count[kind]:,} agents)",
                        elapsed_s=elapsed_s,
                        offered_per_s=st.sent_per_s,
                        achieved_per_s=st.achieved_per_s,
                        errors_per_s=st.per_s(st.errors),
                        p99_ms=st.latency.p99_ms,
                        in_flight=0,
                    )
                )

        quiet_gc = QuietGc()

        async def tick() -> None:
            k = 1
            while True:
                await clock.sleep_until(start_ns + k * interval_ns)
                rotate(clock.now_ns())
                quiet_gc.tick(monitor.samples[-1].rss_mb if monitor.samples else 0.0)
                k += 1

        ticker = asyncio.ensure_future(tick())
        probe = asyncio.ensure_future(lag.run(until_ns))
        warm_ns = start_ns + int(phases.warmup_s * NS_PER_S)

        async def forget_warmup() -> None:
            # The generator is judged, like the server, on the steady state after the warm-up.
            # Freeze what the warm-up built a little before it ends, so that the collection
            # this takes is over before the steady state is measured.
            await clock.sleep_until(max(start_ns, warm_ns - SETTLE_BEFORE_WARM_NS))
            quiet_gc.settled()
            await clock.sleep_until(warm_ns)
            lag.reset()
            monitor.samples.clear()

        warmup = asyncio.ensure_future(forget_warmup())
        try:
            with quiet_gc:
                await runner.run(until_ns)
            run.complete = True
        finally:
            ticker.cancel()
            probe.cancel()
            warmup.cancel()
            for task in (ticker, probe, warmup):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            runner.stop()
            run.end_ns = clock.now_ns()
            rotate(run.end_ns)
            for writer in hlogs.values():
                writer.close()
            timeline.close()


def _recorders(
    ops: Mapping[str, Sequence[str]], start_ns: int, run: SizeRun
) -> dict[str, Recorder]:
    """One recorder per agent kind; the kind with lookups also counts them by send second."""
    recorders: dict[str, Recorder] = {}
    for kind, names in ops.items():
        if LOOKUP_OP in names:
            ledger = SendSecondLedger(kind, names, watched=[LOOKUP_OP], start_ns=start_ns)
            recorders[kind] = run.lookups = ledger
        else:
            recorders[kind] = Recorder(kind, names, start_ns=start_ns)
    return recorders


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


async def _transports(
    stack: contextlib.AsyncExitStack,
    ops: Mapping[str, Sequence[str]],
    api_url: str | None,
    dns_addr: str | None,
    clock: Clock,
    access: ClusterAccess | None = None,
) -> tuple[FastAgentHttpClient | None, DnsClient | None]:
    """The HTTP client when an agent kind talks to the API, the DNS client when pods resolve."""
    http = None
    if api_url is not None and any(k != "pod-dns" for k in ops):
        http = FastAgentHttpClient(
            api_url,
            pool_connections=POOL_CONNECTIONS,
            timeout_s=API_TIMEOUT_S,
            clock=clock,
            access=access,
        )
        await stack.enter_async_context(http)
    dns = None
    if dns_addr is not None and "pod-dns" in ops:
        host, port = parse_host_port(dns_addr, default_port=DNS_DEFAULT_PORT)
        dns = DnsClient(host, port, sockets=DNS_SOCKETS)
        await stack.enter_async_context(dns)
    return http, dns


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
