"""The agent driver in fake time, with fake transports answering from functions (no sockets)."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from loadlab.agents.base import (
    ApiCall,
    ApiReply,
    DnsAnswer,
    DnsQuery,
    DnsQuestion,
    DnsReplies,
    Flow,
    Identity,
    Report,
    Sleep,
    WatchClose,
    WatchEnd,
    WatchEvent,
    WatchNext,
    WatchOpen,
    Woke,
    expect,
)
from loadlab.clock import NS_PER_MS, NS_PER_S, NS_PER_US, FakeClock
from loadlab.engine.agents import (
    AgentRunner,
    check_agent_sockets,
    recorders_for,
    sockets_needed,
)
from loadlab.errors import UsageError
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.runloop import raise_open_file_limit
from loadlab.targets.base import FD_MARGIN, Outcome

NODE = Identity("system:node:node-1", "kubelet/v1.32 (loadlab) node-1")
FOREVER_NS = 3600 * NS_PER_S

FlowFn = Callable[[int, random.Random], Flow]


@dataclass
class ScriptedAgent:
    """An agent whose flows are the generator functions a test writes."""

    kind: str
    ops: tuple[str, ...]
    flow_fns: list[FlowFn]
    identity: Identity = NODE
    qps: float | None = None
    burst: int = 1

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        return [fn(start_ns, rng) for fn in self.flow_fns]


@dataclass
class WatchAgent(ScriptedAgent):
    watches: int = 1


@dataclass
class FakeWatch:
    """A watch whose events arrive at scripted times of the fake clock."""

    clock: FakeClock
    head: ApiReply
    events: deque[tuple[int, str]]
    closed: bool = False

    async def next(self, until_ns: int) -> WatchEvent | WatchEnd:
        if self.events and self.events[0][0] <= until_ns:
            at_ns, kind = self.events.popleft()
            await self.clock.sleep_until(at_ns)
            return WatchEvent(self.clock.now_ns(), kind, {"kind": "Pod"})
        await self.clock.sleep_until(until_ns)
        return WatchEnd(self.clock.now_ns(), "deadline")

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeApi:
    """Answers every call from ``answer`` after ``latency_ns`` of fake time (httpx MockTransport
    style)."""

    clock: FakeClock
    answer: Callable[[ApiCall], tuple[int, Outcome]] = lambda call: (200, Outcome.OK)
    latency_ns: int = 0
    watch_status: int = 200
    watch_events: Iterable[tuple[int, str]] = ()
    sent: list[tuple[int, Identity, str]] = field(default_factory=list)
    watches: list[FakeWatch] = field(default_factory=list)

    async def call(self, identity: Identity, call: ApiCall) -> ApiReply:
        self.sent.append((self.clock.now_ns(), identity, call.op))
        if self.latency_ns:  # FakeClock autojumps after 20 idle turns: take none when instant
            await self.clock.sleep_until(self.clock.now_ns() + self.latency_ns)
        status, outcome = self.answer(call)
        return ApiReply(-1, status, outcome, {"kind": "Status"})  # -1: the runner stamps its own

    async def open_watch(self, identity: Identity, watch: WatchOpen) -> FakeWatch:
        self.sent.append((self.clock.now_ns(), identity, watch.op))
        if self.latency_ns:
            await self.clock.sleep_until(self.clock.now_ns() + self.latency_ns)
        outcome = Outcome.OK if self.watch_status == 200 else Outcome.THROTTLED
        head = ApiReply(self.clock.now_ns(), self.watch_status, outcome)
        stream = FakeWatch(self.clock, head, deque(self.watch_events))
        self.watches.append(stream)
        return stream


@dataclass
class FakeDns:
    clock: FakeClock
    latency_ns: int = 10 * NS_PER_MS
    asked: list[tuple[int, str, str]] = field(default_factory=list)

    async def query(self, name: str, rdtype: str, timeout_s: float) -> DnsAnswer:
        self.asked.append((self.clock.now_ns(), name, rdtype))
        await self.clock.sleep_until(self.clock.now_ns() + self.latency_ns)
        if name.startswith("missing."):
            return DnsAnswer(Outcome.NXDOMAIN, 3, 5)
        return DnsAnswer(Outcome.OK, 0, 30, ("192.0.2.1",))


def drive(
    agents: list[ScriptedAgent],
    *,
    until_ns: int = FOREVER_NS,
    api: Callable[[FakeClock], FakeApi] | None = None,
    dns: bool = False,
) -> tuple[FakeClock, FakeApi, FakeDns, dict[str, Recorder], AgentRunner]:
    """Run ``agents`` in fake time to ``until_ns`` (or until their flows end)."""
    clock = FakeClock()
    fake_api = api(clock) if api is not None else FakeApi(clock)
    fake_dns = FakeDns(clock)
    recorders = recorders_for(agents, 0)
    runner = AgentRunner(
        clock, agents, http=fake_api, dns=fake_dns if dns else None, recorders=recorders
    )

    async def main() -> None:
        await clock.run(runner.run(until_ns))

    asyncio.run(main())
    return clock, fake_api, fake_dns, recorders, runner


def counts(snapshot: IntervalSnapshot) -> dict[tuple[str, str], int]:
    return {(snapshot.op_names[op], o.label): n for (op, o), n in snapshot.counts.items()}


def max_latency_is(snapshot: IntervalSnapshot, op: int, outcome: Outcome, expected_us: int) -> bool:
    """Whether the largest latency from the intended time recorded for (op, outcome) is
    ``expected_us``, within the histogram's 3 significant digits."""
    hist = HdrHistogram.decode(snapshot.corrected[(op, outcome)])
    return bool(hist.values_are_equivalent(hist.get_max_value(), expected_us))


def test_sleep_and_call_are_performed_and_replies_carry_the_runner_clock() -> None:
    replies: list[Any] = []

    def flow(start_ns: int, rng: random.Random) -> Flow:
        replies.append((yield Sleep(until_ns=start_ns + NS_PER_S)))
        replies.append((yield ApiCall("get-node", "GET", "/api/v1/nodes/node-1")))

    agent = ScriptedAgent("kubelet", ("get-node",), [flow])
    _, api, _, _, runner = drive([agent], api=lambda c: FakeApi(c, latency_ns=5 * NS_PER_MS))
    assert replies[0] == Woke(NS_PER_S)
    reply = expect(replies[1], ApiReply)
    assert (reply.now_ns, reply.status, reply.outcome) == (
        NS_PER_S + 5 * NS_PER_MS,
        200,
        Outcome.OK,
    )
    assert reply.body == {"kind": "Status"}
    assert api.sent == [(NS_PER_S, NODE, "get-node")]
    assert (runner.stats.flows, runner.stats.flows_ended) == (1, 1)


def test_token_bucket_lets_100_calls_go_then_one_every_20_ms() -> None:
    # The kubelet's client: 50 QPS, burst 100 (docs/control-plane-model.md, "Watches and client
    # rate limits"; kubelet config reference, kubeAPIQPS/kubeAPIBurst).
    def flood(start_ns: int, rng: random.Random) -> Flow:
        for _ in range(103):
            yield ApiCall("renew", "PUT", "/x", intended_ns=start_ns)

    agent = ScriptedAgent("kubelet", ("renew",), [flood], qps=50, burst=100)
    clock, api, _, recorders, _ = drive([agent])
    sent_ns = [t for t, _, _ in api.sent]
    assert sent_ns == [0] * 100 + [20 * NS_PER_MS, 40 * NS_PER_MS, 60 * NS_PER_MS]
    # The wait is latency: measured from the intended time (0), as coordinated omission demands.
    snap = recorders["kubelet"].rotate(clock.now_ns())
    assert max_latency_is(snap, 0, Outcome.OK, 60 * NS_PER_MS // NS_PER_US)
    assert snap.sent == snap.completed == 103


def test_flows_of_one_agent_share_its_token_bucket() -> None:
    def one_call(start_ns: int, rng: random.Random) -> Flow:
        yield ApiCall("renew", "PUT", "/x")

    agent = ScriptedAgent("kubelet", ("renew",), [one_call] * 3, qps=5, burst=1)
    _, api, _, _, _ = drive([agent])
    # client-go's DefaultQPS 5: one token every 200 ms.
    assert sorted(t for t, _, _ in api.sent) == [0, 200 * NS_PER_MS, 400 * NS_PER_MS]


def test_recorders_count_each_op_and_outcome_per_kind() -> None:
    def calls(*ops: str) -> FlowFn:
        def flow(start_ns: int, rng: random.Random) -> Flow:
            for op in ops:
                yield ApiCall(op, "GET", f"/{op}")

        return flow

    def answer(call: ApiCall) -> tuple[int, Outcome]:
        return (429, Outcome.THROTTLED) if call.op == "list-pods" else (200, Outcome.OK)

    a = ScriptedAgent("kubelet", ("renew", "list-pods"), [calls("renew", "list-pods", "renew")])
    b = ScriptedAgent("kubelet", ("renew", "get-node"), [calls("get-node", "renew")])
    t = ScriptedAgent("telemetry", ("list-pods",), [calls("list-pods")])
    clock, _, _, recorders, _ = drive([a, b, t], api=lambda c: FakeApi(c, answer))
    assert recorders["kubelet"].op_names == ("renew", "list-pods", "get-node")
    kubelet = recorders["kubelet"].rotate(clock.now_ns())
    assert counts(kubelet) == {("renew", "ok"): 3, ("list-pods", "429"): 1, ("get-node", "ok"): 1}
    assert (kubelet.sent, kubelet.completed, kubelet.errors) == (5, 5, 1)
    telemetry = recorders["telemetry"].rotate(clock.now_ns())
    assert counts(telemetry) == {("list-pods", "429"): 1}


def test_report_is_recorded_with_latency_from_its_start() -> None:
    def lookup(start_ns: int, rng: random.Random) -> Flow:
        yield Sleep(until_ns=3 * NS_PER_S)
        yield Report("lookup", Outcome.SERVFAIL, started_ns=NS_PER_S)

    agent = ScriptedAgent("pod-dns", ("lookup",), [lookup])
    clock, _, _, recorders, _ = drive([agent])
    snap = recorders["pod-dns"].rotate(clock.now_ns())
    assert counts(snap) == {("lookup", "servfail"): 1}
    assert max_latency_is(snap, 0, Outcome.SERVFAIL, 2 * NS_PER_S // NS_PER_US)


def test_watch_events_come_in_order_a_deadline_leaves_it_open_and_close_closes_it() -> None:
    replies: list[Any] = []

    def watcher(start_ns: int, rng: random.Random) -> Flow:
        replies.append((yield WatchOpen("watch-pods", "/api/v1/pods")))
        replies.append((yield WatchNext(until_ns=1500 * NS_PER_MS)))
        replies.append((yield WatchNext(until_ns=1500 * NS_PER_MS)))
        replies.append((yield WatchNext(until_ns=5 * NS_PER_S)))
        replies.append((yield WatchClose()))

    events = [(NS_PER_S, "ADDED"), (2 * NS_PER_S, "MODIFIED")]
    agent = ScriptedAgent("kubelet", ("watch-pods",), [watcher])
    clock, api, _, recorders, runner = drive([agent], api=lambda c: FakeApi(c, watch_events=events))
    assert [type(r).__name__ for r in replies] == [
        "ApiReply",
        "WatchEvent",
        "WatchEnd",
        "WatchEvent",
        "Woke",
    ]
    assert (replies[1].now_ns, replies[1].type) == (NS_PER_S, "ADDED")
    assert replies[2] == WatchEnd(1500 * NS_PER_MS, "deadline")
    assert (replies[3].now_ns, replies[3].type) == (2 * NS_PER_S, "MODIFIED")
    assert api.watches[0].closed
    assert runner.stats.watch_events == {"kubelet": 2}
    assert runner.stats.watches_open == 0
    # The open is recorded once under its op; events are counted, not recorded.
    assert counts(recorders["kubelet"].rotate(clock.now_ns())) == {("watch-pods", "ok"): 1}


def test_a_rejected_watch_is_recorded_and_not_kept_open() -> None:
    replies: list[Any] = []

    def watcher(start_ns: int, rng: random.Random) -> Flow:
        replies.append((yield WatchOpen("watch-pods", "/api/v1/pods")))

    agent = ScriptedAgent("kubelet", ("watch-pods",), [watcher])
    clock, api, _, recorders, runner = drive([agent], api=lambda c: FakeApi(c, watch_status=429))
    assert expect(replies[0], ApiReply).status == 429
    assert api.watches[0].closed
    assert runner.stats.watches_open == 0
    assert counts(recorders["kubelet"].rotate(clock.now_ns())) == {("watch-pods", "429"): 1}


def test_dns_questions_are_asked_together_and_each_is_recorded() -> None:
    replies: list[Any] = []

    def resolve(start_ns: int, rng: random.Random) -> Flow:
        questions = [
            DnsQuestion("svc-0.default.svc.cluster.local.", "A"),
            DnsQuestion("svc-0.default.svc.cluster.local.", "AAAA"),
            DnsQuestion("missing.default.svc.cluster.local.", "A"),
        ]
        replies.append((yield DnsQuery("dns-wire", questions)))

    agent = ScriptedAgent("pod-dns", ("dns-wire",), [resolve])
    clock, _, dns, recorders, _ = drive([agent], dns=True)
    assert [t for t, _, _ in dns.asked] == [0, 0, 0]
    reply = expect(replies[0], DnsReplies)
    assert reply.now_ns == 10 * NS_PER_MS  # concurrent: one latency, not three
    assert [a.outcome for a in reply.answers] == [Outcome.OK, Outcome.OK, Outcome.NXDOMAIN]
    assert reply.answers[0].addresses == ("192.0.2.1",)
    snap = recorders["pod-dns"].rotate(clock.now_ns())
    assert counts(snap) == {("dns-wire", "ok"): 2, ("dns-wire", "nxdomain"): 1}


def test_an_exception_in_a_flow_stops_the_run_and_propagates() -> None:
    closed: list[str] = []

    def broken(start_ns: int, rng: random.Random) -> Flow:
        yield Sleep(until_ns=NS_PER_S)
        raise ValueError("a bug in a flow")

    def watcher(start_ns: int, rng: random.Random) -> Flow:
        try:
            yield WatchOpen("watch-pods", "/api/v1/pods")
            yield WatchNext(until_ns=FOREVER_NS)
        finally:
            closed.append("watcher")

    agent = ScriptedAgent("kubelet", ("watch-pods",), [broken, watcher])
    clock = FakeClock()
    api = FakeApi(clock)
    runner = AgentRunner(clock, [agent], http=api, dns=None, recorders=recorders_for([agent], 0))

    async def main() -> None:
        await clock.run(runner.run(FOREVER_NS))

    with pytest.raises(ValueError, match="a bug in a flow"):
        asyncio.run(main())
    assert clock.now_ns() == NS_PER_S
    assert closed == ["watcher"]
    assert api.watches[0].closed


def test_run_stops_every_flow_at_its_end_time_and_closes_watches() -> None:
    stopped: list[int] = []

    def forever(start_ns: int, rng: random.Random) -> Flow:
        try:
            yield WatchOpen("watch-pods", "/api/v1/pods")
            for i in range(1_000_000):
                yield Sleep(until_ns=start_ns + (i + 1) * NS_PER_S)
        finally:
            stopped.append(1)

    agents = [ScriptedAgent("kubelet", ("watch-pods",), [forever, forever]) for _ in range(3)]
    clock, api, _, _, runner = drive(agents, until_ns=10 * NS_PER_S)
    assert clock.now_ns() == 10 * NS_PER_S
    assert len(stopped) == 6
    assert len(api.watches) == 6
    assert all(w.closed for w in api.watches)
    assert (runner.stats.flows, runner.stats.flows_ended, runner.stats.watches_open) == (6, 0, 0)


def test_stop_ends_the_run_before_its_end_time() -> None:
    clock = FakeClock()

    def sleeper(start_ns: int, rng: random.Random) -> Flow:
        for i in range(1_000_000):
            yield Sleep(until_ns=start_ns + (i + 1) * NS_PER_S)

    agent = ScriptedAgent("kubelet", ("renew",), [sleeper])
    runner = AgentRunner(clock, [agent], http=None, dns=None, recorders=recorders_for([agent], 0))

    async def main() -> None:
        async def stop_later() -> None:
            await clock.sleep_until(5 * NS_PER_S)
            runner.stop()

        stopper = asyncio.ensure_future(stop_later())
        await clock.run(runner.run(FOREVER_NS))
        await stopper

    asyncio.run(main())
    assert clock.now_ns() == 5 * NS_PER_S


def test_rng_per_agent_is_reproducible_from_the_seed() -> None:
    drawn: list[float] = []

    def draw(start_ns: int, rng: random.Random) -> Flow:
        drawn.append(rng.random())
        yield Sleep(until_ns=start_ns)

    agents = [ScriptedAgent("kubelet", ("renew",), [draw]) for _ in range(2)]
    drive(agents)
    first = list(drawn)
    drawn.clear()
    drive(agents)
    assert drawn == first
    assert first[0] != first[1]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        pytest.param(ApiCall("unknown-op", "GET", "/"), "not in its ops", id="unknown-op"),
        pytest.param(WatchNext(until_ns=1), "without an open watch", id="next-without-watch"),
        pytest.param(DnsQuery("renew", [DnsQuestion("a.")]), "no DNS transport", id="no-dns"),
    ],
)
def test_a_flow_misusing_the_contract_is_a_bug_that_stops_the_run(
    action: Any, message: str
) -> None:
    def flow(start_ns: int, rng: random.Random) -> Flow:
        yield action

    with pytest.raises((ValueError, RuntimeError), match=message):
        drive([ScriptedAgent("kubelet", ("renew",), [flow])])


def test_sockets_needed_counts_declared_watches_or_one_per_flow() -> None:
    def idle(start_ns: int, rng: random.Random) -> Flow:
        yield Sleep(until_ns=start_ns)

    declared = WatchAgent("kubelet", ("renew",), [idle] * 3, watches=2)
    undeclared = ScriptedAgent("pod-dns", ("lookup",), [idle] * 4)
    # 2 declared + 4 flows + 8 pooled connections + 2 UDP sockets and 1 TCP for DNS.
    assert sockets_needed([declared, undeclared], pool_connections=8, dns_sockets=2) == 17


def test_socket_check_names_agents_sockets_and_limit_in_one_line() -> None:
    def idle(start_ns: int, rng: random.Random) -> Flow:
        yield Sleep(until_ns=start_ns)

    agents = [WatchAgent("kubelet", ("renew",), [idle], watches=3) for _ in range(100)]
    assert check_agent_sockets(agents, pool_connections=4, limit=10_000) == 304
    with pytest.raises(UsageError) as info:
        check_agent_sockets(agents, pool_connections=4, limit=256)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"100 agents need ~{304 + FD_MARGIN} sockets; this process may open")
    assert "256 (ulimit -n)" in message
    assert "--workers" in message


def test_raise_open_file_limit_returns_the_soft_limit_now_in_force() -> None:
    import resource

    soft = raise_open_file_limit()
    now_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now_soft
    assert hard == resource.RLIM_INFINITY or soft == hard
