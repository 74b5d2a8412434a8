"""The leader's side of an agent scenario over ``--workers N``: one size's agents spread over
worker processes, their intervals merged into one record.

``PooledAgentLoad`` stands where ``loadlab.sweep_load.AgentLoad`` stands for one process
(``loadlab.sweep.SizeLoad``): ``loadlab.sweep.run_size`` writes the timeline and hlogs, watches
for the onset and judges the size from what it hands over, unchanged. Per interval it waits for
every worker's snapshot of that boundary (a late one is merged into the next interval, nothing
is lost), merges each agent kind's snapshots (``loadlab.workers.merge``: the HdrHistograms
added), adds up the lookups counted by send second, and takes the workers' self-measurement:
CPU of the busiest worker, RSS summed, and the worst worker's event-loop lag, so a size is
judged generator-limited when any worker fell behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

from loadlab.clock import NS_PER_S, Clock
from loadlab.metrics.ledger import LookupCounts
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.profile import Profile
from loadlab.scenario import Placement
from loadlab.sweep_load import OnInterval, effective_phases
from loadlab.targets.cluster import AccessRecipe
from loadlab.workers.merge import merge_snapshots
from loadlab.workers.pool import PoolMonitor, WorkerPool


class WorstLag:
    """The event-loop lag p99 of the worker that fell furthest behind."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def p99_ms(self) -> float:
        return max((link.lag_p99_ms for link in self._pool.links), default=0.0)


class PooledAgentLoad:
    def __init__(
        self,
        pool: WorkerPool,
        profile: Profile,
        *,
        quick: bool,
        ops: dict[str, tuple[str, ...]],
        agent_count: dict[str, int],
    ) -> None:
        self.pool = pool
        self.profile = profile
        self.phases = effective_phases(profile, quick)
        self.ops = ops
        self.agent_count = agent_count
        self.lookups: LookupCounts | None = None
        self.monitor = PoolMonitor(pool, pool.clock)
        self.lag = WorstLag(pool)
        self._stop = asyncio.Event()
        self._templates: dict[str, IntervalSnapshot] = {}
        self._last_end_ns = 0
        pool.on_failure.append(lambda failure: self._stop.set())

    @classmethod
    async def open(
        cls,
        profile: Profile,
        size: int,
        *,
        workers: int,
        clock: Clock,
        quick: bool,
        with_pod_dns: bool,
        api_url: str | None,
        dns_addr: str | None,
        out_dir: Path,
        placement: Placement | None = None,
        recipe: AccessRecipe | None = None,
    ) -> PooledAgentLoad:
        """Start ``workers`` processes, each building its segment of ``size`` nodes' agents and
        checking its sockets; return once all are ready (or raise what stopped one)."""
        pool = WorkerPool(workers, clock, interval_ns=int(profile.interval_s * NS_PER_S))
        try:
            readies = await pool.spawn(
                out_dir,
                {
                    "mode": "agents",
                    "profile": json.loads(profile.model_dump_json(by_alias=True)),
                    "size": size,
                    "quick": quick,
                    "with_pod_dns": with_pod_dns,
                    "api_url": api_url,
                    "dns_addr": dns_addr,
                    "placement": placement.as_dict() if placement is not None else None,
                    "access": recipe.as_dict() if recipe is not None else None,
                },
            )
        except BaseException:
            await pool.kill()
            raise
        ops: dict[str, tuple[str, ...]] = {}
        count: Counter[str] = Counter()
        for ready in readies:
            for kind, names in ready["targets"].items():
                ops.setdefault(str(kind), tuple(str(n) for n in names))
            count.update({str(k): int(n) for k, n in ready["agents"].items()})
        return cls(pool, profile, quick=quick, ops=ops, agent_count=dict(count))

    def tallies(self) -> dict[str, dict[str, int]]:
        total: dict[str, dict[str, int]] = {}
        for link in self.pool.links:
            for kind, counts in link.tallies.items():
                mine = total.setdefault(kind, {})
                for name, n in counts.items():
                    mine[name] = mine.get(name, 0) + int(n)
        return total

    def stop(self) -> None:
        self._stop.set()

    def _take(self, now_ns: int) -> dict[str, IntervalSnapshot]:
        assert self.lookups is not None
        for link in self.pool.links:
            rows, link.lookup_rows = link.lookup_rows, []
            self.lookups.add(rows)
        snaps = {
            kind: merge_snapshots(
                self.pool.take(kind),
                template=self._templates[kind],
                start_ns=self._last_end_ns,
                end_ns=now_ns,
            )
            for kind in self.ops
        }
        self._last_end_ns = now_ns
        return snaps

    async def run(
        self,
        start_ns: int,
        until_ns: int,
        *,
        interval_ns: int,
        on_interval: OnInterval,
    ) -> None:
        """Order the workers to run from ``start_ns`` to ``until_ns`` (the leader's clock) and
        hand ``on_interval`` the merged record of each interval. Raises ``WorkerFailed`` when a
        worker stopped, after the last interval of what was measured."""
        clock = self.pool.clock
        self.lookups = LookupCounts(start_ns)
        self._templates = {
            kind: Recorder(kind, names, start_ns=start_ns).rotate(start_ns)
            for kind, names in self.ops.items()
        }
        self._last_end_ns = start_ns
        warm_ns = start_ns + int(self.phases.warmup_s * NS_PER_S)
        order = asyncio.ensure_future(
            self.pool.order({"type": "run", "start_ns": start_ns, "until_ns": until_ns})
        )
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            k = 1
            while True:
                boundary = start_ns + k * interval_ns
                # Past the last whole interval, wait for the run's end itself: the close below
                # takes the workers' last, partial intervals (the workers run to until_ns).
                sleep = asyncio.ensure_future(clock.sleep_until(min(boundary, until_ns)))
                await asyncio.wait((sleep, order, stopped), return_when=asyncio.FIRST_COMPLETED)
                if not sleep.done():
                    sleep.cancel()
                    break
                if boundary > until_ns:
                    break
                await self.pool.collect(boundary)
                if self._stop.is_set():
                    break
                now_ns = clock.now_ns()
                if now_ns >= warm_ns and self._last_end_ns < warm_ns:
                    self.monitor.samples.clear()  # judged on the steady state, as one process
                await on_interval(now_ns, self._take(now_ns), False)
                k += 1
        finally:
            stopped.cancel()
            # The workers stop what still runs and send their last intervals before answering.
            await self.pool.close()
            for task in (order, stopped):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            now_ns = clock.now_ns()
            await on_interval(now_ns, self._take(now_ns), True)
        if self.pool.failure is not None:
            raise self.pool.failure
