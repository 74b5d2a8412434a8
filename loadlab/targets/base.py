"""The contract between the engine and the wire.

The engine decides *when* (an intended send time, in ns of the injected clock) and *what* (an
operation index into the target's mix). A ``Target`` sends it, stamps the actual send time, and
reports each completion to a ``CompletionSink`` (the metrics recorder). Nothing on the hot path
allocates a closure or a task per request: HTTP hands requests to a fixed pool of worker
coroutines, DNS writes datagrams from ``submit`` itself.
"""

from __future__ import annotations

import enum
from typing import Protocol

from loadlab.clock import NS_PER_MS, Clock

DRAIN_POLL_NS = 5 * NS_PER_MS
"""How often a drain looks at ``in_flight``. A drain happens once per step, so a coarse poll costs
nothing, and 5 ms is small beside the seconds a step's drain deadline allows."""


class Outcome(enum.IntEnum):
    """How one request ended. Small stable ints, so recorders can index arrays by them."""

    OK = 0  # HTTP 2xx, DNS NOERROR
    THROTTLED = 1  # HTTP 429 (APF or max-inflight rejection)
    CLIENT_ERROR = 2  # other HTTP 4xx
    SERVER_ERROR = 3  # HTTP 5xx
    TIMEOUT = 4  # no answer within the target's timeout
    CONN_ERROR = 5  # refused, reset, closed mid-response
    NXDOMAIN = 6  # DNS name does not exist
    SERVFAIL = 7  # DNS server failure
    REFUSED = 8  # DNS refused
    MALFORMED = 9  # an answer that is not HTTP/DNS, or not for our question
    OVERFLOW = 10  # never sent: the generator's backlog for this target was full

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Outcome.OK: "ok",
    Outcome.THROTTLED: "429",
    Outcome.CLIENT_ERROR: "4xx",
    Outcome.SERVER_ERROR: "5xx",
    Outcome.TIMEOUT: "timeout",
    Outcome.CONN_ERROR: "conn_error",
    Outcome.NXDOMAIN: "nxdomain",
    Outcome.SERVFAIL: "servfail",
    Outcome.REFUSED: "refused",
    Outcome.MALFORMED: "malformed",
    Outcome.OVERFLOW: "overflow",
}


class CompletionSink(Protocol):
    """Receives every finished request. Called on the event loop thread; must not block."""

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        """``op`` indexes the target's mix; times are from the engine's clock, in ns."""
        ...


class Target(Protocol):
    """Something the engine can send operations to (an API server, a DNS resolver)."""

    name: str
    """Short name used in metric keys and file names: ``api`` or ``dns``."""

    op_names: tuple[str, ...]
    """Name of each operation in the mix; ``op`` indices refer to this tuple."""

    async def open(self, sink: CompletionSink) -> None:
        """Connect (or prepare sockets) and remember where completions go."""
        ...

    def submit(self, op: int, intended_ns: int) -> None:
        """Send operation ``op`` now, without waiting. Its completion goes to the sink."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued to send) and not yet completed."""
        ...

    async def drain(self, deadline_ns: int) -> None:
        """Wait until nothing is in flight or the deadline passes (then time out the rest)."""
        ...

    async def close(self) -> None:
        """Release sockets. Requests still in flight complete as TIMEOUT."""
        ...


async def wait_until_idle(clock: Clock, target: Target, deadline_ns: int) -> None:
    """Wait until ``target`` has nothing in flight or ``deadline_ns`` passes, polling ``in_flight``.

    The first half of every ``drain``; the target then times out whatever is left.
    """
    while target.in_flight and clock.now_ns() < deadline_ns:
        await clock.sleep_until(min(deadline_ns, clock.now_ns() + DRAIN_POLL_NS))
