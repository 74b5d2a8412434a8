"""The request-mix agent: weighted operations, {i} rotation, identities and arrivals."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadlab.agents.base import Action, ApiCall, Reply, Sleep
from loadlab.agents.mix import RequestMix, RequestMixConfig, request_mix_agents
from loadlab.clock import NS_PER_S
from loadlab.profile_fields import HttpOp
from loadlab.testing.agents import api_calls, api_reply, run_flow

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-{i}"
LEASE_BODY = '{"kind": "Lease", "metadata": {"name": "node-{i}"}, "spec": {"holderIdentity": "x"}}'

GET_LEASE = HttpOp(name="get-lease", method="GET", path=LEASE, spread=100, weight=6)
PUT_LEASE = HttpOp(
    name="put-lease", method="PUT", path=LEASE, spread=100, weight=3, body=LEASE_BODY
)
LIST_PODS = HttpOp(name="list-pods", method="GET", path="/api/v1/pods", weight=1)


def ok(action: Action, now_ns: int) -> Reply:
    return api_reply(now_ns, 200, {})


def sent(agent: RequestMix, seed: int = 3, start_ns: int = 0) -> list[ApiCall]:
    """Every request of ``agent`` (its ``max_requests``), through its only flow."""
    (flow,) = agent.flows(start_ns, random.Random(seed))
    return api_calls(run_flow(flow, ok, start_ns=start_ns, max_steps=1_000_000))


def config(*ops: HttpOp, **kwargs: object) -> RequestMixConfig:
    settings: dict[str, object] = {"rate_per_s": 10.0, "max_in_flight": 1, "max_requests": 100}
    settings.update(kwargs)
    return RequestMixConfig(ops=ops, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [pytest.param(1, id="seed-1"), pytest.param(99, id="seed-99")])
def test_operation_frequencies_follow_the_weights(seed: int) -> None:
    agent = RequestMix(0, config(GET_LEASE, PUT_LEASE, LIST_PODS, max_requests=20_000))

    counts = Counter(call.op for call in sent(agent, seed))

    assert sum(counts.values()) == 20_000
    # Weights 6:3:1; 20,000 draws put each share within ~1 point of it (3 sigma is 1.1 points).
    assert counts["get-lease"] / 20_000 == pytest.approx(0.6, abs=0.015)
    assert counts["put-lease"] / 20_000 == pytest.approx(0.3, abs=0.015)
    assert counts["list-pods"] / 20_000 == pytest.approx(0.1, abs=0.015)


def test_the_same_seed_sends_the_same_requests() -> None:
    agent = RequestMix(0, config(GET_LEASE, PUT_LEASE, LIST_PODS))

    assert sent(agent, seed=5) == sent(agent, seed=5)
    assert sent(agent, seed=5) != sent(agent, seed=6)


@pytest.mark.parametrize(
    ("agent_index", "spread", "expected"),
    [
        pytest.param(0, 3, [0, 1, 2, 0, 1], id="agent-0-from-0"),
        pytest.param(4, 3, [1, 2, 0, 1, 2], id="agent-4-from-4-mod-3"),
        pytest.param(7, 100, [7, 8, 9, 10, 11], id="agent-7-spread-100"),
    ],
)
def test_i_rotates_round_robin_from_the_agents_own_offset(
    agent_index: int, spread: int, expected: list[int]
) -> None:
    op = GET_LEASE.model_copy(update={"spread": spread})

    calls = sent(RequestMix(agent_index, config(op, max_requests=5)))

    assert [c.path for c in calls] == [LEASE.replace("{i}", str(i)) for i in expected]


def test_i_is_rendered_in_the_body_too() -> None:
    op = PUT_LEASE.model_copy(update={"spread": 2})

    calls = sent(RequestMix(0, config(op, max_requests=2)))

    assert [(c.method, c.path.rsplit("/", 1)[1], c.body) for c in calls] == [
        (
            "PUT",
            "node-0",
            {"kind": "Lease", "metadata": {"name": "node-0"}, "spec": {"holderIdentity": "x"}},
        ),
        (
            "PUT",
            "node-1",
            {"kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "x"}},
        ),
    ]
    assert {c.content_type for c in calls} == {"application/json"}


def test_i_is_left_as_written_when_spread_is_one() -> None:
    op = GET_LEASE.model_copy(update={"spread": 1})

    (call,) = sent(RequestMix(5, config(op, max_requests=1)))

    assert call.path == LEASE


def test_a_patch_keeps_its_content_type() -> None:
    op = HttpOp(
        name="patch-node",
        method="PATCH",
        path="/api/v1/nodes/node-0",
        body='{"metadata": {"labels": {"a": "b"}}}',
        content_type="application/merge-patch+json",
    )

    (call,) = sent(RequestMix(0, config(op, max_requests=1)))

    assert (call.method, call.content_type) == ("PATCH", "application/merge-patch+json")
    assert call.body == {"metadata": {"labels": {"a": "b"}}}


def test_each_agent_is_its_own_identity_by_default() -> None:
    agents = [RequestMix(i, config(GET_LEASE)) for i in range(3)]

    assert [a.identity.user for a in agents] == ["loadlab-mix-0", "loadlab-mix-1", "loadlab-mix-2"]
    assert {a.kind for a in agents} == {"mix"}
    assert agents[0].ops == ("get-lease",)


def test_a_mix_with_per_op_users_becomes_one_agent_per_user_sharing_the_rate() -> None:
    node_op = LIST_PODS.model_copy(update={"user": "system:node:node-1", "weight": 2.0})
    cfg = config(GET_LEASE, PUT_LEASE, node_op, rate_per_s=22.0, default_user="ctrl-{agent}")

    agents = request_mix_agents(4, cfg)

    assert [(a.identity.user, a.ops) for a in agents] == [
        ("ctrl-4", ("get-lease", "put-lease")),
        ("system:node:node-1", ("list-pods",)),
    ]
    assert [a.rate_per_s for a in agents] == pytest.approx([18.0, 4.0])


def test_an_agent_for_a_user_no_operation_has_is_refused() -> None:
    cfg = config(LIST_PODS.model_copy(update={"user": "alice"}))

    with pytest.raises(ValueError, match="request_mix_agents"):
        RequestMix(0, cfg)


def test_constant_arrivals_are_evenly_spaced_from_a_random_phase() -> None:
    agent = RequestMix(0, config(GET_LEASE, rate_per_s=4.0, arrival="constant", max_requests=5))
    start_ns = 10 * NS_PER_S

    calls = sent(agent, start_ns=start_ns)

    due = [c.intended_ns for c in calls]
    assert all(d is not None for d in due)
    phase = random.Random(3).uniform(0.0, 0.25)
    assert due == [start_ns + round((phase + k * 0.25) * NS_PER_S) for k in range(5)]


def test_poisson_arrivals_keep_the_agents_rate() -> None:
    agent = RequestMix(0, config(GET_LEASE, rate_per_s=50.0, max_requests=10_000))

    calls = sent(agent)

    last = calls[-1].intended_ns
    assert last is not None
    # 10,000 exponential gaps of mean 20 ms: the sum is 200 s within a few percent.
    assert last / NS_PER_S == pytest.approx(200.0, rel=0.05)


def test_each_request_is_sent_at_its_intended_time_when_the_agent_keeps_up() -> None:
    agent = RequestMix(0, config(GET_LEASE, PUT_LEASE))
    (flow,) = agent.flows(0, random.Random(1))

    steps = run_flow(flow, ok)

    for sleep, call in zip(steps[::2], steps[1::2], strict=True):
        assert isinstance(sleep.action, Sleep)
        assert isinstance(call.action, ApiCall)
        assert call.action.intended_ns == sleep.action.until_ns == call.at_ns


def test_flows_share_one_schedule_so_each_send_goes_out_once() -> None:
    agent = RequestMix(0, config(GET_LEASE, max_in_flight=3, max_requests=3))
    one_flow = RequestMix(0, config(GET_LEASE, max_in_flight=1, max_requests=3))

    firsts = [flow.send(None) for flow in agent.flows(0, random.Random(8))]
    alone = [c.intended_ns for c in sent(one_flow, seed=8)]

    assert all(isinstance(a, Sleep) for a in firsts)
    assert [a.until_ns for a in firsts if isinstance(a, Sleep)] == alone


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"rate_per_s": 0.0}, "rate_per_s", id="zero-rate"),
        pytest.param({"max_in_flight": 0}, "max_in_flight", id="no-flows"),
        pytest.param({"arrival": "bursty"}, "arrival", id="unknown-arrival"),
    ],
)
def test_a_mix_that_cannot_run_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(GET_LEASE, **kwargs)


def test_a_body_that_is_not_a_json_object_names_its_operation() -> None:
    op = PUT_LEASE.model_copy(update={"body": "[1, 2]"})

    with pytest.raises(ValueError, match="put-lease"):
        config(op)
