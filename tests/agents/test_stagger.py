"""A staggered agent runs its flows unchanged, after its delay."""

from __future__ import annotations

import random

from loadlab.agents.base import Sleep, Woke
from loadlab.agents.kubelet import Kubelet
from loadlab.agents.stagger import Staggered, stagger
from loadlab.clock import NS_PER_S


def test_a_staggered_flow_sleeps_its_delay_then_runs_the_agent_flow() -> None:
    kubelet = Kubelet(3)
    late = Staggered(kubelet, 2.5)
    assert (late.kind, late.identity, late.ops, late.watches) == (
        kubelet.kind,
        kubelet.identity,
        kubelet.ops,
        1,
    )
    plain = kubelet.flows(int(2.5 * NS_PER_S), random.Random(1))[0]
    flow = late.flows(0, random.Random(1))[0]
    assert flow.send(None) == Sleep(int(2.5 * NS_PER_S))
    # After the delay, the same first action as the agent started 2.5 s later.
    assert flow.send(Woke(int(2.5 * NS_PER_S))) == plain.send(None)


def test_stagger_spreads_delays_over_the_window() -> None:
    agents = stagger([Kubelet(i) for i in range(200)], 10.0, random.Random(7))
    delays = [a.delay_s for a in agents if isinstance(a, Staggered)]
    assert len(delays) == 200
    assert 0 <= min(delays) < 1.0
    assert 9.0 < max(delays) < 10.0
    assert stagger([Kubelet(0)], 0.0, random.Random(1))[0].kind == "kubelet"
