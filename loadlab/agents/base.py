"""The contract between an agent and the engine that drives it: actions out, replies in. No I/O.

An agent is behaviour, written as one or more *flows*. A flow is a generator that yields the
action it wants next and receives the reply (the sans-IO shape of h11 and of httpx's auth flow)::

    def renew_lease(...) -> Flow:
        reply = yield Sleep(until_ns=due_ns)
        answer = yield ApiCall("lease-renew", "PUT", path, body=lease, intended_ns=due_ns)
        if answer.status == 409: ...

Every reply carries ``now_ns``, the engine clock at the moment the flow resumes, so a flow never
reads a clock of its own. A unit test drives a flow by hand: ``flow.send(None)`` for the first
action, then ``flow.send(reply)`` with canned replies; nothing sleeps, nothing connects.

The engine (``loadlab.engine.agents``) runs every flow of every agent concurrently; each agent's
requests carry its identity (``Identity``), each of its watches gets a connection of its own, and
every ``ApiCall`` / ``DnsQuery`` / ``Report`` is recorded under the agent's kind and the action's
``op`` name, with latency measured from ``intended_ns`` (coordinated omission, as for the mix).
A flow ends by returning; it may run until the engine stops it (``GeneratorExit``).
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from loadlab.targets.base import Outcome

T = TypeVar("T")

JsonObj = dict[str, Any]
"""A decoded JSON object (a Kubernetes object, a Status, a List)."""


@dataclass(frozen=True)
class Identity:
    """Who an agent is to the API server: one APF flow per user, as in a real cluster."""

    user: str
    """The user the request authenticates as: ``system:node:node-7``,
    ``system:serviceaccount:kube-system:telemetry``. Sent as the bearer token, which the
    embedded control plane takes as the user name."""
    user_agent: str
    """``kubelet/v1.32 (loadlab) node-7``."""


# -- actions: what a flow asks for ------------------------------------------------------------


@dataclass(frozen=True)
class Sleep:
    """Resume at ``until_ns`` (engine clock); the reply is a ``Woke``."""

    until_ns: int


@dataclass(frozen=True)
class ApiCall:
    """One HTTP request to the API server; the reply is an ``ApiReply``."""

    op: str
    """Metric name, e.g. ``lease-renew``, ``pods-list``."""
    method: str
    path: str
    """Absolute path, e.g. ``/api/v1/nodes/node-7``; the query string goes in ``params``."""
    params: Mapping[str, str] = field(default_factory=dict)
    body: JsonObj | None = None
    content_type: str = "application/json"
    """e.g. ``application/merge-patch+json`` or ``application/strategic-merge-patch+json``."""
    intended_ns: int | None = None
    """When the agent meant to send it (latency is measured from here); None: when yielded."""
    timeout_s: float = 60.0
    """Client-side timeout; kube-apiserver's own --request-timeout is 60 s."""
    keep_body: bool = True
    """False: the client reads the body and drops it (the reply has no ``body``), as a client
    that only needs the outcome does; then a body may be as large as a whole unpaged LIST of a
    big cluster without the generator holding or decoding it."""


@dataclass(frozen=True)
class WatchOpen:
    """Open a watch stream (``?watch=1`` is added) on the agent's own connection; the reply is an
    ``ApiReply`` for the response head (status 200: events follow through ``WatchNext``)."""

    op: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    intended_ns: int | None = None


@dataclass(frozen=True)
class WatchNext:
    """The next event of the flow's open watch, waiting at most until ``until_ns``; the reply is
    a ``WatchEvent`` or a ``WatchEnd``. Only valid after a ``WatchOpen`` answered 200."""

    until_ns: int


@dataclass(frozen=True)
class WatchClose:
    """Close the flow's watch (the client ends it, as a reflector does after its timeout); the
    reply is a ``Woke``."""


@dataclass(frozen=True)
class DnsQuestion:
    """One question to the cluster DNS over the wire."""

    name: str
    """Absolute name, with the trailing dot."""
    rdtype: str = "A"
    """``A``, ``AAAA``, ``SRV``..."""


@dataclass(frozen=True)
class DnsQuery:
    """Ask the cluster DNS ``questions`` in parallel (a resolver sends A and AAAA together); the
    reply is a ``DnsReplies`` with one ``DnsAnswer`` per question, in order. Each wire query is
    recorded under ``op``."""

    op: str
    questions: Sequence[DnsQuestion]
    timeout_s: float = 5.0
    """Per query, as the glibc resolver's ``timeout:5``; retries are the flow's business."""


@dataclass(frozen=True)
class Report:
    """Record a derived measurement the engine did not see on the wire (an end-to-end lookup
    through the search path and the node-local cache, a lease renewed late): recorded under
    ``op`` with ``outcome``, latency from ``started_ns`` to now. The reply is a ``Woke``."""

    op: str
    outcome: Outcome
    started_ns: int


Action = Sleep | ApiCall | WatchOpen | WatchNext | WatchClose | DnsQuery | Report


# -- replies: what the engine sends back -------------------------------------------------------


@dataclass(frozen=True)
class Woke:
    """A ``Sleep``, ``WatchClose`` or ``Report`` is done."""

    now_ns: int


@dataclass(frozen=True)
class ApiReply:
    """The answer to an ``ApiCall`` or ``WatchOpen``."""

    now_ns: int
    status: int
    """HTTP status; 0 when there was no HTTP answer (see ``outcome``: timeout, conn_error)."""
    outcome: Outcome
    body: JsonObj | None = None
    """The decoded JSON body, when there was one (objects, lists, Status)."""
    retry_after_s: float | None = None
    """``Retry-After`` of a 429 (or 503), in seconds."""


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch stream (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``,
    ``ERROR``: then ``object`` is a Status, e.g. code 410 when the resourceVersion is too old)."""

    now_ns: int
    type: str
    object: JsonObj


@dataclass(frozen=True)
class WatchEnd:
    """The watch stream ended: ``closed`` by the server, ``deadline`` (``WatchNext.until_ns``
    passed with no event: the stream stays open), or ``error`` (connection lost)."""

    now_ns: int
    reason: str


@dataclass(frozen=True)
class DnsAnswer:
    """What the cluster DNS said to one question."""

    outcome: Outcome
    """OK (NOERROR with or without records), NXDOMAIN, SERVFAIL, REFUSED, TIMEOUT, ..."""
    rcode: int | None
    """The DNS rcode; None when nothing usable came back (timeout, malformed)."""
    ttl_s: int | None = None
    """The smallest TTL of the answer records (or of the SOA for a negative answer), if any."""
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnsReplies:
    now_ns: int
    answers: tuple[DnsAnswer, ...]


Reply = Woke | ApiReply | WatchEvent | WatchEnd | DnsReplies

Flow = Generator[Action, Any, None]
"""A flow yields actions and is sent their replies (typed as ``Any`` so a flow can narrow each
reply to what its action returns; ``expect`` checks it)."""


def expect(reply: object, kind: type[T]) -> T:
    """``reply`` as ``kind``, or a TypeError that names the mismatch (a driver bug)."""
    if not isinstance(reply, kind):
        raise TypeError(f"expected a {kind.__name__} reply, got {type(reply).__name__}")
    return reply


class Agent(Protocol):
    """One simulated node component (a kubelet, a telemetry pod, a node's pods resolving names)."""

    kind: str
    """``kubelet``, ``telemetry``, ``pod-dns``, ``mix``: metrics and live view group by it."""
    identity: Identity
    ops: tuple[str, ...]
    """Every ``op`` name its flows may use, so recorders are set up before the run."""
    qps: float | None
    """Client-side rate limit of its API requests (client-go's token bucket), None: unlimited."""
    burst: int

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        """The concurrent flows of this agent, started at ``start_ns``."""
        ...
