"""Agent scenarios in profiles: validation with field paths, and the agents a size gets."""

from __future__ import annotations

import pytest

from loadlab.agents.kubelet import Kubelet
from loadlab.agents.pod_dns import PodDns
from loadlab.agents.stagger import Staggered
from loadlab.agents.telemetry import Telemetry
from loadlab.errors import ProfileError
from loadlab.profile import validate_profile
from loadlab.scenario import build_agents
from loadlab.shipped import find_shipped, shipped_profiles
from loadlab.slos import SloSection, agent_op_shape

SCENARIO = {
    "name": "s",
    "agents": {
        "kubelet": {},
        "pod_dns": {"nodes": 3, "pods_per_node": 2},
        "telemetry": {"pace_nodes_per_s": 5},
    },
    "sizes": [10, 20],
    "phases": {"steady_s": 30, "duration_s": 120},
}


def test_a_size_gets_one_kubelet_and_one_telemetry_pod_per_node_and_capped_pod_dns() -> None:
    profile = validate_profile(SCENARIO)
    assert profile.agents is not None
    agents = build_agents(profile.agents, 10, steady_s=30.0, wall_offset_ns=0)
    kubelets = [a for a in agents if a.kind == "kubelet"]
    assert len(kubelets) == 10
    assert all(isinstance(a, Staggered) and isinstance(a.agent, Kubelet) for a in kubelets)
    assert all(0 <= a.delay_s < 10 for a in kubelets if isinstance(a, Staggered))
    assert len([a for a in agents if isinstance(a, PodDns)]) == 3
    telemetry = [a for a in agents if isinstance(a, Telemetry)]
    assert len(telemetry) == 10
    # Node k's telemetry pod starts when the rollout reaches it: 30 s + k / 5 per s.
    assert telemetry[4].config.rollout.start_offset_s(4) == pytest.approx(30.8)
    assert {a.identity.user for a in telemetry} == {"system:serviceaccount:monitoring:telemetry"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"sizes": [0]}, "sizes.0", id="size-zero"),
        pytest.param({"agents": {}}, "agents", id="no-kind"),
        pytest.param({"agents": {"kubelet": {"qps": "fast"}}}, "agents.kubelet.qps", id="word"),
        pytest.param({"agents": {"kubelets": {}}}, "agents.kubelets", id="typo"),
        pytest.param({"phases": {"steady_s": 200, "duration_s": 100}}, "steady_s", id="order"),
        pytest.param({"load": {"rate_per_s": 5}}, "load", id="load-with-agents"),
    ],
)
def test_a_bad_scenario_is_one_line_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ProfileError, match=field):
        validate_profile({**SCENARIO, **change})


def test_every_agent_profile_ships_and_validates() -> None:
    names = {p.name for p in shipped_profiles()}
    assert {"kubelet-baseline", "openai-2024-telemetry", "dns-ndots-storm"} <= names
    incident = find_shipped("openai-2024-telemetry")
    assert incident is not None


@pytest.mark.parametrize(
    ("op", "bound"),
    [
        ("lease-renew", 1000.0),
        ("telemetry-list-pods", 30_000.0),
        ("pods-list", 30_000.0),
        ("pods-watch", None),
        ("lookup", None),
        ("telemetry-round", None),
    ],
)
def test_slos_follow_the_sig_scalability_split(op: str, bound: float | None) -> None:
    assert SloSection().bound_for(op, agent_op_shape(op)) == bound
