"""Every number of the sim's overload model, with its source, in one validated place.

Defaults come from docs/control-plane-model.md ("the reference" below), which links the
Kubernetes 1.32 sources. Each field stays configurable (a profile may override any of them).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PriorityLevelConfig(BaseModel):
    """One APF priority level (a PriorityLevelConfiguration, simplified)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    shares: int = Field(default=0, ge=0)
    """Nominal concurrency shares; nominal seats = ceil(total_seats x shares / sum of shares)."""
    queues: int = Field(default=0, ge=0)
    """Number of queues of this level (0 with ``reject``: no queueing)."""
    hand_size: int = Field(default=0, ge=0)
    """Queues dealt to each flow by shuffle sharding; a request joins the shortest of its hand."""
    queue_length_limit: int = Field(default=0, ge=0)
    """Requests one queue holds at most; beyond, the request is rejected as "queue-full"."""
    lendable_percent: int = Field(default=0, ge=0, le=100)
    """Share of the nominal seats other levels may borrow while this level leaves them idle."""
    exempt: bool = False
    """Exempt from limits (system:masters): never queued, never rejected."""
    reject: bool = False
    """Reject at once when the seats are used (no queue): the catch-all level."""

    @model_validator(mode="after")
    def _check_queueing(self) -> PriorityLevelConfig:
        if self.exempt or self.reject:
            return self
        if self.queues < 1 or not 1 <= self.hand_size <= self.queues:
            raise ValueError(
                f"priority level {self.name!r}: a queueing level needs queues >= 1 and "
                f"1 <= hand_size <= queues (got queues={self.queues}, hand_size={self.hand_size})"
            )
        return self


def default_priority_levels() -> tuple[PriorityLevelConfig, ...]:
    """The Kubernetes default levels (reference, "With APF (default)" table)."""
    # reference table: name, shares, queues, handSize, queueLengthLimit, lendable %.
    queueing = (
        ("node-high", 40, 64, 6, 50, 25),
        ("system", 30, 64, 6, 50, 33),
        ("leader-election", 10, 16, 4, 50, 0),
        ("workload-high", 40, 128, 6, 50, 50),
        ("workload-low", 100, 128, 6, 50, 90),
        ("global-default", 20, 128, 6, 50, 50),
    )
    return (
        PriorityLevelConfig(name="exempt", exempt=True),
        *(
            PriorityLevelConfig(
                name=name,
                shares=shares,
                queues=queues,
                hand_size=hand,
                queue_length_limit=limit,
                lendable_percent=lendable,
            )
            for name, shares, queues, hand, limit, lendable in queueing
        ),
        # reference: catch-all, 5 shares, "reject, no queue", 0% lendable.
        PriorityLevelConfig(name="catch-all", shares=5, reject=True, lendable_percent=0),
    )


class CostConfig(BaseModel):
    """Work estimate coefficients: seats and hold time per request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objects_per_seat: int = Field(default=100, ge=1)
    """reference: LIST seats = ceil(objects / 100)."""
    max_seats: int = Field(default=10, ge=1)
    """reference: a LIST takes at most 10 seats; mutations add at most 10 watcher seats."""
    max_seats_level_fraction: float = Field(default=0.15, gt=0, le=1)
    """reference: seats also capped at 15% of the level's nominal seats."""
    watchers_per_seat: int = Field(default=10, ge=1)
    """reference: mutations add watchers/10 seats (max 10)."""
    watcher_hold_s: float = Field(default=0.005, ge=0)
    """reference: ~5 ms per watcher of extra hold for a mutation."""
    max_watcher_hold_s: float = Field(default=1.0, ge=0)
    """Cap on that extra hold. The reference gives none; 5 ms x 5,000 node watchers would be 25 s,
    so we cap at the 1 s mutating-call SLO (reference, "Official SLOs"): past it the write
    already breaks its SLO, and a longer hold would only make the seat math explode."""
    get_hold_s: float = Field(default=0.001, ge=0)
    """A GET from the watch cache: ~1 ms (an assumption, listed in the reference)."""
    cache_object_s: float = Field(default=0.05 / 100_000, ge=0)
    """Per object scanned on the watch-cache path: reference, 4k nodes / 100k pods, a node-filtered
    pod LIST took ~0.05 s from the cache -> 0.05 s / 100k objects = 0.5 us per object."""
    etcd_object_s: float = Field(default=10.0 / 100_000, ge=0)
    """Per object scanned on the etcd path: same reference, ~10 s from etcd -> 100 us per object
    (the ~200x cache/etcd ratio the reference names)."""
    etcd_commit_s: float = Field(default=0.025, ge=0)
    """Base hold of a mutation (one etcd commit): reference, etcd backend commit p99 < 25 ms."""
    etcd_get_s: float = Field(default=0.010, ge=0)
    """A GET that misses the cache (consistent read from etcd): reference, fsync p99 < 10 ms as
    the order of one etcd round trip (the reference gives no GET latency; an assumption)."""


class OverloadConfig(BaseModel):
    """The sim API server's overload protection and failure model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apf_enabled: bool = True
    """reference: APF is on by default; off -> max-inflight limits."""
    total_seats: int = Field(default=600, ge=1)
    """reference: 600 seats per API server (--max-requests-inflight 400 + mutating 200)."""
    priority_levels: tuple[PriorityLevelConfig, ...] = Field(
        default_factory=default_priority_levels
    )
    max_requests_inflight: int = Field(default=400, ge=1)
    """reference: --max-requests-inflight 400 (read-only requests, APF off)."""
    max_mutating_inflight: int = Field(default=200, ge=1)
    """reference: --max-mutating-requests-inflight 200 (APF off)."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """reference: --request-timeout 60s."""
    queue_wait_fraction: float = Field(default=0.25, gt=0, le=1)
    """reference: a queued request waits at most a quarter of its deadline (~15 s)."""
    no_apf_retry_after_s: int = Field(default=1, ge=1)
    """reference: without APF, excess gets 429 with Retry-After: 1."""
    retry_after_min_s: int = Field(default=1, ge=1)
    """reference: APF Retry-After starts at 1 s ..."""
    retry_after_max_s: int = Field(default=32, ge=1)
    """reference: ... doubles under sustained drops, capped at 32 s."""
    retry_after_interval_s: float = Field(default=1.0, gt=0)
    """Interval of the Retry-After controller: doubles at most once, or falls by 1, per interval
    (reference, "Retry-After": the tracker counts drops per second, so a 1 s interval)."""
    cost: CostConfig = Field(default_factory=CostConfig)
    memory_limit_mb: float = Field(default=16_384.0, gt=0)
    """Memory at which the sim API server is killed (OOM). An assumption: the reference gives no
    limit, only KEP-3157's 16 informers listing ~400 MB killing a test API server; 16 GiB is a
    common control-plane node size. Set it to the machine you model."""
    response_memory_factor: float = Field(default=5.0, ge=0)
    """reference: memory ~5x the response size while a LIST is in flight (KEP-3157)."""
    restart_s: float = Field(default=30.0, ge=0)
    """Time the sim API server stays down after an OOM. An assumption (the reference gives no
    number); the server's own start-up (watch-cache warm-up) adds to it."""

    @model_validator(mode="after")
    def _check_levels(self) -> OverloadConfig:
        names = [level.name for level in self.priority_levels]
        if len(set(names)) != len(names):
            raise ValueError(f"priority level names must be unique, got {names}")
        if self.retry_after_max_s < self.retry_after_min_s:
            raise ValueError("retry_after_max_s must be >= retry_after_min_s")
        if self.apf_enabled and self.total_shares == 0:
            raise ValueError("with APF on, some non-exempt priority level needs shares > 0")
        return self

    @property
    def total_shares(self) -> int:
        """Sum of the shares of the non-exempt levels (245 by default)."""
        return sum(level.shares for level in self.priority_levels if not level.exempt)

    def nominal_seats(self, level: PriorityLevelConfig) -> int:
        """ceil(total_seats x shares / total shares): the reference's "nominal seats" column."""
        if level.exempt:
            return 0
        return math.ceil(self.total_seats * level.shares / self.total_shares)

    @property
    def queue_wait_s(self) -> float:
        """Longest queue wait before a 429: queue_wait_fraction x request_timeout_s (15 s)."""
        return self.queue_wait_fraction * self.request_timeout_s

    @property
    def memory_limit_bytes(self) -> int:
        return int(self.memory_limit_mb * 1024 * 1024)
