"""The contract between the engine and the wire.

The engine decides *when* (an intended send time, in ns of the injected clock) and *what* (an
operation index into the target's mix). A ``Target`` sends it, stamps the actual send time, and
reports each completion to a ``CompletionSink`` (the metrics recorder). Nothing on the hot path
allocates a closure or a task per request: HTTP hands requests to a fixed pool of worker
coroutines, DNS writes datagrams from ``submit`` itself.
"""

from __future__ import annotations

import enum
import errno
import resource
from collections.abc import Callable
from typing import Protocol

from loadlab.clock import NS_PER_MS, Clock
from loadlab.errors import UsageError

DRAIN_POLL_NS = 5 * NS_PER_MS
"""How often a drain looks at ``in_flight``. A drain happens once per step, so a coarse poll costs
nothing, and 5 ms is small beside the seconds a step's drain deadline allows."""
MIN_SWEEP_NS = 10 * NS_PER_MS
"""A timeout sweep (``sweep_timeouts``) runs every timeout/10, no more often than this. Not from a
reference: timeouts exact to ~10% are exact enough to judge a step by, and 10 ms between sweeps
(at most 100 a second) costs nothing beside the requests they look at."""
FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
"""Out of file descriptors: this process (EMFILE) or the whole system (ENFILE)."""

PROBE_TIMEOUT_S = 5.0
"""How long a pre-flight probe waits for any answer before the target counts as unreachable
(exit 3). Not from a reference: a loopback server answers in milliseconds, a busy one within a
second; five leaves room for a loaded machine without making a dead target a long wait."""


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
    MALFORMED = 9  # not HTTP; or a DNS answer to our question with an rcode we cannot use
    OVERFLOW = 10  # never sent: the generator's backlog for this target was full
    TOO_LARGE = 11  # HTTP body over max_body_bytes: not read further, its connection dropped
    # New outcomes go last: recorders index arrays by value, so the others keep their slots.

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
    Outcome.TOO_LARGE: "too_large",
}


CompleteFn = Callable[[int, Outcome, int, int, int], None]
"""``CompletionSink.complete`` as a plain callable: ``(op, outcome, intended, sent, done)``."""

StepFn = Callable[[int, Outcome, int, int, int], int]
"""A closed loop's step, which a target that has ``set_step`` calls instead of its sink: it takes
one completion, ``(op, outcome, intended, sent, done)``, and returns the operation of the request
that replaces it, which the target sends at once, intended and sent at ``done``, in the same
connection or socket turn (no ``submit``); -1: none (the step completed it the slow way)."""


def bind_completion(sink: CompletionSink, bind: Callable[[CompleteFn], None]) -> None:
    """Hand ``bind`` the callable a target's completions should go to: the sink's own
    ``complete``, or, for a sink that can be followed (``session.SwitchableSink``), whatever it
    forwards to now and after every switch (a call less per completion)."""
    follow: Callable[[Callable[[CompleteFn], None]], None] | None = getattr(sink, "follow", None)
    if follow is not None:
        follow(bind)
    else:
        bind(sink.complete)


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

    fd_exhausted: bool
    """Set, never cleared, once a socket could not be opened for want of file descriptors
    (``FD_ERRNOS``): every later connect fails the same way, so the run should stop and say so."""

    stray: int
    """Answers that matched no request in flight (DNS: a wrong ID or question). They credit no
    request, and a server sending them is telling something: the summary reports the count."""

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

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        """``(op, intended_ns)`` of every request queued or in flight and not yet completed.

        Not for the hot path: a judge calls it once per step to count what a silent server never
        answered (``in_flight`` says how many; this says which, and since when).
        """
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


async def sweep_timeouts(clock: Clock, timeout_ns: int, expire: Callable[[int], None]) -> None:
    """Forever: every ``timeout_ns``/10 (at least ``MIN_SWEEP_NS``), ``expire(now - timeout_ns)``,
    which times out whatever was sent before then. One periodic sweep, not a timer per request:
    the hot path arms nothing."""
    sweep_ns = max(timeout_ns // 10, MIN_SWEEP_NS)
    while True:
        await clock.sleep_until(clock.now_ns() + sweep_ns)
        expire(clock.now_ns() - timeout_ns)


FD_MARGIN = 64
"""File descriptors a run needs besides its sockets: stdio, the event loop's epoll and self-pipe,
result files, the sim's pipes, imports that open files. A handful each; 64 leaves room."""


def check_fd_budget(needed: int) -> None:
    """Raise ``UsageError`` when the open-file limit (soft RLIMIT_NOFILE) is below ``needed``
    sockets plus ``FD_MARGIN``: better one clear line before the run than a run of CONN_ERROR."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        how = f"the hard limit is {hard}, so lower connections/sockets or raise the hard limit"
    else:
        how = f"raise it with `ulimit -n {want}` in this shell"
    raise UsageError(
        f"this run needs about {want} file descriptors ({needed} sockets + {FD_MARGIN} spare) "
        f"but the open-file limit is {soft}: {how}"
    )
