"""client-go's client-side rate limit: a token bucket, pure (no clock, no sleeping).

client-go's ``flowcontrol.NewTokenBucketRateLimiter(qps, burst)`` wraps
``golang.org/x/time/rate.NewLimiter(qps, burst)``; every request's ``Accept()`` reserves one token
(``ReserveN(now, 1)``) and sleeps for the reservation's delay: a bucket of ``burst`` tokens, full
at the start, refilled at ``qps`` tokens per second, which may go into debt so that requests queue
behind each other in order (client-go v0.32.0 ``util/flowcontrol/throttle.go``; x/time/rate
``rate.go`` ``reserveN`` and ``advance``). The kubelet's client is limited to 50 QPS, burst 100; a
client-go client that sets nothing gets 5 QPS, burst 10 (docs/control-plane-model.md, "Watches and
client rate limits"; kubelet config reference, client-go ``rest/config.go``).

Written as the equivalent virtual-scheduling form (GCRA): instead of a float count of tokens, the
bucket keeps the moment its token count would be zero. That keeps every answer an exact integer of
nanoseconds, so tests can assert exact send times.
"""

from __future__ import annotations

from loadlab.clock import NS_PER_S


class TokenBucket:
    """A token bucket of capacity ``burst`` filled at ``qps`` tokens per second, full at start.

    ``reserve(now_ns)`` takes one token and returns when the request may go: ``now_ns`` while
    tokens are left, else the moment the bucket has refilled enough to pay for this request after
    every request reserved before it.
    """

    def __init__(self, qps: float, burst: int) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be > 0, got {qps}")
        if burst < 1:
            # x/time/rate with burst 0 allows nothing at a finite rate: every reservation fails.
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.qps = qps
        self.burst = burst
        self.interval_ns = max(1, round(NS_PER_S / qps))
        """One token's worth of time, rounded to whole nanoseconds (Go durations are whole ns)."""
        self._span_ns = self.interval_ns * burst
        """How long an empty bucket takes to fill."""
        self._empty_at_ns: int | None = None
        """The moment the token count is (or was) zero; None before the first reservation (full)."""

    def reserve(self, now_ns: int) -> int:
        """Take one token; return the time at which the request may be sent (>= ``now_ns``)."""
        full_since = now_ns - self._span_ns  # "empty at" this moment means full now
        empty_at = self._empty_at_ns
        if empty_at is None or empty_at < full_since:
            empty_at = full_since  # the bucket holds at most ``burst`` tokens
        empty_at += self.interval_ns  # pay for this request
        self._empty_at_ns = empty_at
        # Tokens at ``now`` after paying: (now - empty_at) / interval. Negative: in debt, wait
        # until the debt is repaid, i.e. until the count is back at zero.
        return max(now_ns, empty_at)

    def tokens(self, now_ns: int) -> float:
        """Tokens available at ``now_ns`` (negative: reservations in debt); for tests and views."""
        if self._empty_at_ns is None:
            return float(self.burst)
        return min(float(self.burst), (now_ns - self._empty_at_ns) / self.interval_ns)
