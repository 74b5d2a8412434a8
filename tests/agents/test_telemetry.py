"""The telemetry DaemonSet agent, driven by hand: fake engine time and canned API replies."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from loadlab.agents.base import Action, ApiCall, ApiReply, Reply, Report, Sleep
from loadlab.agents.rollout import RolloutPlan
from loadlab.agents.telemetry import (
    DEFAULT_USER,
    ROUND_OP,
    ClientGoRetry,
    Telemetry,
    TelemetryCall,
    TelemetryConfig,
)
from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import Answer, Step, api_calls, api_reply, reports, run_flow

S = NS_PER_S
ONE_ROUND = TelemetryConfig(max_rounds=1)


def page(continue_token: str = "") -> dict[str, object]:
    return {"kind": "List", "metadata": {"continue": continue_token}, "items": []}


def paged(pages_by_path: Mapping[str, int], latency_ns: int = 0) -> Answer:
    """A server whose LIST of each path comes in ``pages_by_path[path]`` pages, tokens p1, p2..."""

    def answer(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        seen = int(action.params.get("continue", "p0")[1:])
        more = seen + 1 < pages_by_path[action.path]
        return api_reply(now_ns + latency_ns, 200, page(f"p{seen + 1}" if more else ""))

    return answer


def replies(*canned: tuple[int, float | None], then_ok: bool = True) -> Answer:
    """Answers with the canned (status, retry_after_s) in order, then 200 (a last page)."""
    queue = list(canned)

    def answer(action: Action, now_ns: int) -> Reply:
        if queue:
            status, retry_after_s = queue.pop(0)
            return api_reply(now_ns, status, retry_after_s=retry_after_s)
        return api_reply(now_ns, 200, page())

    return answer


def drive(agent: Telemetry, answer: Answer, seed: int = 7) -> list[Step]:
    (flow,) = agent.flows(0, random.Random(seed))
    return run_flow(flow, answer)


def round_report(steps: list[Step]) -> Report:
    ((_, report),) = reports(steps)
    return report


def test_a_round_lists_pods_then_nodes_following_every_continue_token() -> None:
    steps = drive(Telemetry(0, ONE_ROUND), paged({"/api/v1/pods": 3, "/api/v1/nodes": 1}))

    calls = api_calls(steps)
    assert [(c.op, c.method, c.path, dict(c.params)) for c in calls] == [
        ("telemetry-list-pods", "GET", "/api/v1/pods", {"limit": "500"}),
        ("telemetry-list-pods", "GET", "/api/v1/pods", {"limit": "500", "continue": "p1"}),
        ("telemetry-list-pods", "GET", "/api/v1/pods", {"limit": "500", "continue": "p2"}),
        ("telemetry-list-nodes", "GET", "/api/v1/nodes", {"limit": "500"}),
    ]
    report = round_report(steps)
    assert (report.op, report.outcome) == (ROUND_OP, Outcome.OK)


@pytest.mark.parametrize(
    ("resource_version", "first_page", "second_page"),
    [
        pytest.param(
            "", {"limit": "500"}, {"limit": "500", "continue": "p1"}, id="consistent-read-from-etcd"
        ),
        pytest.param(
            "0",
            {"resourceVersion": "0", "limit": "500"},
            {"limit": "500", "continue": "p1"},
            id="watch-cache-rv-dropped-on-continue",
        ),
    ],
)
def test_resource_version_is_sent_on_the_first_page_only(
    resource_version: str, first_page: dict[str, str], second_page: dict[str, str]
) -> None:
    config = TelemetryConfig(
        calls=(TelemetryCall("list-pods", "/api/v1/pods", resource_version=resource_version),),
        max_rounds=1,
    )

    calls = api_calls(drive(Telemetry(0, config), paged({"/api/v1/pods": 2})))

    assert [dict(c.params) for c in calls] == [first_page, second_page]


def test_page_size_and_selectors_are_configurable() -> None:
    call = TelemetryCall(
        "list-running",
        "/api/v1/pods",
        limit=100,
        label_selector="app=web",
        field_selector="status.phase=Running",
    )
    config = TelemetryConfig(calls=(call,), max_rounds=1)

    (sent,) = api_calls(drive(Telemetry(0, config), paged({"/api/v1/pods": 1})))

    assert dict(sent.params) == {
        "limit": "100",
        "labelSelector": "app=web",
        "fieldSelector": "status.phase=Running",
    }


def test_an_unpaged_list_sends_no_limit() -> None:
    config = TelemetryConfig(
        calls=(TelemetryCall("nodes", "/api/v1/nodes", limit=0),), max_rounds=1
    )

    (sent,) = api_calls(drive(Telemetry(0, config), paged({"/api/v1/nodes": 1})))

    assert dict(sent.params) == {}


def test_a_429_with_retry_after_3_is_retried_3_seconds_later() -> None:
    steps = drive(Telemetry(0, ONE_ROUND), replies((429, 3.0)))

    pods = [s for s in steps if isinstance(s.action, ApiCall) and s.action.op.endswith("pods")]
    assert len(pods) == 2
    assert pods[1].at_ns - pods[0].reply.now_ns == 3 * S
    assert pods[1].action == pods[0].action
    assert round_report(steps).outcome is Outcome.OK


@pytest.mark.parametrize(
    ("max_retries", "attempts"),
    [
        pytest.param(10, 11, id="client-go-default-10-retries"),
        pytest.param(2, 3, id="two-retries"),
        pytest.param(0, 1, id="no-retries"),
    ],
)
def test_a_list_throttled_past_its_retries_fails_the_round(max_retries: int, attempts: int) -> None:
    config = TelemetryConfig(retry=ClientGoRetry(max_retries=max_retries), max_rounds=1)
    answer = replies(*[(429, 1.0)] * attempts)

    steps = drive(Telemetry(0, config), answer)

    ops = [c.op for c in api_calls(steps)]
    assert ops == ["telemetry-list-pods"] * attempts + ["telemetry-list-nodes"]
    report = round_report(steps)
    assert report.outcome is Outcome.THROTTLED
    first_call_at = steps[1].at_ns
    assert reports(steps)[0][0] - first_call_at == (attempts - 1) * S


@pytest.mark.parametrize(
    ("status", "retry_after_s", "retried"),
    [
        pytest.param(429, None, False, id="429-without-retry-after-is-final"),
        pytest.param(503, 2.0, True, id="503-with-retry-after-is-retried"),
        pytest.param(500, None, False, id="500-without-retry-after-is-final"),
        pytest.param(504, 0.0, True, id="retry-after-0-is-retried-at-once"),
        pytest.param(404, 5.0, False, id="404-is-final-even-with-retry-after"),
    ],
)
def test_only_429_and_5xx_with_retry_after_are_retried(
    status: int, retry_after_s: float | None, retried: bool
) -> None:
    steps = drive(Telemetry(0, ONE_ROUND), replies((status, retry_after_s)))

    pods = [c for c in api_calls(steps) if c.op == "telemetry-list-pods"]
    assert len(pods) == (2 if retried else 1)
    assert (round_report(steps).outcome is Outcome.OK) == retried


@pytest.mark.parametrize(
    ("retry_connection_errors", "attempts"),
    [
        pytest.param(True, 2, id="reset-get-retried-after-1s"),
        pytest.param(False, 1, id="connection-retries-off"),
    ],
)
def test_a_lost_connection_on_a_get_is_retried_after_one_second(
    retry_connection_errors: bool, attempts: int
) -> None:
    config = TelemetryConfig(
        retry=ClientGoRetry(retry_connection_errors=retry_connection_errors), max_rounds=1
    )
    lost = [True]

    def answer(action: Action, now_ns: int) -> Reply:
        if lost.pop() if lost else False:
            return ApiReply(now_ns=now_ns, status=0, outcome=Outcome.CONN_ERROR)
        return api_reply(now_ns, 200, page())

    steps = drive(Telemetry(0, config), answer)

    pods = [s for s in steps if isinstance(s.action, ApiCall) and s.action.op.endswith("pods")]
    assert len(pods) == attempts
    if attempts == 2:
        assert pods[1].at_ns - pods[0].reply.now_ns == 1 * S


def test_an_expired_continue_token_falls_back_to_one_unpaged_list() -> None:
    config = TelemetryConfig(
        calls=(TelemetryCall("list-pods", "/api/v1/pods", resource_version="0"),), max_rounds=1
    )

    def answer(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        if "continue" in action.params:
            return api_reply(now_ns, 410, {"kind": "Status", "reason": "Expired", "code": 410})
        more = "limit" in action.params
        return api_reply(now_ns, 200, page("p1" if more else ""))

    steps = drive(Telemetry(0, config), answer)

    assert [dict(c.params) for c in api_calls(steps)] == [
        {"resourceVersion": "0", "limit": "500"},
        {"limit": "500", "continue": "p1"},
        {"resourceVersion": "0"},
    ]
    assert round_report(steps).outcome is Outcome.OK


def test_a_failed_list_does_not_stop_the_rest_of_the_round() -> None:
    def answer(action: Action, now_ns: int) -> Reply:
        assert isinstance(action, ApiCall)
        status = 403 if action.path == "/api/v1/pods" else 200
        return api_reply(now_ns, status, page())

    steps = drive(Telemetry(0, ONE_ROUND), answer)

    assert [c.path for c in api_calls(steps)] == ["/api/v1/pods", "/api/v1/nodes"]
    assert round_report(steps).outcome is Outcome.CLIENT_ERROR


def test_every_node_authenticates_as_the_one_shared_service_account() -> None:
    agents = [Telemetry(i) for i in range(50)]

    assert {a.identity.user for a in agents} == {"system:serviceaccount:monitoring:telemetry"}
    assert {a.identity.user for a in agents} == {DEFAULT_USER}
    assert len({a.identity.user_agent for a in agents}) == 50


def test_the_shared_identity_is_configurable() -> None:
    config = TelemetryConfig(user="system:serviceaccount:obs:agent")

    assert {Telemetry(i, config).identity.user for i in range(3)} == {
        "system:serviceaccount:obs:agent"
    }


def test_the_agent_declares_its_kind_ops_and_client_go_rate_limit() -> None:
    agent = Telemetry(3)

    assert agent.kind == "telemetry"
    assert agent.ops == ("telemetry-list-pods", "telemetry-list-nodes", "telemetry-round")
    assert (agent.qps, agent.burst) == (5.0, 10)


def test_op_names_follow_the_configured_calls() -> None:
    calls = (
        TelemetryCall("list-configmaps", "/api/v1/configmaps"),
        TelemetryCall("list-events", "/api/v1/events", resource_version="0"),
    )

    agent = Telemetry(0, TelemetryConfig(calls=calls, qps=20.0, burst=40))

    assert agent.ops == ("telemetry-list-configmaps", "telemetry-list-events", "telemetry-round")
    assert (agent.qps, agent.burst) == (20.0, 40)


@pytest.mark.parametrize(
    ("node", "rollout_s"),
    [
        pytest.param(0, 5.0, id="first-node-at-rollout-start"),
        pytest.param(40, 9.0, id="node-40-one-tenth-of-a-second-each"),
    ],
)
def test_the_first_round_waits_for_the_rollout_then_a_random_part_of_an_interval(
    node: int, rollout_s: float
) -> None:
    config = TelemetryConfig(rollout=RolloutPlan(start_s=5.0, pace_nodes_per_s=10.0))
    start_ns = 1_000 * S

    (flow,) = Telemetry(node, config).flows(start_ns, random.Random(42))
    first = flow.send(None)
    flow.close()

    assert isinstance(first, Sleep)
    jitter_s = random.Random(42).uniform(0.0, 60.0)
    assert first.until_ns == start_ns + round((rollout_s + jitter_s) * S)
    assert start_ns + rollout_s * S <= first.until_ns < start_ns + (rollout_s + 60.0) * S


def test_rounds_repeat_every_interval() -> None:
    config = TelemetryConfig(interval_s=30.0, max_rounds=3)

    steps = drive(Telemetry(0, config), paged({"/api/v1/pods": 2, "/api/v1/nodes": 1}, S))

    starts = [report.started_ns for _, report in reports(steps)]
    assert [t - starts[0] for t in starts] == [0, 30 * S, 60 * S]
    assert len(api_calls(steps)) == 3 * 3


def test_a_round_that_overruns_its_interval_is_followed_at_once_and_missed_ticks_dropped() -> None:
    # Each LIST takes 75 s, so a round of two takes 150 s against a 60 s interval: Go's ticker
    # hands over the tick at +60 when the round ends (+150), drops +120, and the round after
    # that picks up +180 at +300.
    config = TelemetryConfig(interval_s=60.0, max_rounds=3)

    steps = drive(Telemetry(0, config), paged({"/api/v1/pods": 1, "/api/v1/nodes": 1}, 75 * S))

    first_tick = reports(steps)[0][1].started_ns
    round_starts = [s.at_ns - first_tick for s in steps if isinstance(s.action, ApiCall)][::2]
    ticks = [report.started_ns - first_tick for _, report in reports(steps)]
    assert round_starts == [0, 150 * S, 300 * S]
    assert ticks == [0, 60 * S, 180 * S]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"calls": ()}, "at least one call", id="no-calls"),
        pytest.param(
            {"calls": (TelemetryCall("a", "/x"), TelemetryCall("a", "/y"))},
            "distinct",
            id="duplicate-call-names",
        ),
        pytest.param({"calls": (TelemetryCall("round", "/x"),)}, "round", id="reserved-name"),
        pytest.param({"interval_s": 0.0}, "interval_s", id="zero-interval"),
        pytest.param({"qps": 0.0}, "qps", id="zero-qps"),
        pytest.param({"burst": 0}, "burst", id="zero-burst"),
    ],
)
def test_a_config_that_cannot_run_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TelemetryConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "path", "limit"),
    [
        pytest.param("List Pods", "/api/v1/pods", 500, id="name-with-space"),
        pytest.param("pods", "api/v1/pods", 500, id="relative-path"),
        pytest.param("pods", "/api/v1/pods", -1, id="negative-limit"),
    ],
)
def test_a_call_that_cannot_be_sent_is_refused(name: str, path: str, limit: int) -> None:
    with pytest.raises(ValueError, match="telemetry call"):
        TelemetryCall(name, path, limit=limit)
