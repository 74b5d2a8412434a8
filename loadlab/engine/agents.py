"""The driver of node agents: performs what their flows ask, records it, sends back the replies.

``AgentRunner(clock, agents, http=..., dns=..., recorders=...)`` starts every flow of every agent
(``loadlab.agents.base``) and runs it until it returns, until ``run``'s ``until_ns``, or until
``stop()``. Per action:

- ``Sleep``: ``clock.sleep_until``.
- ``ApiCall``: the agent's token bucket first (client-go's ``flowcontrol`` limiter,
  ``loadlab.agents.ratelimit``: the call waits for its token, and its latency still counts from
  the intended time, so a client-side queue shows up as latency, as coordinated omission demands),
  then ``http.call`` as the agent's identity.
- ``WatchOpen`` / ``WatchNext`` / ``WatchClose``: the flow's own watch stream (one connection
  each); the open is rate limited like a call (client-go throttles ``Watch()`` as well,
  ``rest/request.go`` ``tryThrottle``) and recorded under its op; events are not recorded one by
  one, they are counted per kind (``AgentRunStats.watch_events``).
- ``DnsQuery``: its questions asked at once (``asyncio.gather``), each recorded under the op.
- ``Report``: recorded under its op, latency from its ``started_ns``.

Every ``ApiCall``, ``WatchOpen``, DNS question and ``Report`` is recorded in its agent kind's
recorder: ``on_dispatch(intended, sent)``, then ``complete(op, outcome, intended, sent, done)``.

A flow that raises is a bug (agents never see the wire's failures as exceptions: they get
outcomes): the run stops and ``run`` re-raises it. The transports are Protocols (``AgentTransport``,
``DnsTransport``): a sweep hands in ``loadlab.targets.agent_fast_http.FastAgentHttpClient``
(requests on a lean pool, watches on aiohttp) and ``loadlab.targets.dns_client.DnsClient``; tests
hand in fakes that answer from functions.

One asyncio task per flow. That is affordable at 10,000 agents x 3 flows: measured here (Python
3.11), 30,000 sleeping flows cost 97 MB, 3.3 KiB each with their generator, task, sleep and
agent state (the task alone ~1.1 KiB), and a waiting task costs no CPU. The alternative, one task
multiplexing many flows, would rebuild what the event loop already does (timers, wake-ups) and
hold a fast reply behind a slow one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import resource
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from loadlab.agents.base import (
    Action,
    Agent,
    ApiCall,
    ApiReply,
    DnsAnswer,
    DnsQuery,
    DnsQuestion,
    DnsReplies,
    Flow,
    Identity,
    Reply,
    Report,
    Sleep,
    WatchClose,
    WatchEnd,
    WatchEvent,
    WatchNext,
    WatchOpen,
    Woke,
)
from loadlab.agents.ratelimit import TokenBucket
from loadlab.clock import Clock
from loadlab.errors import UsageError
from loadlab.metrics.recorder import Recorder
from loadlab.targets.base import FD_MARGIN, Outcome

# -- the seams: what the driver needs of the wire -----------------------------------------------


class WatchStream(Protocol):
    """One open watch on a connection of its own."""

    @property
    def head(self) -> ApiReply:
        """The reply to the ``WatchOpen``: status 200 when events follow."""
        ...

    async def next(self, until_ns: int) -> WatchEvent | WatchEnd:
        """The next event, or how the stream ended (``deadline`` when ``until_ns`` passed)."""
        ...

    async def close(self) -> None:
        """End the watch from the client side; idempotent."""
        ...


class AgentTransport(Protocol):
    """The API server, as agents reach it."""

    async def call(self, identity: Identity, call: ApiCall) -> ApiReply:
        """Send ``call`` as ``identity``; wire failures are outcomes, never exceptions."""
        ...

    async def open_watch(self, identity: Identity, watch: WatchOpen) -> WatchStream:
        """Open ``watch`` as ``identity`` on a connection of its own."""
        ...


class DnsTransport(Protocol):
    """The cluster DNS, as agents reach it."""

    async def query(self, name: str, rdtype: str, timeout_s: float) -> DnsAnswer:
        """Ask one question; a timeout is an outcome, never an exception."""
        ...


class AgentRecorder(Protocol):
    """Where one agent kind's requests are recorded (a ``loadlab.metrics.recorder.Recorder``)."""

    def on_dispatch(self, intended_ns: int, dispatched_ns: int) -> None: ...

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None: ...


# -- recorders and op names ----------------------------------------------------------------------


def ops_by_kind(agents: Iterable[Agent]) -> dict[str, tuple[str, ...]]:
    """Per agent kind, the union of its agents' ``ops``, in order of first appearance."""
    ops: dict[str, dict[str, None]] = {}
    for agent in agents:
        known = ops.setdefault(agent.kind, {})
        for op in agent.ops:
            known.setdefault(op, None)
    return {kind: tuple(names) for kind, names in ops.items()}


def recorders_for(agents: Iterable[Agent], start_ns: int) -> dict[str, Recorder]:
    """One ``Recorder`` per agent kind (its target name is the kind), ops as ``ops_by_kind``."""
    return {
        kind: Recorder(kind, names, start_ns=start_ns)
        for kind, names in ops_by_kind(agents).items()
        if names
    }


# -- the file-descriptor budget ------------------------------------------------------------------


@runtime_checkable
class DeclaresWatches(Protocol):
    """An agent that says how many watches it holds at most (one connection each)."""

    watches: int


def sockets_needed(
    agents: Sequence[Agent], *, pool_connections: int = 0, dns_sockets: int = 0
) -> int:
    """Sockets a run of ``agents`` may hold at once: one per watch, the shared HTTP pool, the DNS
    client's UDP sockets and its one TCP fallback connection.

    Watches: what an agent declares (``DeclaresWatches``); otherwise each of its flows may hold
    one (a flow has at most one watch open), an upper bound.
    """
    watches = 0
    for agent in agents:
        if isinstance(agent, DeclaresWatches):
            watches += agent.watches
        else:
            # Flows are generators: building them runs none of their code.
            watches += len(agent.flows(0, random.Random(0)))
    dns = dns_sockets + 1 if dns_sockets else 0
    return watches + pool_connections + dns


def check_agent_sockets(
    agents: Sequence[Agent],
    *,
    pool_connections: int = 0,
    dns_sockets: int = 0,
    limit: int | None = None,
) -> int:
    """Raise ``UsageError`` when the open-file limit (``limit``, default the soft RLIMIT_NOFILE;
    call ``loadlab.runloop.raise_open_file_limit`` first) cannot hold the sockets of ``agents``
    plus ``FD_MARGIN``. Returns the sockets needed."""
    needed = sockets_needed(agents, pool_connections=pool_connections, dns_sockets=dns_sockets)
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and needed + FD_MARGIN > limit:
        raise UsageError(
            f"{len(agents)} agents need ~{needed + FD_MARGIN} sockets; this process may open "
            f"{limit} (ulimit -n); run fewer agents per process (--workers will spread them) "
            "or raise the hard limit"
        )
    return needed


# -- the runner ----------------------------------------------------------------------------------


@dataclass
class AgentRunStats:
    """What the runner did so far; counts only (latencies are in the recorders)."""

    flows: int = 0
    """Flows started."""
    flows_ended: int = 0
    """Flows that returned by themselves (not stopped)."""
    watches_open: int = 0
    """Watch streams open now."""
    watch_events: dict[str, int] = field(default_factory=dict)
    """Watch events received, per agent kind."""


@dataclass(eq=False)
class _AgentState:
    agent: Agent
    kind_ops: Mapping[str, int]
    recorder: AgentRecorder
    bucket: TokenBucket | None


@dataclass(eq=False)
class _FlowState:
    agent: _AgentState
    watch: WatchStream | None = None


class AgentRunner:
    """Runs ``agents`` against ``http`` and ``dns``, recording into ``recorders`` (one per kind).

    ``rng_seed`` seeds one ``random.Random`` per agent, in order, so a run is reproducible.
    """

    def __init__(
        self,
        clock: Clock,
        agents: Sequence[Agent],
        *,
        http: AgentTransport | None,
        dns: DnsTransport | None,
        recorders: Mapping[str, AgentRecorder],
        rng_seed: int = 0,
    ) -> None:
        self._clock = clock
        self._agents = tuple(agents)
        self._http = http
        self._dns = dns
        self._rng_seed = rng_seed
        self.stats = AgentRunStats()
        ops = ops_by_kind(self._agents)
        missing = sorted(kind for kind in ops if kind not in recorders)
        if missing:
            raise ValueError(f"no recorder for agent kind(s) {', '.join(missing)}")
        op_index = {kind: {name: i for i, name in enumerate(names)} for kind, names in ops.items()}
        self._states = [
            _AgentState(
                agent,
                op_index[agent.kind],
                recorders[agent.kind],
                TokenBucket(agent.qps, agent.burst) if agent.qps is not None else None,
            )
            for agent in self._agents
        ]
        self.stats.watch_events = dict.fromkeys(ops, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._live = 0

    async def run(self, until_ns: int, *, start_ns: int | None = None) -> None:
        """Run every flow until ``until_ns``, until all have returned, or until ``stop()``;
        then stop them all (watches closed). Re-raises the first exception of a flow.
        ``start_ns``: the origin the flows count their schedule from (default: now); a worker
        passes its leader's, so every worker's agents keep one schedule."""
        if self._tasks:
            raise RuntimeError("an AgentRunner runs once")
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        if start_ns is None:
            start_ns = self._clock.now_ns()
        seeds = random.Random(self._rng_seed)
        for state in self._states:
            rng = random.Random(seeds.getrandbits(64))
            for flow in state.agent.flows(start_ns, rng):
                task = asyncio.ensure_future(self._drive(_FlowState(state), flow))
                task.add_done_callback(self._on_flow_done)
                self._tasks.append(task)
        self.stats.flows = self._live = len(self._tasks)
        deadline = asyncio.ensure_future(self._clock.sleep_until(until_ns))
        try:
            if self._live:
                await asyncio.wait((wake, deadline), return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            await self._stop_all()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """End the run now: ``run`` cancels every flow, closes their watches and returns."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _on_flow_done(self, task: asyncio.Task[None]) -> None:
        self._live -= 1
        if not task.cancelled():
            exc = task.exception()
            if exc is None:
                self.stats.flows_ended += 1
            elif self._failure is None:
                self._failure = exc
                self.stop()
        if self._live == 0:
            self.stop()

    async def _stop_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Each flow's ``finally`` closes its watch; a flow that failed is already done.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drive(self, state: _FlowState, flow: Flow) -> None:
        reply: Reply | None = None
        try:
            # Bounded by the run: a flow that never returns is cancelled at ``until_ns``.
            while True:
                try:
                    action = flow.send(reply)
                except StopIteration:
                    return
                reply = await self._perform(state, action)
        finally:
            flow.close()
            if state.watch is not None:
                await self._close_watch(state)

    async def _perform(self, state: _FlowState, action: Action) -> Reply:
        clock = self._clock
        yielded_ns = clock.now_ns()
        if isinstance(action, Sleep):
            await clock.sleep_until(action.until_ns)
            return Woke(clock.now_ns())
        if isinstance(action, ApiCall):
            return await self._call(state, action, yielded_ns)
        if isinstance(action, WatchOpen):
            return await self._open_watch(state, action, yielded_ns)
        if isinstance(action, WatchNext):
            if state.watch is None:
                raise RuntimeError(f"{state.agent.agent.kind}: WatchNext without an open watch")
            event = await state.watch.next(action.until_ns)
            if isinstance(event, WatchEvent):
                self.stats.watch_events[state.agent.agent.kind] += 1
                return _stamped(event, clock.now_ns())
            return _stamped(event, clock.now_ns())
        if isinstance(action, WatchClose):
            await self._close_watch(state)
            return Woke(clock.now_ns())
        if isinstance(action, DnsQuery):
            return await self._dns_query(state.agent, action)
        if isinstance(action, Report):
            op = _op(state.agent, action.op)
            state.agent.recorder.on_dispatch(action.started_ns, action.started_ns)
            state.agent.recorder.complete(
                op, action.outcome, action.started_ns, action.started_ns, yielded_ns
            )
            return Woke(yielded_ns)
        raise TypeError(f"{state.agent.agent.kind} yielded {action!r}, which is not an action")

    async def _throttle(self, agent: _AgentState) -> None:
        if agent.bucket is not None:
            now_ns = self._clock.now_ns()
            send_ns = agent.bucket.reserve(now_ns)
            if send_ns > now_ns:  # no needless turn of the loop while tokens are left
                await self._clock.sleep_until(send_ns)

    async def _call(self, state: _FlowState, call: ApiCall, yielded_ns: int) -> ApiReply:
        agent = state.agent
        op = _op(agent, call.op)
        http = self._need_http(agent)
        intended_ns = call.intended_ns if call.intended_ns is not None else yielded_ns
        await self._throttle(agent)
        sent_ns = self._clock.now_ns()
        agent.recorder.on_dispatch(intended_ns, sent_ns)
        reply = await http.call(agent.agent.identity, call)
        done_ns = self._clock.now_ns()
        agent.recorder.complete(op, reply.outcome, intended_ns, sent_ns, done_ns)
        return _stamped(reply, done_ns)

    async def _open_watch(self, state: _FlowState, watch: WatchOpen, yielded_ns: int) -> ApiReply:
        agent = state.agent
        op = _op(agent, watch.op)
        http = self._need_http(agent)
        if state.watch is not None:
            # A reflector re-watches after its stream ended; the old one is done with.
            await self._close_watch(state)
        intended_ns = watch.intended_ns if watch.intended_ns is not None else yielded_ns
        await self._throttle(agent)
        sent_ns = self._clock.now_ns()
        agent.recorder.on_dispatch(intended_ns, sent_ns)
        stream = await http.open_watch(agent.agent.identity, watch)
        done_ns = self._clock.now_ns()
        head = stream.head
        agent.recorder.complete(op, head.outcome, intended_ns, sent_ns, done_ns)
        if head.status == 200:
            state.watch = stream
            self.stats.watches_open += 1
        else:
            await stream.close()
        return _stamped(head, done_ns)

    async def _close_watch(self, state: _FlowState) -> None:
        watch, state.watch = state.watch, None
        if watch is not None:
            self.stats.watches_open -= 1
            await watch.close()

    async def _dns_query(self, agent: _AgentState, query: DnsQuery) -> DnsReplies:
        op = _op(agent, query.op)
        if self._dns is None:
            raise RuntimeError(f"{agent.agent.kind} asks DNS, but this run has no DNS transport")
        dns = self._dns

        async def ask(question: DnsQuestion) -> DnsAnswer:
            sent_ns = self._clock.now_ns()
            agent.recorder.on_dispatch(sent_ns, sent_ns)
            answer = await dns.query(question.name, question.rdtype, query.timeout_s)
            agent.recorder.complete(op, answer.outcome, sent_ns, sent_ns, self._clock.now_ns())
            return answer

        answers = await asyncio.gather(*(ask(q) for q in query.questions))
        return DnsReplies(self._clock.now_ns(), tuple(answers))

    def _need_http(self, agent: _AgentState) -> AgentTransport:
        if self._http is None:
            raise RuntimeError(f"{agent.agent.kind} calls the API, but this run has no HTTP client")
        return self._http


def _op(agent: _AgentState, name: str) -> int:
    try:
        return agent.kind_ops[name]
    except KeyError:
        raise ValueError(
            f"{agent.agent.kind} used op {name!r}, which is not in its ops {agent.agent.ops}"
        ) from None


_R = TypeVar("_R", ApiReply, WatchEvent, WatchEnd)


def _stamped(reply: _R, now_ns: int) -> _R:
    """``reply`` with the runner's ``now_ns`` (a transport may stamp its own clock)."""
    return reply if reply.now_ns == now_ns else dataclasses.replace(reply, now_ns=now_ns)
