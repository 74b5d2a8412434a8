"""Drive an agent's flows by hand: fake engine time, canned replies, no sockets, no sleeping.

A flow (``loadlab.agents.base``) yields actions and is sent replies. ``run_flow`` plays the
engine for a unit test: it answers ``Sleep`` by jumping time to its deadline, ``Report`` and
``WatchClose`` with a ``Woke``, and hands every other action (``ApiCall``, ``WatchOpen``,
``WatchNext``, ``DnsQuery``) to an ``answer`` function the test writes, the way httpx's
``MockTransport`` answers from a function. The result is the trace of what the flow did, with
the engine time of each action, so a test asserts on requests and timings exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from loadlab.agents.base import (
    Action,
    ApiCall,
    ApiReply,
    DnsAnswer,
    DnsQuery,
    DnsQuestion,
    DnsReplies,
    Flow,
    JsonObj,
    Reply,
    Report,
    Sleep,
    WatchClose,
    Woke,
)
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.targets.http import outcome_of_status

Answer = Callable[[Action, int], Reply]
"""Given an action the driver does not answer itself and the engine time it was yielded at, the
reply; the reply's ``now_ns`` (at or after that time) moves the clock."""

DEFAULT_MAX_STEPS = 10_000
"""Actions driven at most, so a flow that never ends (they usually don't) still stops a test."""


@dataclass(frozen=True)
class Step:
    """One action of the flow and the reply it was sent."""

    at_ns: int
    """Engine time when the flow yielded the action."""
    action: Action
    reply: Reply


def api_reply(
    now_ns: int,
    status: int,
    body: JsonObj | None = None,
    *,
    retry_after_s: float | None = None,
) -> ApiReply:
    """An ``ApiReply`` with the outcome the HTTP target gives ``status`` (2xx OK, 429 THROTTLED,
    other 4xx CLIENT_ERROR, 5xx SERVER_ERROR)."""
    return ApiReply(
        now_ns=now_ns,
        status=status,
        outcome=outcome_of_status(status),
        body=body,
        retry_after_s=retry_after_s,
    )


def run_flow(
    flow: Flow,
    answer: Answer,
    *,
    start_ns: int = 0,
    until_ns: int | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[Step]:
    """Drive ``flow`` from ``start_ns`` until it returns, until it sleeps past ``until_ns``, or
    for ``max_steps`` actions, whichever comes first; then close it. Returns every step taken
    (the sleep past ``until_ns`` is not taken, so not in the trace)."""
    steps: list[Step] = []
    now_ns = start_ns
    try:
        action: Action = flow.send(None)
        for _ in range(max_steps):
            reply: Reply
            if isinstance(action, Sleep):
                if until_ns is not None and action.until_ns > until_ns:
                    break
                reply = Woke(now_ns=max(now_ns, action.until_ns))
            elif isinstance(action, Report | WatchClose):
                reply = Woke(now_ns=now_ns)
            else:
                reply = answer(action, now_ns)
                if reply.now_ns < now_ns:
                    raise ValueError(f"a reply went back in time: {reply.now_ns} < {now_ns}")
            steps.append(Step(at_ns=now_ns, action=action, reply=reply))
            now_ns = reply.now_ns
            action = flow.send(reply)
    except StopIteration:
        pass
    finally:
        flow.close()
    return steps


def api_calls(steps: list[Step]) -> list[ApiCall]:
    """The ``ApiCall`` actions of a trace, in order."""
    return [step.action for step in steps if isinstance(step.action, ApiCall)]


def reports(steps: list[Step]) -> list[tuple[int, Report]]:
    """The ``Report`` actions of a trace with the engine time each was made at, in order."""
    return [(step.at_ns, step.action) for step in steps if isinstance(step.action, Report)]


# -- DNS ---------------------------------------------------------------------------------------


def dns_address(*addresses: str, ttl_s: int = 30) -> DnsAnswer:
    """NOERROR with records (the sim's record TTL is 30 s: docs/control-plane-model.md,
    "CoreDNS"). Addresses belong in TEST-NET (192.0.2.0/24, 198.51.100.0/24) or 2001:db8::/32."""
    return DnsAnswer(Outcome.OK, 0, ttl_s, addresses)


def dns_nodata(ttl_s: int = 5) -> DnsAnswer:
    """NOERROR without records; ``ttl_s`` is the SOA's (the sim's negative TTL is 5 s)."""
    return DnsAnswer(Outcome.OK, 0, ttl_s)


def dns_nxdomain(ttl_s: int = 5) -> DnsAnswer:
    return DnsAnswer(Outcome.NXDOMAIN, 3, ttl_s)


def dns_servfail() -> DnsAnswer:
    return DnsAnswer(Outcome.SERVFAIL, 2)


def dns_refused() -> DnsAnswer:
    return DnsAnswer(Outcome.REFUSED, 5)


def dns_timeout() -> DnsAnswer:
    """Nothing came back: the reply is sent when the query's ``timeout_s`` has passed."""
    return DnsAnswer(Outcome.TIMEOUT, None)


@dataclass
class CannedDns:
    """A cluster DNS answering from a table, as an ``answer`` function for ``run_flow``.

    ``records`` maps an absolute name to its answer per rdtype; a name or rdtype not in it gets
    ``default`` (NXDOMAIN). Both may be changed between steps, to make the server fail mid-run.
    Each ``DnsQuery`` is answered ``latency_ns`` later, or after its ``timeout_s`` when any of its
    answers is a timeout (the engine waits for the slowest question). Every query is kept in
    ``queries`` with the engine time it was sent at.
    """

    records: dict[str, dict[str, DnsAnswer]] = field(default_factory=dict)
    default: DnsAnswer = field(default_factory=dns_nxdomain)
    latency_ns: int = NS_PER_MS
    queries: list[tuple[int, DnsQuery]] = field(default_factory=list)

    def answer(self, question: DnsQuestion) -> DnsAnswer:
        return self.records.get(question.name.lower(), {}).get(question.rdtype, self.default)

    def __call__(self, action: Action, now_ns: int) -> Reply:
        if not isinstance(action, DnsQuery):
            raise TypeError(f"CannedDns answers DnsQuery only, got {type(action).__name__}")
        self.queries.append((now_ns, action))
        answers = tuple(self.answer(q) for q in action.questions)
        if any(a.outcome is Outcome.TIMEOUT for a in answers):
            return DnsReplies(now_ns + int(action.timeout_s * NS_PER_S), answers)
        return DnsReplies(now_ns + self.latency_ns, answers)
