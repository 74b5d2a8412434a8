"""Start an agent a little later: what keeps a simulated fleet from starting as one herd.

Real kubelets are not synchronised: they started at different times, so their lease renewals and
status updates are spread over the period. A fleet of simulated kubelets all started at the same
instant would register, LIST and renew together, a thundering herd no real cluster sends (and a
load spike at t = 0 that the API would be blamed for). ``Staggered(agent, delay_s)`` runs
``agent``'s flows unchanged, each beginning with a ``Sleep`` of ``delay_s``.
"""

from __future__ import annotations

import random

from loadlab.agents.base import Agent, Flow, Identity, Sleep
from loadlab.clock import NS_PER_S


class Staggered:
    """``agent``, started ``delay_s`` after the others (the ``Agent`` protocol)."""

    def __init__(self, agent: Agent, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"delay must not be negative, got {delay_s}")
        self.agent = agent
        self.delay_s = delay_s
        self.kind: str = agent.kind
        self.identity: Identity = agent.identity
        self.ops: tuple[str, ...] = agent.ops
        self.qps: float | None = agent.qps
        self.burst: int = agent.burst
        self.watches: int = int(getattr(agent, "watches", 1))

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        begin_ns = start_ns + int(self.delay_s * NS_PER_S)
        return [_after(begin_ns, flow) for flow in self.agent.flows(begin_ns, rng)]


def _after(begin_ns: int, flow: Flow) -> Flow:
    yield Sleep(begin_ns)
    yield from flow


def stagger(agents: list[Agent], spread_s: float, rng: random.Random) -> list[Agent]:
    """Each agent started at a uniform random delay in [0, ``spread_s``)."""
    if spread_s <= 0:
        return agents
    return [Staggered(a, rng.uniform(0.0, spread_s)) for a in agents]
