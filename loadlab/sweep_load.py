"""The agents of one cluster size in one process: built, recorded, run.

``AgentLoad`` is what ``loadlab.sweep.run_size`` runs when the generator is one process, and
what each worker of ``--workers N`` runs for its segment (``Segment.pick``: worker i of n takes
every n-th agent of each kind, so node i's agents go to worker i mod n). Either way it calls
``on_interval`` with one snapshot per agent kind on every interval boundary and once more when it
stops; what happens to them (timeline, hlogs, live view, onset watch, or the wire to the leader)
is its caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence

from loadlab.agents.base import Agent
from loadlab.agents.kubelet import Kubelet
from loadlab.agents.pod_dns import PodDns
from loadlab.agents.stagger import Staggered
from loadlab.clock import NS_PER_S, Clock
from loadlab.engine.agents import AgentRunner, check_agent_sockets, ops_by_kind
from loadlab.engine.quietgc import QuietGc
from loadlab.engine.selfmon import GeneratorMonitor, LoopLagProbe
from loadlab.metrics.ledger import LookupCounts, SendSecondLedger
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.profile import Profile
from loadlab.runloop import raise_open_file_limit
from loadlab.scenario import Phases, Placement, build_agents
from loadlab.targets.address import DNS_DEFAULT_PORT, parse_host_port
from loadlab.targets.agent_fast_http import FastAgentHttpClient
from loadlab.targets.cluster import ClusterAccess
from loadlab.targets.dns_client import DnsClient
from loadlab.workers.segment import Segment

POOL_CONNECTIONS = 256
"""Connections the agents' ordinary requests share (watches have their own), per process. Not
from a reference: enough that a saturated API server, not the client pool, is where requests
wait; at kube-apiserver's 400 + 200 in-flight limit the pool is not the bottleneck of a default
server. Workers share it out (``Segment.share``)."""
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

OnInterval = Callable[[int, Mapping[str, IntervalSnapshot], bool], Awaitable[None]]
"""``(now_ns, snapshot per kind, final)``: called on every interval boundary and once at the end."""


def effective_phases(profile: Profile, quick: bool) -> Phases:
    if quick and profile.quick is not None and profile.quick.phases is not None:
        return profile.quick.phases
    return profile.phases


def segment_agents(agents: Sequence[Agent], segment: Segment) -> list[Agent]:
    """A worker's share of ``agents``: ``Segment.pick`` of each kind, kinds in order."""
    by_kind: dict[str, list[Agent]] = {}
    for agent in agents:
        by_kind.setdefault(agent.kind, []).append(agent)
    return [a for group in by_kind.values() for a in segment.pick(group)]


def agent_tallies(agents: Sequence[Agent]) -> dict[str, dict[str, int]]:
    """What agents count themselves, per kind: the kubelets' LISTs and relists, the pods' cache
    hits and misses. Whole numbers, so a leader adds up its workers' by summing."""
    inner = [a.agent if isinstance(a, Staggered) else a for a in agents]
    out: dict[str, dict[str, int]] = {}
    kubelets = [a for a in inner if isinstance(a, Kubelet)]
    if kubelets:
        out["kubelet"] = {
            "relists": sum(k.pods.relists for k in kubelets),
            "lists": sum(k.pods.lists for k in kubelets),
        }
    caches = [p.cache.stats() for p in inner if isinstance(p, PodDns) and p.cache is not None]
    if caches:
        out["pod-dns"] = {
            "cache_hits": sum(c.hits for c in caches),
            "cache_misses": sum(c.misses for c in caches),
        }
    return out


class AgentLoad:
    """The agents of ``size`` nodes (or ``segment``'s share of them), their recorders, their
    transports and the generator's self-measurement while they run."""

    def __init__(
        self,
        profile: Profile,
        size: int,
        *,
        clock: Clock,
        quick: bool,
        with_pod_dns: bool,
        placement: Placement | None = None,
        segment: Segment | None = None,
        api_url: str | None = None,
        dns_addr: str | None = None,
        access: ClusterAccess | None = None,
    ) -> None:
        assert profile.agents is not None
        self.api_url, self.dns_addr, self.access = api_url, dns_addr, access
        self.profile = profile
        self.size = size
        self.clock = clock
        self.phases = effective_phases(profile, quick)
        self.segment = segment
        agents = build_agents(
            profile.agents,
            size,
            steady_s=self.phases.steady_s,
            wall_offset_ns=time.time_ns() - clock.now_ns(),
            quick=profile.quick if quick else None,
            placement=placement,
            with_pod_dns=with_pod_dns,
        )
        self.agents = agents if segment is None else segment_agents(agents, segment)
        self.ops: dict[str, tuple[str, ...]] = ops_by_kind(self.agents)
        self.agent_count: dict[str, int] = dict(Counter(a.kind for a in self.agents))
        self.pool_connections = (
            POOL_CONNECTIONS if segment is None else segment.share(POOL_CONNECTIONS, at_least=1)
        )
        self.recorders: dict[str, Recorder] = {}
        self.lookups: LookupCounts | None = None
        self.monitor = GeneratorMonitor(clock)
        self.lag = LoopLagProbe(clock)
        self._runner: AgentRunner | None = None
        self._stopped = False

    def check_sockets(self) -> None:
        """One line, before anything is opened, when this process cannot hold the sockets."""
        raise_open_file_limit()
        check_agent_sockets(
            self.agents, pool_connections=self.pool_connections, dns_sockets=DNS_SOCKETS
        )

    def tallies(self) -> dict[str, dict[str, int]]:
        return agent_tallies(self.agents)

    def stop(self) -> None:
        """End the run now (a signal, the leader's close): ``run`` stops its agents and returns
        after its last interval."""
        self._stopped = True
        if self._runner is not None:
            self._runner.stop()

    def _make_recorders(self, start_ns: int) -> None:
        for kind, names in self.ops.items():
            if LOOKUP_OP in names:
                ledger = SendSecondLedger(kind, names, watched=[LOOKUP_OP], start_ns=start_ns)
                self.recorders[kind] = ledger
                self.lookups = ledger.counts
            else:
                self.recorders[kind] = Recorder(kind, names, start_ns=start_ns)

    def rotate(self, now_ns: int) -> dict[str, IntervalSnapshot]:
        return {kind: recorder.rotate(now_ns) for kind, recorder in self.recorders.items()}

    async def run(
        self,
        start_ns: int,
        until_ns: int,
        *,
        interval_ns: int,
        on_interval: OnInterval,
    ) -> None:
        """Run the agents from ``start_ns`` (the origin of their schedules and of every interval)
        to ``until_ns``; ``on_interval`` gets each interval, the last one when the run ends
        however it ends. Returns normally when the run reached ``until_ns``."""
        clock = self.clock
        self._make_recorders(start_ns)
        warm_ns = start_ns + int(self.phases.warmup_s * NS_PER_S)
        quiet_gc = QuietGc()
        async with contextlib.AsyncExitStack() as stack:
            http, dns = await self._transports(stack)
            seed = self.size + (self.segment.index if self.segment is not None else 0)
            self._runner = runner = AgentRunner(
                clock, self.agents, http=http, dns=dns, recorders=self.recorders, rng_seed=seed
            )
            if self._stopped:
                runner.stop()

            async def tick() -> None:
                k = 1
                while True:
                    await clock.sleep_until(start_ns + k * interval_ns)
                    await on_interval(clock.now_ns(), self.rotate(clock.now_ns()), False)
                    quiet_gc.tick(self.monitor.samples[-1].rss_mb if self.monitor.samples else 0.0)
                    k += 1

            async def forget_warmup() -> None:
                # The generator is judged, like the server, on the steady state after the
                # warm-up. Freeze what the warm-up built a little before it ends, so that the
                # collection this takes is over before the steady state is measured.
                await clock.sleep_until(max(start_ns, warm_ns - SETTLE_BEFORE_WARM_NS))
                quiet_gc.settled()
                await clock.sleep_until(warm_ns)
                self.lag.reset()
                self.monitor.samples.clear()

            helpers = [
                asyncio.ensure_future(tick()),
                asyncio.ensure_future(self.lag.run(until_ns)),
                asyncio.ensure_future(forget_warmup()),
            ]
            try:
                with quiet_gc:
                    await runner.run(until_ns, start_ns=start_ns)
            finally:
                for task in helpers:
                    task.cancel()
                for task in helpers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                runner.stop()
                now_ns = clock.now_ns()
                await on_interval(now_ns, self.rotate(now_ns), True)

    async def _transports(
        self, stack: contextlib.AsyncExitStack
    ) -> tuple[FastAgentHttpClient | None, DnsClient | None]:
        """The HTTP client when an agent kind talks to the API, the DNS client when pods
        resolve."""
        api_url, dns_addr = self.api_url, self.dns_addr
        http = None
        if api_url is not None and any(k != "pod-dns" for k in self.ops):
            http = FastAgentHttpClient(
                api_url,
                pool_connections=self.pool_connections,
                timeout_s=API_TIMEOUT_S,
                clock=self.clock,
                access=self.access,
            )
            await stack.enter_async_context(http)
        dns = None
        if dns_addr is not None and "pod-dns" in self.ops:
            host, port = parse_host_port(dns_addr, default_port=DNS_DEFAULT_PORT)
            dns = DnsClient(host, port, sockets=DNS_SOCKETS)
            await stack.enter_async_context(dns)
        return http, dns
