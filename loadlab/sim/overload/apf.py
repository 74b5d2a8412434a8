"""API Priority and Fairness, simplified: classification, shuffle-sharded queues, seat admission.

What is faithful (docs/control-plane-model.md, "APF"): the default levels and who goes where; seats
split by nominal shares; one flow per user; shuffle sharding (a deterministic hand of queues per
flow, the shortest one joined); queue-length limits; the catch-all level rejecting without a
queue; a quarter-of-the-deadline queue wait; the adaptive Retry-After of
dropped_requests_tracker.go.

Simplifications (documented, on purpose):
- Dispatch inside a level is round-robin over its non-empty queues, not fair queueing on virtual
  time; a head request wider than the free seats blocks its level (no skipping), like APF.
- Borrowing is instantaneous: a level may run beyond its nominal seats while other levels leave
  lendable seats idle (idle lendable seats of the others minus what is already borrowed). Real APF
  re-balances limits every 10 s. A lender that gets busy again keeps its nominal seats, so the
  total can briefly exceed the server's seats until borrowers finish; nothing is pre-empted.
- When seats free up, levels are served in table order after the level that freed them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.k8s.objects import NODE_LEASE_NAMESPACE
from loadlab.sim.overload.cost import RequestAttributes
from loadlab.sim.overload.parameters import OverloadConfig, PriorityLevelConfig
from loadlab.sim.promtext import PromRegistry

# dropped_requests_tracker.go: retryAfter doubles when the drops in the last retryAfter seconds
# reach 3 x retryAfter, and falls by 1 when they are fewer than retryAfter.
DOUBLE_WHEN_DROPS_REACH_X_RETRY_AFTER = 3

# docs/control-plane-model.md: kubelet node and lease requests -> node-high
NODE_HIGH_RESOURCES = frozenset({"nodes"})
LEADER_ELECTION_USERS = frozenset({"system:kube-controller-manager", "system:kube-scheduler"})
LEADER_ELECTION_RESOURCES = frozenset({"leases", "endpoints", "configmaps"})
# apiserver_flowcontrol_request_wait_duration_seconds buckets (k8s.io/apiserver
# pkg/util/flowcontrol/metrics/metrics.go, Kubernetes 1.32).
QUEUE_WAIT_BUCKETS_S = (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)


class Rejected(Exception):
    """APF or max-inflight turned the request away: answer HTTP 429 with ``Retry-After``."""

    def __init__(self, retry_after_s: int, reason: str, priority_level: str = "") -> None:
        super().__init__(
            f"too many requests ({reason} at priority level {priority_level or '-'}), "
            f"retry after {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s
        self.reason = reason
        """queue-full | time-out | concurrency-limit | apiserver-restart."""
        self.priority_level = priority_level


def classify(attrs: RequestAttributes, level_names: Collection[str]) -> tuple[str, str]:
    """(priority level, flow id) of a request, per docs/control-plane-model.md ("Who lands...").

    Falls to catch-all only when the preferred level is not configured.
    """
    user = attrs.user or "system:anonymous"
    if "system:masters" in attrs.groups:
        preferred = "exempt"
    elif user.startswith("system:node:") or "system:nodes" in attrs.groups:
        is_lease = attrs.resource == "leases" and attrs.namespace == NODE_LEASE_NAMESPACE
        preferred = "node-high" if is_lease or attrs.resource in NODE_HIGH_RESOURCES else "system"
    elif user in LEADER_ELECTION_USERS:
        elects = attrs.resource in LEADER_ELECTION_RESOURCES and attrs.namespace == "kube-system"
        preferred = "leader-election" if elects else "workload-high"
    elif user.startswith("system:serviceaccount:kube-system:"):
        preferred = "workload-high"
    elif user.startswith("system:serviceaccount:"):
        preferred = "workload-low"
    else:
        preferred = "global-default"
    if preferred in level_names:
        level = preferred
    elif "catch-all" in level_names:
        level = "catch-all"
    else:
        level = [name for name in level_names if name != "exempt"][-1]
    return level, f"{level}/{user}"


def deal_hand(flow_id: str, queues: int, hand_size: int) -> tuple[int, ...]:
    """Shuffle sharding: ``hand_size`` distinct queue indices from a stable hash of the flow.

    Deals like k8s shufflesharding.Dealer: successive mixed-radix digits of the hash pick cards
    from a shrinking deck, so every flow gets the same hand on every run.
    """
    digest = hashlib.blake2b(flow_id.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    deck = list(range(queues))
    hand: list[int] = []
    for _ in range(min(hand_size, queues)):
        value, pick = divmod(value, len(deck))
        hand.append(deck.pop(pick))
    return tuple(hand)


class RetryAfterTracker:
    """Adaptive Retry-After of one priority level (k8s dropped_requests_tracker.go).

    Drops are bucketed per interval (1 s). When a drop opens a new interval: if the drops of the
    last ``retry_after`` intervals reach 3 x retry_after and the last increase is at least
    retry_after intervals old, it doubles (capped); if they are fewer than retry_after, it falls
    by one. So it doubles at most once per interval, as the real tracker does, and in fact at most
    once per current Retry-After.
    """

    def __init__(self, min_s: int, max_s: int) -> None:
        self._min_s = min_s
        self._max_s = max_s
        self.retry_after_s = min_s
        self._history: deque[tuple[int, int]] = deque()  # (interval index, drops)
        self._current: int | None = None
        self._current_count = 0
        self._last_increase: int | None = None

    def record_drop(self, interval: int) -> None:
        if interval == self._current:
            self._current_count += 1
            return
        if self._current is not None:
            self._history.append((self._current, self._current_count))
        self._current, self._current_count = interval, 1
        horizon = min(2 * self.retry_after_s, self._max_s)
        while self._history and interval - self._history[0][0] > horizon:
            self._history.popleft()
        self._update(interval)

    def _update(self, now: int) -> None:
        ra = self.retry_after_s
        dropped = sum(n for t, n in self._history if now - t <= ra and t < now)
        since_increase = ra if self._last_increase is None else now - self._last_increase
        if since_increase >= ra and dropped >= DOUBLE_WHEN_DROPS_REACH_X_RETRY_AFTER * ra:
            self.retry_after_s = min(2 * ra, self._max_s)
            self._last_increase = now
        elif dropped < ra and ra > self._min_s:
            self.retry_after_s = ra - 1


@dataclass(frozen=True)
class Ticket:
    """Seats held by one executing request; hand it back to ``release`` exactly once."""

    level: str
    queue_index: int  # -1: dispatched without queueing
    seats: int
    generation: int


@dataclass(eq=False)
class _Waiter:
    seats: int
    queue_index: int
    future: asyncio.Future[Ticket]


@dataclass(eq=False)
class PriorityLevel:
    """Live state of one level."""

    config: PriorityLevelConfig
    nominal_seats: int
    lendable_seats: int
    retry_after: RetryAfterTracker
    queues: list[deque[_Waiter]] = field(default_factory=list)
    queue_executing_seats: list[int] = field(default_factory=list)
    executing_seats: int = 0
    executing_requests: int = 0
    queued: int = 0
    rr_next: int = 0

    @property
    def name(self) -> str:
        return self.config.name


class FairQueueing:
    """Seat admission over all priority levels of one API server."""

    def __init__(self, config: OverloadConfig, clock: Clock, metrics: PromRegistry) -> None:
        self._config = config
        self._clock = clock
        self._generation = 0
        self.levels: dict[str, PriorityLevel] = {}
        for cfg in config.priority_levels:
            nominal = config.nominal_seats(cfg)
            level = PriorityLevel(
                config=cfg,
                nominal_seats=nominal,
                lendable_seats=nominal * cfg.lendable_percent // 100,
                retry_after=RetryAfterTracker(config.retry_after_min_s, config.retry_after_max_s),
                queues=[deque() for _ in range(0 if cfg.reject else cfg.queues)],
                queue_executing_seats=[0] * (0 if cfg.reject else cfg.queues),
            )
            self.levels[cfg.name] = level
        self._rejected = metrics.counter(
            "apiserver_flowcontrol_rejected_requests_total",
            "Number of requests rejected by API Priority and Fairness subsystem",
            ("priority_level", "flow_schema", "reason"),
        )
        self._dispatched = metrics.counter(
            "apiserver_flowcontrol_dispatched_requests_total",
            "Number of requests executed by API Priority and Fairness subsystem",
            ("priority_level", "flow_schema"),
        )
        self._wait = metrics.histogram(
            "apiserver_flowcontrol_request_wait_duration_seconds",
            "Length of time a request spent waiting in its queue",
            ("priority_level", "flow_schema", "execute"),
            QUEUE_WAIT_BUCKETS_S,
        )
        nominal_seats = metrics.gauge(
            "apiserver_flowcontrol_nominal_limit_seats",
            "Nominal number of execution seats configured for each priority level",
            ("priority_level",),
        )
        for level in self.levels.values():
            nominal_seats.set(level.nominal_seats, level.name)
        self._inqueue = metrics.gauge(
            "apiserver_flowcontrol_current_inqueue_requests",
            "Number of requests currently pending in queues of the API Priority and Fairness "
            "subsystem",
            ("priority_level",),
        )
        self._seats = metrics.gauge(
            "apiserver_flowcontrol_current_executing_seats",
            "Concurrency (number of seats) occupied by the currently executing requests in the "
            "API Priority and Fairness subsystem",
            ("priority_level",),
        )
        for level in self.levels.values():
            self._publish(level)

    def classify(self, attrs: RequestAttributes) -> tuple[str, str]:
        return classify(attrs, self.levels.keys())

    async def acquire(
        self, level_name: str, flow_id: str, seats: int, flow_schema: str = ""
    ) -> Ticket:
        """Wait for ``seats`` on the level (queueing at most the queue wait), or raise Rejected.

        ``flow_schema`` only labels the metrics (dispatched, rejected, wait duration).
        """
        level = self.levels[level_name]
        schema = flow_schema or level_name
        if not level.config.exempt and level.nominal_seats > 0:
            seats = max(1, min(seats, level.nominal_seats))
        if level.config.exempt or (level.queued == 0 and self._fits(level, seats)):
            return self._dispatched_now(level, schema, self._start(level, -1, seats), None)
        if level.config.reject or not level.queues:
            raise self._reject(level, schema, "concurrency-limit", None)
        queue_index = self._choose_queue(level, flow_id)
        if len(level.queues[queue_index]) >= level.config.queue_length_limit:
            raise self._reject(level, schema, "queue-full", None)
        waiter = _Waiter(seats, queue_index, asyncio.get_running_loop().create_future())
        level.queues[queue_index].append(waiter)
        level.queued += 1
        self._publish(level)
        queued_ns = self._clock.now_ns()
        deadline_ns = queued_ns + int(self._config.queue_wait_s * NS_PER_S)
        timer = asyncio.ensure_future(self._clock.sleep_until(deadline_ns))
        try:
            await asyncio.wait((waiter.future, timer), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the caller went away (client disconnect, shutdown)
            timer.cancel()
            if not waiter.future.done():  # APF counts a request that left its queue
                self._note_rejected(level, schema, "cancelled", queued_ns)
            self._abandon(level, waiter)
            raise
        timer.cancel()
        if waiter.future.done():
            # A Rejected set by reset() is raised here.
            return self._dispatched_now(level, schema, waiter.future.result(), queued_ns)
        self._dequeue(level, waiter)
        waiter.future.cancel()
        raise self._reject(level, schema, "time-out", queued_ns)

    def release(self, ticket: Ticket) -> None:
        """Give the seats back and dispatch whoever now fits (a stale ticket is ignored)."""
        if ticket.generation != self._generation:
            return
        level = self.levels[ticket.level]
        level.executing_seats -= ticket.seats
        level.executing_requests -= 1
        if ticket.queue_index >= 0:
            level.queue_executing_seats[ticket.queue_index] -= ticket.seats
        self._publish(level)
        self._dispatch_all(first=level)

    def reset(self, retry_after_s: int) -> None:
        """A restart: queued requests get Rejected("apiserver-restart"), all seats are free."""
        self._generation += 1
        for level in self.levels.values():
            for queue in level.queues:
                for waiter in queue:
                    if not waiter.future.done():
                        waiter.future.set_exception(
                            Rejected(retry_after_s, "apiserver-restart", level.name)
                        )
                queue.clear()
            level.queue_executing_seats = [0] * len(level.queues)
            level.queued = level.executing_seats = level.executing_requests = 0
            self._publish(level)

    # -- internals -----------------------------------------------------------------------------

    def _fits(self, level: PriorityLevel, seats: int) -> bool:
        """Nominal seats, plus what other levels lend while they leave it idle."""
        beyond = level.executing_seats + seats - level.nominal_seats
        if beyond <= 0:
            return True
        idle_lendable = 0
        borrowed = 0
        for other in self.levels.values():
            if other is level or other.config.exempt:
                continue
            free = max(0, other.nominal_seats - other.executing_seats)
            idle_lendable += min(other.lendable_seats, free)
            borrowed += max(0, other.executing_seats - other.nominal_seats)
        return beyond <= idle_lendable - borrowed

    def _choose_queue(self, level: PriorityLevel, flow_id: str) -> int:
        hand = deal_hand(flow_id, len(level.queues), level.config.hand_size)

        def load(i: int) -> int:
            queued_seats = sum(w.seats for w in level.queues[i])
            return queued_seats + level.queue_executing_seats[i]

        return min(hand, key=load)  # min() keeps the first of equals: hand order breaks ties

    def _start(self, level: PriorityLevel, queue_index: int, seats: int) -> Ticket:
        level.executing_seats += seats
        level.executing_requests += 1
        if queue_index >= 0:
            level.queue_executing_seats[queue_index] += seats
        self._publish(level)
        return Ticket(level.name, queue_index, seats, self._generation)

    def _dispatch_all(self, first: PriorityLevel) -> None:
        self._dispatch(first)
        for level in self.levels.values():
            if level is not first and level.queued:
                self._dispatch(level)

    def _dispatch(self, level: PriorityLevel) -> None:
        """Round-robin over the level's non-empty queues while the head request fits."""
        count = len(level.queues)
        for _ in range(level.queued):
            index = next(
                (
                    (level.rr_next + k) % count
                    for k in range(count)
                    if level.queues[(level.rr_next + k) % count]
                ),
                None,
            )
            if index is None:
                break
            waiter = level.queues[index][0]
            if not self._fits(level, waiter.seats):
                break
            level.queues[index].popleft()
            level.queued -= 1
            level.rr_next = (index + 1) % count
            waiter.future.set_result(self._start(level, index, waiter.seats))
        self._publish(level)

    def _dequeue(self, level: PriorityLevel, waiter: _Waiter) -> None:
        queue = level.queues[waiter.queue_index]
        if waiter in queue:
            queue.remove(waiter)
            level.queued -= 1
            self._publish(level)

    def _abandon(self, level: PriorityLevel, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self._dequeue(level, waiter)
            waiter.future.cancel()
        elif not waiter.future.cancelled() and waiter.future.exception() is None:
            self.release(waiter.future.result())  # granted just before the caller left

    def _dispatched_now(
        self, level: PriorityLevel, schema: str, ticket: Ticket, queued_ns: int | None
    ) -> Ticket:
        """Count a dispatch and its queue wait (0 when it never queued)."""
        self._dispatched.inc(level.name, schema)
        self._wait.observe(self._waited_s(queued_ns), level.name, schema, "true")
        return ticket

    def _note_rejected(
        self, level: PriorityLevel, schema: str, reason: str, queued_ns: int | None
    ) -> None:
        self._rejected.inc(level.name, schema, reason)
        self._wait.observe(self._waited_s(queued_ns), level.name, schema, "false")

    def _waited_s(self, queued_ns: int | None) -> float:
        """Seconds since a request joined its queue at ``queued_ns``; 0 if it never queued."""
        return 0.0 if queued_ns is None else (self._clock.now_ns() - queued_ns) / NS_PER_S

    def _reject(
        self, level: PriorityLevel, schema: str, reason: str, queued_ns: int | None
    ) -> Rejected:
        interval_ns = int(self._config.retry_after_interval_s * NS_PER_S)
        level.retry_after.record_drop(self._clock.now_ns() // interval_ns)
        self._note_rejected(level, schema, reason, queued_ns)
        return Rejected(level.retry_after.retry_after_s, reason, level.name)

    def _publish(self, level: PriorityLevel) -> None:
        self._inqueue.set(level.queued, level.name)
        self._seats.set(level.executing_seats, level.name)
