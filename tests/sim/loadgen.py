"""Drive the sim with loadlab's own engine over real HTTP, and read its /metrics.

- ``lease_renewals(...)``: N kubelets renewing their node lease (one operation per node, each
  with its own path and bearer token), scheduled by ``JitteredAgents`` and mixed by ``AgentMix``
  so agent i always sends node i's request.
- ``flood(...)``: one identity sending one operation at a constant rate.
- ``run_streams(streams, duration_s)``: runs every stream's ``OpenLoopRunner`` side by side on
  one clock, drains briefly, and returns each stream's ``WindowStats`` over the whole run.
- ``scrape_metrics(url)``: the sim's Prometheus text as ``Sample``s.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import aiohttp

from loadlab.clock import NS_PER_S, Clock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import MAX_LAG_S, OpenLoopRunner
from loadlab.engine.schedule import ConstantRate, JitteredAgents, Schedule
from loadlab.metrics.recorder import Recorder
from loadlab.metrics.stats import WindowStats, window_stats
from loadlab.targets.http import HttpOperation, HttpTarget
from loadlab.wiring import MAX_BACKLOG

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
DRAIN_S = 2.0
"""After the load ends, wait this long for answers; the rest complete as TIMEOUT."""
KUBELET_JITTER = 0.04  # component-helpers lease controller: wait.JitterUntil(sync, renew, 0.04)


class AgentMix(OpMix):
    """The operation of each send is the agent whose time it is: op i belongs to agent i.

    ``OpenLoopRunner`` asks the mix right after the schedule returned the send's time, so
    ``schedule.last_agent`` names the agent of that send (see ``JitteredAgents``).
    """

    def __init__(self, schedule: JitteredAgents, agents: int) -> None:
        super().__init__([1.0] * agents, seed=0, length=agents)
        self._schedule = schedule

    def next_op(self) -> int:
        return self._schedule.last_agent


@dataclass(frozen=True)
class Stream:
    """One identity group under load: its target, schedule, mix and recorder."""

    target: HttpTarget
    schedule: Schedule
    mix: OpMix
    recorder: Recorder


def lease_body(node: str) -> bytes:
    """A kubelet's lease renewal: an unconditional PUT (no resourceVersion) of the whole Lease."""
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,  # docs/control-plane-model.md, "Node lease"
            "renewTime": "2024-01-01T00:00:00.000000Z",
        },
    }
    return json.dumps(lease).encode()


def lease_renewals(
    base_url: str,
    *,
    nodes: int,
    period_s: float,
    identity: str | None,
    clock: Clock,
    start_ns: int,
    end_ns: int,
    connections: int,
    seed: int = 1,
) -> Stream:
    """``nodes`` kubelets, each PUTting lease node-i every ~``period_s``.

    ``identity`` None: each node is ``system:node:node-i`` (its own flow in node-high);
    otherwise every renewal carries that one bearer token.
    """
    ops = []
    for i in range(nodes):
        node = f"node-{i}"
        user = identity if identity is not None else f"system:node:{node}"
        ops.append(
            HttpOperation(
                name=f"renew-lease/{node}",
                method="PUT",
                path=LEASE_PATH.format(node=node),
                body=lease_body(node),
                headers={"Authorization": f"Bearer {user}"},
            )
        )
    target = HttpTarget(base_url, ops, connections=connections, clock=clock, name="leases")
    schedule = JitteredAgents(
        nodes, period_s, jitter=KUBELET_JITTER, start_ns=start_ns, end_ns=end_ns, seed=seed
    )
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    return Stream(target, schedule, AgentMix(schedule, nodes), recorder)


def flood(
    base_url: str,
    *,
    path: str,
    identity: str,
    rate_per_s: float,
    clock: Clock,
    start_ns: int,
    end_ns: int,
    connections: int,
    timeout_s: float,
) -> Stream:
    """One identity GETting ``path`` at ``rate_per_s``, open loop, Retry-After ignored."""
    op = HttpOperation(name="flood", method="GET", path=path)
    target = HttpTarget(
        base_url,
        [op],
        connections=connections,
        timeout_s=timeout_s,
        bearer_token=identity,
        clock=clock,
        name="flood",
    )
    schedule = ConstantRate(rate_per_s, start_ns=start_ns, end_ns=end_ns)
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    return Stream(target, schedule, OpMix.single(), recorder)


async def run_streams(
    streams: Sequence[Stream],
    *,
    clock: Clock,
    end_ns: int,
    beside: Awaitable[object] | None = None,
) -> list[WindowStats]:
    """Run every stream until ``end_ns`` (and ``beside`` alongside), drain, close; one
    ``WindowStats`` per stream over the whole run, in order."""
    for stream in streams:
        await stream.target.open(stream.recorder)
    try:
        runners = [
            OpenLoopRunner(
                clock,
                s.target,
                s.schedule,
                s.mix,
                s.recorder,
                end_ns=end_ns,
                max_lag_ns=int(MAX_LAG_S * NS_PER_S),
                max_backlog=MAX_BACKLOG,
            ).run()
            for s in streams
        ]
        extra = [beside] if beside is not None else []
        await asyncio.gather(*runners, *extra)
        deadline_ns = clock.now_ns() + int(DRAIN_S * NS_PER_S)
        await asyncio.gather(*(s.target.drain(deadline_ns) for s in streams))
    finally:
        for stream in streams:
            await stream.target.close()
    now_ns = clock.now_ns()
    return [window_stats([s.recorder.rotate(now_ns)]) for s in streams]


# -- /metrics ------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """One line of Prometheus text: name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Prometheus text format 0.0.4 samples (comments skipped, label escapes kept as sent)."""
    samples = []
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append(Sample(m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples: Sequence[Sample], name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def scrape_metrics(session: aiohttp.ClientSession, base_url: str) -> list[Sample]:
    """GET /metrics of the sim (non-resource path: never queued by APF)."""
    async with session.get(base_url.rstrip("/") + "/metrics") as resp:
        resp.raise_for_status()
        return parse_metrics(await resp.text())
