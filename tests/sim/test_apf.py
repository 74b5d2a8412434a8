"""APF model: classification, shuffle sharding, isolation, queue limits, Retry-After, no-APF."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.overload.apf import RetryAfterTracker, deal_hand
from loadlab.sim.overload.model import (
    OverloadModel,
    Rejected,
    RequestAttributes,
    WorkEstimate,
)
from loadlab.sim.overload.parameters import OverloadConfig, default_priority_levels
from loadlab.sim.promtext import PromRegistry
from tests.sim.helpers import req, run

TELEMETRY_SA = "system:serviceaccount:monitoring:telemetry"


def no_borrowing(**overrides: object) -> OverloadConfig:
    """The default levels with nothing lendable, so each level's capacity is exact."""
    levels = tuple(
        level.model_copy(update={"lendable_percent": 0}) for level in default_priority_levels()
    )
    return OverloadConfig.model_validate({"priority_levels": levels, **overrides})


def make_model(config: OverloadConfig | None = None) -> tuple[OverloadModel, FakeClock]:
    clock = FakeClock()
    return OverloadModel(config or OverloadConfig(), clock, PromRegistry()), clock


async def hold(model: OverloadModel, attrs: RequestAttributes, est: WorkEstimate) -> str:
    """One request: admitted -> serve -> 'ok', or the Rejected reason."""
    try:
        async with model.admit(attrs, est):
            await model.serve(est)
    except Rejected as rejected:
        return rejected.reason
    return "ok"


@pytest.mark.parametrize(
    ("attrs", "level"),
    [
        pytest.param(req("root", groups=("system:masters",)), "exempt", id="masters-exempt"),
        pytest.param(
            req("system:node:n1", "update", "leases", namespace="kube-node-lease"),
            "node-high",
            id="kubelet-lease",
        ),
        pytest.param(req("system:node:n1", "patch", "nodes"), "node-high", id="kubelet-node"),
        pytest.param(req("system:node:n1", "watch", "configmaps"), "system", id="kubelet-other"),
        pytest.param(
            req("system:serviceaccount:kube-system:coredns", "list", "endpointslices"),
            "workload-high",
            id="kube-system-sa",
        ),
        pytest.param(req(TELEMETRY_SA, "list"), "workload-low", id="other-sa"),
        pytest.param(
            req("system:kube-scheduler", "update", "leases", namespace="kube-system"),
            "leader-election",
            id="scheduler-lease",
        ),
        pytest.param(req("alice"), "global-default", id="user"),
        pytest.param(req(""), "global-default", id="anonymous"),
    ],
)
def test_classification_follows_the_reference_table(attrs: RequestAttributes, level: str) -> None:
    model, _ = make_model()
    assert model.classify(attrs)[0] == level


def test_flows_are_per_user_and_catch_all_only_when_nothing_matches() -> None:
    model, _ = make_model()
    lease = "leases"
    n1 = model.classify(req("system:node:n1", "update", lease, namespace="kube-node-lease"))
    n2 = model.classify(req("system:node:n2", "update", lease, namespace="kube-node-lease"))
    assert n1[1] != n2[1]
    # one DaemonSet service account is ONE flow, whatever it asks for
    assert model.classify(req(TELEMETRY_SA, "list"))[1] == model.classify(req(TELEMETRY_SA))[1]
    levels = tuple(lv for lv in default_priority_levels() if lv.name != "global-default")
    narrowed, _ = make_model(OverloadConfig(priority_levels=levels))
    assert narrowed.classify(req("alice"))[0] == "catch-all"


def test_shuffle_sharding_deals_a_stable_hand_of_distinct_queues() -> None:
    hand = deal_hand("workload-low/" + TELEMETRY_SA, 128, 6)
    assert len(set(hand)) == 6
    assert all(0 <= q < 128 for q in hand)
    assert deal_hand("workload-low/" + TELEMETRY_SA, 128, 6) == hand
    hands = {deal_hand(f"node-high/system:node:n{i}", 64, 6) for i in range(50)}
    assert len(hands) > 40  # different flows mostly get different hands


def test_one_flow_queues_at_most_six_queues_of_fifty_then_queue_full() -> None:
    model, clock = make_model(no_borrowing())
    est = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=0)
    attrs = req(TELEMETRY_SA, "list")

    async def scenario() -> tuple[list[str], dict[str, object]]:
        tasks = [asyncio.ensure_future(hold(model, attrs, est)) for _ in range(600)]
        await clock.sleep_until(1 * NS_PER_S)
        snap = model.snapshot()["levels"]["workload-low"]
        results = await asyncio.gather(*tasks)
        return results, snap

    results, snap = run(clock, scenario())
    assert snap["executing_seats"] == 245  # workload-low nominal seats: docs/control-plane-model.md
    assert snap["queued"] == 300  # docs/control-plane-model.md: 6 queues x 50
    assert results.count("queue-full") == 600 - 245 - 300
    assert results.count("time-out") == 300  # held 100 s > the 15 s queue wait


def test_queued_request_is_rejected_with_time_out_after_fifteen_seconds() -> None:
    model, clock = make_model(no_borrowing())
    attrs = req("alice")

    async def scenario() -> tuple[str, float]:
        long_hold = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=0)
        holders = [asyncio.ensure_future(hold(model, attrs, long_hold)) for _ in range(49)]
        await asyncio.sleep(0)
        reason = await hold(model, attrs, WorkEstimate(seats=1, hold_s=0.001, memory_bytes=0))
        waited_s = clock.now_ns() / NS_PER_S
        await asyncio.gather(*holders)
        return reason, waited_s

    reason, waited_s = run(clock, scenario())
    assert reason == "time-out"
    assert waited_s == pytest.approx(15.0)  # docs/control-plane-model.md: a quarter of 60 s


def test_queued_request_is_dispatched_when_a_seat_frees() -> None:
    model, clock = make_model(no_borrowing())
    attrs = req("alice")

    async def scenario() -> float:
        five_s = WorkEstimate(seats=1, hold_s=5.0, memory_bytes=0)
        holders = [asyncio.ensure_future(hold(model, attrs, five_s)) for _ in range(49)]
        await asyncio.sleep(0)
        async with model.admit(attrs, WorkEstimate(seats=1, hold_s=0.0, memory_bytes=0)):
            admitted_s = clock.now_ns() / NS_PER_S
        await asyncio.gather(*holders)
        return admitted_s

    assert run(clock, scenario()) == pytest.approx(5.0)


def test_list_flood_from_one_service_account_does_not_delay_node_leases() -> None:
    """The issue's headline: a DaemonSet's LIST flood is throttled, kubelet leases still pass."""
    model, clock = make_model(OverloadConfig(memory_limit_mb=1_000_000))
    pods_list = req(TELEMETRY_SA, "list")
    # Cluster-scoped pod LIST at 100k pods, served from etcd (docs/control-plane-model.md).
    flood_est = model.estimate(
        pods_list,
        objects_scanned=100_000,
        response_bytes=1_000_000,
        from_cache=False,
        watchers=0,
    )
    assert flood_est.seats == 10

    flood_results: list[Rejected | None] = []

    async def flood_one() -> None:
        try:
            async with model.admit(pods_list, flood_est):
                await model.serve(flood_est)
            flood_results.append(None)
        except Rejected as rejected:
            flood_results.append(rejected)

    async def renew_lease(node: int) -> float:
        await clock.sleep_until(1 * NS_PER_S)
        attrs = req(f"system:node:n{node}", "update", "leases", namespace="kube-node-lease")
        est = model.estimate(
            attrs,
            objects_scanned=1,
            response_bytes=300,
            from_cache=False,
            watchers=1,
        )
        start_ns = clock.now_ns()
        async with model.admit(attrs, est):
            waited_s = (clock.now_ns() - start_ns) / NS_PER_S
            await model.serve(est)
        return waited_s

    async def scenario() -> list[float]:
        flood = [asyncio.ensure_future(flood_one()) for _ in range(1000)]
        waits = await asyncio.gather(*(renew_lease(n) for n in range(150)))
        await asyncio.gather(*flood)
        return list(waits)

    waits = run(clock, scenario())
    assert len(waits) == 150  # every lease renewal admitted, none rejected
    assert max(waits) < 0.5  # 150 one-seat renewals over node-high's 98 seats: two rounds
    rejected = [r for r in flood_results if r is not None]
    assert len(rejected) > 600
    assert {r.priority_level for r in rejected} == {"workload-low"}
    assert all(r.retry_after_s >= 1 for r in rejected)
    assert {r.reason for r in rejected} <= {"queue-full", "time-out"}


def test_retry_after_doubles_at_most_once_per_retry_after_and_caps_at_32() -> None:
    tracker = RetryAfterTracker(1, 32)
    seen: list[int] = []
    for second in range(40):
        for _ in range(100):  # sustained drops
            tracker.record_drop(second)
        seen.append(tracker.retry_after_s)
    # dropped_requests_tracker.go: doubles when >= 3 x retryAfter drops in the last retryAfter
    # seconds, at most once per retryAfter seconds; capped at 32.
    assert seen[:4] == [1, 2, 2, 4]
    assert seen[7] == 8
    assert seen[15] == 16
    assert seen[31] == 32
    assert max(seen) == 32
    assert seen[-1] == 32
    assert all(b in (a, 2 * a, 32) for a, b in itertools.pairwise(seen))


def test_retry_after_falls_by_one_per_drop_when_drops_subside() -> None:
    tracker = RetryAfterTracker(1, 32)
    for second in range(40):
        for _ in range(100):
            tracker.record_drop(second)
    assert tracker.retry_after_s == 32
    seen: list[int] = []
    for second in range(80, 200, 2):  # one drop every other second: fewer than retryAfter
        tracker.record_drop(second)
        seen.append(tracker.retry_after_s)
    assert seen[0] == 31
    assert all(a - b in (0, 1) for a, b in itertools.pairwise(seen))
    assert seen[-1] == 1


def test_sustained_rejections_raise_retry_after_of_the_level() -> None:
    levels = tuple(
        lv.model_copy(update={"lendable_percent": 0})
        for lv in default_priority_levels()
        if lv.name != "global-default"
    )
    model, clock = make_model(OverloadConfig(priority_levels=levels))
    attrs = req("alice")  # nothing matches -> catch-all: reject, no queue

    async def scenario() -> tuple[list[int], set[str]]:
        blocker = WorkEstimate(seats=1, hold_s=1000.0, memory_bytes=0)
        seats = model.snapshot()["levels"]["catch-all"]["nominal_seats"]
        assert seats == 14  # ceil(600 x 5 / 225): the 20 global-default shares are gone
        holders = [asyncio.ensure_future(hold(model, attrs, blocker)) for _ in range(seats)]
        await asyncio.sleep(0)
        retry_after: list[int] = []
        reasons: set[str] = set()
        for tick in range(400):  # 10 rejected requests per second for 40 s
            await clock.sleep_until(tick * NS_PER_S // 10)
            try:
                async with model.admit(attrs, WorkEstimate(seats=1, hold_s=0, memory_bytes=0)):
                    pass
            except Rejected as rejected:
                reasons.add(rejected.reason)
                retry_after.append(rejected.retry_after_s)
        model.reset()
        await asyncio.gather(*holders)
        return retry_after, reasons

    retry_after, reasons = run(clock, scenario())
    assert reasons == {"concurrency-limit"}
    assert len(retry_after) == 400
    assert retry_after[0] == 1
    assert retry_after[-1] == 32
    assert sorted(retry_after) == retry_after


def test_without_apf_excess_gets_429_retry_after_one_beyond_400_and_200() -> None:
    model, clock = make_model(OverloadConfig(apf_enabled=False))
    long_hold = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=0)

    async def scenario() -> tuple[list[str], list[str], Rejected]:
        reads = [asyncio.ensure_future(hold(model, req("a"), long_hold)) for _ in range(401)]
        writes = [
            asyncio.ensure_future(hold(model, req("a", "create"), long_hold)) for _ in range(201)
        ]
        await asyncio.sleep(0)
        assert model.snapshot()["in_flight"] == {"readOnly": 400, "mutating": 200}
        # a watch is long-running: not counted against max-inflight
        async with model.admit(req("a", "watch", long_running=True), long_hold):
            pass
        with pytest.raises(Rejected) as excinfo:
            async with model.admit(req("a"), long_hold):
                pass
        return await asyncio.gather(*reads), await asyncio.gather(*writes), excinfo.value

    reads, writes, rejected = run(clock, scenario())
    assert reads.count("concurrency-limit") == 1
    assert reads.count("ok") == 400
    assert writes.count("concurrency-limit") == 1
    assert writes.count("ok") == 200
    assert rejected.retry_after_s == 1


def test_watch_seat_is_released_once_initialised() -> None:
    model, clock = make_model()
    watch = req("alice", "watch", long_running=True)

    async def scenario() -> tuple[int, int]:
        est = model.estimate(
            watch,
            objects_scanned=0,
            response_bytes=0,
            from_cache=True,
            watchers=0,
        )
        async with model.admit(watch, est):
            during_init = model.snapshot()["levels"]["global-default"]["executing_seats"]
            await model.serve(est)
            await clock.sleep_until(clock.now_ns() + 60 * NS_PER_S)  # the stream
            streaming = model.snapshot()["levels"]["global-default"]["executing_seats"]
        return during_init, streaming

    assert run(clock, scenario()) == (1, 0)


def test_reset_rejects_waiters_and_frees_seats_but_keeps_counters() -> None:
    model, clock = make_model(no_borrowing())
    attrs = req("alice")
    est = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=1000)

    async def scenario() -> list[str]:
        tasks = [asyncio.ensure_future(hold(model, attrs, est)) for _ in range(49 + 300 + 5)]
        await clock.sleep_until(1 * NS_PER_S)
        model.reset()
        return await asyncio.gather(*tasks)

    results = run(clock, scenario())
    assert results.count("apiserver-restart") == 300
    assert results.count("queue-full") == 5
    snap = model.snapshot()
    level = snap["levels"]["global-default"]
    assert (level["executing_seats"], level["queued"]) == (0, 0)
    assert snap["memory_in_flight_bytes"] == 0
    assert snap["in_flight"] == {"readOnly": 0, "mutating": 0}
    rendered = model.metrics.render()
    assert (
        'apiserver_flowcontrol_rejected_requests_total{priority_level="global-default",'
        'flow_schema="global-default",reason="queue-full"} 5' in rendered
    )


def test_a_client_that_leaves_the_queue_frees_its_place() -> None:
    model, clock = make_model(no_borrowing())
    attrs = req("alice")

    async def scenario() -> tuple[int, int, int]:
        long_hold = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=0)
        holders = [asyncio.ensure_future(hold(model, attrs, long_hold)) for _ in range(49)]
        waiter = asyncio.ensure_future(hold(model, attrs, long_hold))
        await asyncio.sleep(0)
        queued_before = model.snapshot()["levels"]["global-default"]["queued"]
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        queued_after = model.snapshot()["levels"]["global-default"]["queued"]
        await asyncio.gather(*holders)
        return (
            queued_before,
            queued_after,
            model.snapshot()["levels"]["global-default"]["executing_seats"],
        )

    assert run(clock, scenario()) == (1, 0, 0)


def test_seats_granted_to_a_client_that_just_left_are_given_back() -> None:
    config = no_borrowing()
    model, clock = make_model(config)
    attrs = req("alice")
    one_seat = WorkEstimate(seats=1, hold_s=0.0, memory_bytes=0)

    async def scenario() -> int:
        others = WorkEstimate(seats=1, hold_s=100.0, memory_bytes=0)
        holders = [asyncio.ensure_future(hold(model, attrs, others)) for _ in range(48)]
        async with model.admit(attrs, one_seat):
            waiter = asyncio.ensure_future(hold(model, attrs, one_seat))
            await asyncio.sleep(0)
            assert model.snapshot()["levels"]["global-default"]["queued"] == 1
        waiter.cancel()  # the seat was handed to it on exit above, before it could run
        await asyncio.gather(waiter, return_exceptions=True)
        seats = int(model.snapshot()["levels"]["global-default"]["executing_seats"])
        await asyncio.gather(*holders)
        return seats

    assert run(clock, scenario()) == 48
