"""The kubelet agent's flows, driven by hand: fake engine time and canned API replies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from loadlab.agents.base import Action, ApiCall, Flow, Reply, WatchEnd, WatchNext, WatchOpen
from loadlab.agents.kubelet import (
    STRATEGIC_MERGE_PATCH,
    Kubelet,
    KubeletConfig,
    RenewalVerdict,
    micro_time,
    renewal_verdict,
)
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import Step, api_calls, api_reply, reports, run_flow

S = NS_PER_S
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-3"
NODE_PATH = "/api/v1/nodes/node-3"
Answer = Callable[[Action, int], Reply]


def lease(rv: str) -> dict[str, object]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-3", "namespace": "kube-node-lease", "resourceVersion": rv},
        "spec": {"holderIdentity": "node-3", "leaseDurationSeconds": 40},
    }


class LeaseServer:
    """A lease store: GET answers the current lease, PUT bumps its resourceVersion; ``put_status``
    overrides the PUT answers in order (then 200)."""

    def __init__(self, *, exists: bool = True, put_status: list[int] | None = None) -> None:
        self.rv = 1 if exists else 0
        self.put_status = list(put_status or [])

    def __call__(self, action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        if action.method == "GET":
            if self.rv == 0:
                return api_reply(now_ns, 404)
            return api_reply(now_ns, 200, lease(str(self.rv)))
        if action.method == "POST":
            self.rv = 1
            return api_reply(now_ns, 201, lease("1"))
        assert action.method == "PUT"
        code = self.put_status.pop(0) if self.put_status else 200
        if code != 200:
            return api_reply(now_ns, code)
        self.rv += 1
        return api_reply(now_ns, 200, {**(action.body or {}), "metadata": {"resourceVersion": "x"}})


def lease_flow(config: KubeletConfig | None = None, seed: int = 1) -> Flow:
    return Kubelet(3, config).flows(0, random.Random(seed))[0]


def status_flow(config: KubeletConfig | None = None, seed: int = 1) -> Flow:
    return Kubelet(3, config).flows(0, random.Random(seed))[1]


def calls(steps: list[Step]) -> list[tuple[str, str]]:
    return [(c.op, c.method) for c in api_calls(steps)]


def test_kubelet_is_node_identity_with_kubelet_rate_limits() -> None:
    kubelet = Kubelet(7)
    assert kubelet.kind == "kubelet"
    assert kubelet.identity.user == "system:node:node-7"
    assert kubelet.identity.user_agent == "kubelet/v1.32 (loadlab) node-7"
    assert (kubelet.qps, kubelet.burst) == (50.0, 100)
    assert set(kubelet.ops) == {
        "node-get",
        "node-create",
        "lease-get",
        "lease-create",
        "lease-renew",
        "lease-renewal",
        "status-patch",
        "pods-list",
        "pods-watch",
    }
    assert len(kubelet.flows(0, random.Random(0))) == 3


@pytest.mark.parametrize("seed", [1, 2, 3], ids=["seed-1", "seed-2", "seed-3"])
def test_lease_renews_every_10_s_with_at_most_4_percent_jitter(seed: int) -> None:
    steps = run_flow(lease_flow(seed=seed), LeaseServer(), until_ns=300 * S)
    puts = [s.at_ns for s in steps if isinstance(s.action, ApiCall) and s.action.method == "PUT"]
    assert len(puts) >= 28
    gaps = [b - a for a, b in itertools.pairwise(puts)]
    # wait.JitterUntil(sync, 10s, 0.04, sliding): each wait in [10 s, 10.4 s).
    assert all(10 * S <= gap < 10.4 * S for gap in gaps)
    assert len(set(gaps)) > 1  # jittered, not a fixed tick
    assert all(r.outcome is Outcome.OK for _, r in reports(steps))


def test_first_round_gets_the_lease_then_later_rounds_put_without_a_get() -> None:
    steps = run_flow(lease_flow(), LeaseServer(), until_ns=25 * S)
    assert calls(steps) == [
        ("lease-get", "GET"),
        ("lease-renew", "PUT"),
        ("lease-renew", "PUT"),
        ("lease-renew", "PUT"),
    ]
    body = api_calls(steps)[2].body or {}
    assert body["metadata"] == {"resourceVersion": "x"}  # the lease the last PUT returned


def test_missing_lease_is_created_and_not_renewed_in_the_same_round() -> None:
    steps = run_flow(lease_flow(), LeaseServer(exists=False), until_ns=15 * S)
    assert calls(steps) == [
        ("lease-get", "GET"),
        ("lease-create", "POST"),
        ("lease-renew", "PUT"),
    ]
    created = api_calls(steps)[1]
    assert created.path == LEASE_PATH.rsplit("/", 1)[0]
    assert (created.body or {})["spec"]["holderIdentity"] == "node-3"


def test_failed_renewal_puts_five_times_at_once_then_refetches_and_waits_for_next_period() -> None:
    # Round 1 renews; round 2's PUTs all fail: five back to back (maxUpdateRetries), then the
    # controller falls back to backoffEnsureLease (a GET) and five PUTs more, then it waits.
    server = LeaseServer(put_status=[200] + [500] * 10)
    steps = run_flow(lease_flow(), server, until_ns=35 * S)
    call_steps = [s for s in steps if isinstance(s.action, ApiCall)]
    round_2, round_3_put = call_steps[2:13], call_steps[13]
    assert [(c.op, c.method) for c in api_calls(round_2)] == (
        [("lease-renew", "PUT")] * 5 + [("lease-get", "GET")] + [("lease-renew", "PUT")] * 5
    )
    assert [getattr(c.reply, "status", None) for c in round_2] == [500] * 5 + [200] + [500] * 5
    assert len({s.at_ns for s in round_2}) == 1  # at once: no wait between them
    (_, first), (_, failed), (_, third) = reports(steps)[:3]
    assert (first.outcome, failed.outcome, third.outcome) == (
        Outcome.OK,
        Outcome.SERVER_ERROR,
        Outcome.OK,
    )
    assert 10 * S <= round_3_put.at_ns - round_2[-1].at_ns < 10.4 * S


def test_conflict_fetches_the_lease_then_puts_the_newer_version() -> None:
    server = LeaseServer(put_status=[200, 409])
    steps = run_flow(lease_flow(), server, until_ns=15 * S)
    assert calls(steps) == [
        ("lease-get", "GET"),
        ("lease-renew", "PUT"),
        ("lease-renew", "PUT"),  # 409
        ("lease-get", "GET"),
        ("lease-renew", "PUT"),
    ]
    retried = api_calls(steps)[-1].body or {}
    assert retried["metadata"]["resourceVersion"] == "2"  # what the GET returned
    assert [r.outcome for _, r in reports(steps)] == [Outcome.OK, Outcome.OK]


def test_lease_renew_time_is_a_micro_time_of_the_reply_clock_plus_the_wall_offset() -> None:
    offset_ns = 1_735_689_600 * S  # 2025-01-01T00:00:00Z
    config = KubeletConfig(wall_offset_ns=offset_ns, lease_namespace="loadlab-run")

    def slow(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        assert "/namespaces/loadlab-run/leases/node-3" in action.path
        return api_reply(now_ns + 1_234_567_891, 200, lease("5"))

    steps = run_flow(lease_flow(config), slow, max_steps=2)
    put = api_calls(steps)[1]
    spec = (put.body or {})["spec"]
    # The PUT follows a GET answered at 1.234567891 s of engine time.
    assert spec == {
        "holderIdentity": "node-3",
        "leaseDurationSeconds": 40,
        "renewTime": "2025-01-01T00:00:01.234567Z",
    }


def test_micro_time_uses_microseconds_since_the_epoch() -> None:
    assert micro_time(0) == "1970-01-01T00:00:00.000000Z"
    assert micro_time(86_400 * S + 999_999_999) == "1970-01-02T00:00:00.999999Z"


def test_lease_renewal_reports_latency_from_when_the_round_was_due() -> None:
    def slow_put(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        return api_reply(now_ns + 3 * S, 200, lease("5"))

    steps = run_flow(lease_flow(), slow_put, until_ns=30 * S)
    (due_1, first), (at_2, second) = reports(steps)[:2]
    assert first.started_ns == 0
    assert due_1 == 6 * S  # GET and PUT, 3 s each
    assert 10 * S <= second.started_ns - due_1 < 10.4 * S
    assert at_2 - second.started_ns == 3 * S


@pytest.mark.parametrize(
    ("outcome", "latency_s", "verdict"),
    [
        (Outcome.OK, 0.2, RenewalVerdict.ON_TIME),
        (Outcome.OK, 10.0, RenewalVerdict.ON_TIME),
        (Outcome.OK, 10.5, RenewalVerdict.LATE),
        (Outcome.THROTTLED, 0.2, RenewalVerdict.FAILED),
    ],
    ids=["prompt", "within-one-interval", "past-one-interval", "not-renewed"],
)
def test_renewal_verdict_is_late_past_one_renew_interval(
    outcome: Outcome, latency_s: float, verdict: RenewalVerdict
) -> None:
    assert renewal_verdict(outcome, int(latency_s * S), KubeletConfig()) is verdict


class NodeServer:
    """GET answers the Node (or 404 until it is created); PATCHes answer ``patch_status``."""

    def __init__(self, *, exists: bool = True, patch_status: list[int] | None = None) -> None:
        self.exists = exists
        self.patch_status = list(patch_status or [])

    def __call__(self, action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        node = {
            "metadata": {"name": "node-3", "resourceVersion": "9"},
            "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "T0"}]},
        }
        if action.method == "GET":
            return api_reply(now_ns, 200, node) if self.exists else api_reply(now_ns, 404)
        if action.method == "POST":
            self.exists = True
            return api_reply(now_ns, 201, action.body)
        code = self.patch_status.pop(0) if self.patch_status else 200
        return api_reply(now_ns, code, node if code == 200 else None)


def is_patch(step: Step) -> bool:
    return isinstance(step.action, ApiCall) and step.action.op == "status-patch"


def patch_times(steps: list[Step]) -> list[int]:
    return [
        s.at_ns for s in steps if isinstance(s.action, ApiCall) and s.action.op == "status-patch"
    ]


def test_unchanged_status_is_patched_every_5_minutes() -> None:
    steps = run_flow(status_flow(), NodeServer(), until_ns=1_300 * S)
    times = patch_times(steps)
    assert len(times) == 5  # at registration, then about every 5 min
    assert times[0] == 100 * NS_PER_MS  # registerWithAPIServer sleeps 100 ms first
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The first 10 s tick at or after 5 min since the last report: within one jittered tick.
    assert all(300 * S <= gap < 310.4 * S for gap in gaps)
    patch = next(c for c in api_calls(steps) if c.op == "status-patch")
    assert patch.method == "PATCH"
    assert patch.path == NODE_PATH + "/status"
    assert patch.content_type == STRATEGIC_MERGE_PATCH
    (ready,) = (patch.body or {})["status"]["conditions"]
    assert ready["type"] == "Ready"
    assert ready["lastTransitionTime"] == "T0"  # adopted from the Node, only the heartbeat moves
    assert ready["lastHeartbeatTime"] == "1970-01-01T00:00:00Z"


def test_always_changed_status_is_patched_every_10_s_tick() -> None:
    steps = run_flow(
        status_flow(KubeletConfig(status_change_probability=1.0)), NodeServer(), until_ns=60 * S
    )
    gaps = [b - a for a, b in itertools.pairwise(patch_times(steps))]
    assert len(gaps) >= 4
    assert all(10 * S <= gap < 10.4 * S for gap in gaps)


def test_missing_node_is_registered_with_a_post() -> None:
    steps = run_flow(status_flow(), NodeServer(exists=False), max_steps=5)
    assert calls(steps)[:3] == [
        ("node-get", "GET"),
        ("node-create", "POST"),
        ("status-patch", "PATCH"),
    ]
    node = api_calls(steps)[1].body or {}
    assert node["metadata"]["name"] == "node-3"
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "198.51.100.4"}


def test_failed_registration_backs_off_doubling_from_100_ms_to_7_s() -> None:
    def down(action: Action, now_ns: int) -> Reply:
        return api_reply(now_ns, 503)

    steps = run_flow(status_flow(), down, until_ns=60 * S)
    times = [s.at_ns / S for s in steps if isinstance(s.action, ApiCall)]
    waits = [round(b - a, 3) for a, b in zip([0.0, *times], times, strict=False)]
    assert waits[:9] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 7.0, 7.0]


def test_failed_status_patch_is_retried_after_a_fresh_get_up_to_five_tries() -> None:
    steps = run_flow(status_flow(), NodeServer(patch_status=[500] * 5), until_ns=5 * S)
    assert (
        calls(steps)
        == [("node-get", "GET"), ("status-patch", "PATCH")]
        + [
            ("node-get", "GET"),
            ("status-patch", "PATCH"),
        ]
        * 4
    )
    # Not reported, so the next tick (10 s later) tries again.
    later = run_flow(status_flow(), NodeServer(patch_status=[500] * 5), until_ns=12 * S)
    assert [c.op for c in api_calls(later)].count("status-patch") == 6


def test_pod_reflector_watches_only_this_nodes_pods() -> None:
    kubelet = Kubelet(3)
    flow = kubelet.flows(0, random.Random(0))[2]

    def server(action: Action, now_ns: int) -> Reply:
        if isinstance(action, WatchNext):
            return WatchEnd(action.until_ns, "deadline")
        if isinstance(action, WatchOpen):
            return api_reply(now_ns, 200)
        return api_reply(now_ns, 200, {"metadata": {"resourceVersion": "42"}, "items": []})

    steps = run_flow(flow, server, max_steps=3)
    listed = api_calls(steps)[0]
    assert (listed.op, listed.path) == ("pods-list", "/api/v1/pods")
    assert listed.params["fieldSelector"] == "spec.nodeName=node-3"
    watched = next(s.action for s in steps if isinstance(s.action, WatchOpen))
    assert watched.op == "pods-watch"
    assert watched.params["resourceVersion"] == "42"
    assert kubelet.pods.resource_version == "42"


RUN_LABELS = (("loadlab.io/run", "abc123"),)


def test_a_kubelet_against_a_real_cluster_labels_its_lease_and_manages_no_node() -> None:
    config = KubeletConfig(
        lease_namespace="loadlab-abc123",
        manage_node=False,
        node_prefix="loadlab-abc123-node-",
        labels=RUN_LABELS,
    )
    kubelet = Kubelet(3, config)
    flows = kubelet.flows(0, random.Random(1))
    assert len(flows) == 2  # the lease and the pod reflector: no Node registration or status
    assert kubelet.node_name == "loadlab-abc123-node-3"
    steps = run_flow(flows[0], LeaseServer(exists=False), until_ns=15 * S)
    created = [c for c in api_calls(steps) if c.method == "POST"]
    assert created, calls(steps)
    assert created[0].path.startswith("/apis/coordination.k8s.io/v1/namespaces/loadlab-abc123/")
    assert created[0].body is not None
    assert created[0].body["metadata"]["labels"] == {"loadlab.io/run": "abc123"}


def test_nodes_a_run_registers_carry_its_label_and_a_no_schedule_taint() -> None:
    config = KubeletConfig(labels=RUN_LABELS, taints=(("loadlab.io/simulated", "NoSchedule"),))

    def no_node(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        return api_reply(now_ns, 404 if action.method == "GET" else 201, {})

    steps = run_flow(status_flow(config), no_node, until_ns=2 * S)
    (node,) = [c.body for c in api_calls(steps) if c.method == "POST"]
    assert node is not None
    assert node["metadata"]["labels"]["loadlab.io/run"] == "abc123"
    assert node["spec"]["taints"] == [{"key": "loadlab.io/simulated", "effect": "NoSchedule"}]
