"""The DaemonSet rollout schedule: when node k starts, and how many nodes have started at t."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadlab.agents.rollout import DEFAULT_PACE_NODES_PER_S, RolloutPlan


@pytest.mark.parametrize(
    ("start_s", "pace", "node"),
    [
        pytest.param(0.0, 10.0, 0, id="first-node-at-start"),
        pytest.param(0.0, 10.0, 7, id="node-7-at-10-per-s"),
        pytest.param(30.0, 2.5, 3, id="late-start-slow-pace"),
        pytest.param(12.5, 3.0, 3999, id="node-3999-at-3-per-s"),
        pytest.param(0.0, 0.2, 5, id="one-node-per-5s"),
    ],
)
def test_node_k_starts_at_start_plus_k_over_pace(start_s: float, pace: float, node: int) -> None:
    plan = RolloutPlan(start_s=start_s, pace_nodes_per_s=pace)

    assert plan.start_offset_s(node) == start_s + node / pace


def test_daemonset_plan_starts_max_unavailable_nodes_per_pod_start() -> None:
    plan = RolloutPlan.daemonset(max_unavailable=3, pod_start_s=5.0, start_s=1.0)

    assert [plan.start_offset_s(k) for k in range(7)] == [1.0, 1.0, 1.0, 6.0, 6.0, 6.0, 11.0]
    assert plan.pace_nodes_per_s == pytest.approx(0.6)


def test_kubernetes_default_daemonset_rolls_one_node_per_pod_start() -> None:
    plan = RolloutPlan.daemonset()

    assert [plan.start_offset_s(k) for k in range(3)] == [0.0, 5.0, 10.0]


def test_default_plan_rolls_4000_nodes_in_under_7_minutes() -> None:
    plan = RolloutPlan()

    assert plan.pace_nodes_per_s == DEFAULT_PACE_NODES_PER_S == 10.0
    assert plan.end_s(4000) == pytest.approx(399.9)
    assert plan.nodes_rolled_out(400.0, 4000) == 4000


@pytest.mark.parametrize(
    ("t_s", "expected"),
    [
        pytest.param(0.0, 0, id="before-start"),
        pytest.param(9.999, 0, id="just-before-start"),
        pytest.param(10.0, 1, id="at-start-first-node"),
        pytest.param(10.5, 3, id="half-second-in"),
        pytest.param(11.0, 5, id="node-4-exactly-at-its-start"),
        pytest.param(11.9, 8, id="node-8-not-yet"),
        pytest.param(14.5, 10, id="all-ten"),
        pytest.param(1e12, 10, id="long-after"),
        pytest.param(float("inf"), 10, id="infinity"),
    ],
)
def test_nodes_rolled_out_at_t(t_s: float, expected: int) -> None:
    plan = RolloutPlan(start_s=10.0, pace_nodes_per_s=4.0)

    assert plan.nodes_rolled_out(t_s, node_count=10) == expected


@pytest.mark.parametrize(
    ("t_s", "expected"),
    [
        pytest.param(0.0, 3, id="first-batch"),
        pytest.param(4.999, 3, id="before-second-batch"),
        pytest.param(5.0, 6, id="second-batch"),
        pytest.param(10.0, 7, id="last-batch-is-partial"),
    ],
)
def test_nodes_rolled_out_counts_whole_batches(t_s: float, expected: int) -> None:
    plan = RolloutPlan.daemonset(max_unavailable=3, pod_start_s=5.0)

    assert plan.nodes_rolled_out(t_s, node_count=7) == expected


def test_no_nodes_roll_out_of_an_empty_cluster() -> None:
    assert RolloutPlan().nodes_rolled_out(100.0, node_count=0) == 0


@given(
    start_s=st.floats(min_value=0.0, max_value=1e4),
    pace=st.floats(min_value=1e-3, max_value=1e3),
    batch=st.integers(min_value=1, max_value=50),
    node_count=st.integers(min_value=1, max_value=300),
    t_s=st.floats(min_value=0.0, max_value=2e4),
)
def test_nodes_rolled_out_agrees_with_each_nodes_start(
    start_s: float, pace: float, batch: int, node_count: int, t_s: float
) -> None:
    plan = RolloutPlan(start_s=start_s, pace_nodes_per_s=pace, batch_nodes=batch)

    counted = sum(1 for k in range(node_count) if plan.start_offset_s(k) <= t_s)

    assert plan.nodes_rolled_out(t_s, node_count) == counted


@given(
    pace=st.floats(min_value=1e-3, max_value=1e3),
    node=st.integers(min_value=0, max_value=10_000),
)
def test_a_node_counts_as_rolled_out_at_its_own_start(pace: float, node: int) -> None:
    plan = RolloutPlan(start_s=3.0, pace_nodes_per_s=pace)

    assert plan.nodes_rolled_out(plan.start_offset_s(node), node + 1) == node + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"pace_nodes_per_s": 0.0}, id="zero-pace"),
        pytest.param({"pace_nodes_per_s": float("inf")}, id="infinite-pace"),
        pytest.param({"start_s": -1.0}, id="negative-start"),
        pytest.param({"batch_nodes": 0}, id="empty-batch"),
    ],
)
def test_a_plan_that_cannot_be_scheduled_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rollout"):
        RolloutPlan(**kwargs)  # type: ignore[arg-type]


def test_a_negative_node_index_is_refused() -> None:
    with pytest.raises(ValueError, match="node_index"):
        RolloutPlan().start_offset_s(-1)
