"""Work estimates: how many seats a request takes, how long it holds them, and its memory.

Follows APF's work estimator (docs/control-plane-model.md, "the reference" below) with hold
times calibrated from its cache-vs-etcd figures. Pure functions of the request and a few counts
the server gets cheaply from its store; every coefficient lives in ``CostConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadlab.sim.overload.parameters import CostConfig

READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class RequestAttributes:
    """Who asks for what: the parts of a request APF classification and cost look at."""

    user: str
    """From "Authorization: Bearer <token>" (the token is the user name in the sim) or the
    Impersonate-User header; "" = anonymous."""
    groups: tuple[str, ...]
    """From Impersonate-Group headers; "system:masters" => exempt."""
    verb: str
    """get | list | watch | create | update | patch | delete."""
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    long_running: bool = False
    """A watch: admitted like a 1-seat request, the seat released once the watch is initialised
    (after ``serve``), not held for the stream (as real APF does)."""

    @property
    def is_mutating(self) -> bool:
        return self.verb not in READ_VERBS


@dataclass(frozen=True)
class WorkEstimate:
    """The cost of one request, decided before it is admitted."""

    seats: int
    """Seats held while executing: 1..max_seats, and at most 15% of the level's nominal seats."""
    hold_s: float
    """Service time awaited while holding the seats."""
    memory_bytes: int
    """Bytes held while in flight (a LIST: response_memory_factor x response size), else 0."""
    priority: tuple[str, str] | None = None
    """(priority level, flow id) when already classified (``OverloadModel.estimate`` does), so
    admission does not classify the request again; None: admission classifies it."""


def count_list_objects(*, stored: int, limit: int | None, selector: bool, from_cache: bool) -> int:
    """Objects APF counts for a LIST (reference, "Objects counted"); pass it as objects_scanned.

    From the watch cache: every stored object of the type, even with a field selector. From etcd
    with a selector: stored objects + limit. Otherwise 2 x limit (no limit: every stored object).
    Simplification: 2 x limit is capped at the stored count, so a small collection read with a
    large page is not charged for objects that do not exist.
    """
    if from_cache or limit is None or limit <= 0:
        return stored
    if selector:
        return stored + limit
    return min(2 * limit, stored)


def seat_cap(level_nominal_seats: int, cfg: CostConfig) -> int:
    """At most max_seats, and at most max_seats_level_fraction of the level's nominal seats
    (reference: "max 10 (also capped at 15% of the level's seats)"); never below 1."""
    if level_nominal_seats <= 0:  # exempt: no seat budget to protect
        return cfg.max_seats
    by_level = math.floor(level_nominal_seats * cfg.max_seats_level_fraction)
    return max(1, min(cfg.max_seats, by_level))


def list_seats(objects: int, level_nominal_seats: int, cfg: CostConfig) -> int:
    """ceil(objects / 100), clamped to 1..seat_cap (reference)."""
    wanted = math.ceil(max(objects, 0) / cfg.objects_per_seat)
    return max(1, min(wanted, seat_cap(level_nominal_seats, cfg)))


def mutation_seats(watchers: int, level_nominal_seats: int, cfg: CostConfig) -> int:
    """ceil(watchers / 10) seats, clamped like a LIST (reference: "watchers/10 seats (max 10)").

    Simplification: real APF holds 1 seat while executing and the watcher seats for the extra
    latency after it; we hold the larger width for the whole request.
    """
    wanted = math.ceil(max(watchers, 0) / cfg.watchers_per_seat)
    return max(1, min(wanted, seat_cap(level_nominal_seats, cfg)))


def mutation_hold_s(watchers: int, cfg: CostConfig) -> float:
    """One etcd commit plus ~5 ms per watcher (reference), the watcher part capped."""
    extra_s = min(max(watchers, 0) * cfg.watcher_hold_s, cfg.max_watcher_hold_s)
    return cfg.etcd_commit_s + extra_s


def read_hold_s(objects_scanned: int, *, from_cache: bool, cfg: CostConfig) -> float:
    """A GET or LIST: a base read plus a per-object scan cost on its path (cache ~200x cheaper)."""
    if from_cache:
        return cfg.get_hold_s + max(objects_scanned, 0) * cfg.cache_object_s
    return cfg.etcd_get_s + max(objects_scanned, 0) * cfg.etcd_object_s


def estimate_work(
    attrs: RequestAttributes,
    *,
    objects_scanned: int,
    response_bytes: int,
    from_cache: bool,
    watchers: int,
    level_nominal_seats: int,
    cfg: CostConfig,
    response_memory_factor: float,
) -> WorkEstimate:
    """The work estimate of one request on a level with ``level_nominal_seats`` seats."""
    if attrs.verb == "list":
        return WorkEstimate(
            seats=list_seats(objects_scanned, level_nominal_seats, cfg),
            hold_s=read_hold_s(objects_scanned, from_cache=from_cache, cfg=cfg),
            memory_bytes=int(response_memory_factor * max(response_bytes, 0)),
        )
    if attrs.verb == "watch" or attrs.long_running:
        # Initialising a watch costs a read of what it sends first; then the seat is released.
        return WorkEstimate(
            seats=1, hold_s=read_hold_s(0, from_cache=True, cfg=cfg), memory_bytes=0
        )
    if attrs.is_mutating:
        return WorkEstimate(
            seats=mutation_seats(watchers, level_nominal_seats, cfg),
            hold_s=mutation_hold_s(watchers, cfg),
            memory_bytes=0,
        )
    # GET (and anything unknown that reads): 1 seat (reference: "GET = 1 seat").
    return WorkEstimate(
        seats=1, hold_s=read_hold_s(0, from_cache=from_cache, cfg=cfg), memory_bytes=0
    )
