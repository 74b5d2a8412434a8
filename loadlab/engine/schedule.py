"""Schedules: pure streams of intended send times, in ns of the engine's clock.

A schedule knows nothing about clocks or sockets. It is built with a start and an end time (both in
ns of whatever clock the runner uses) and hands out intended times one by one, in order, until the
end: ``next_ns()`` returns ``None`` once the next time would be at or after ``end_ns``. Randomness
comes from a seeded ``random.Random``, so a schedule is reproducible run to run.

Shapes: a constant rate (wrk2's model), Poisson arrivals (independent clients), and N agents each
on its own jittered period (kubelets renewing their leases), merged into one ordered stream.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Protocol

from loadlab.clock import NS_PER_S


class Schedule(Protocol):
    """An ordered, finite stream of intended send times."""

    def next_ns(self) -> int | None:
        """The next intended time (never smaller than the previous one), or None when finished."""
        ...

    def skip_until(self, cutoff_ns: int) -> int:
        """Drop every intended time before ``cutoff_ns`` (and before the end) in one go; return
        how many were dropped. A runner that fell behind calls this instead of drawing each late
        time: at an absurd rate, drawing them one by one would never catch up with the clock."""
        ...


def _check_window(start_ns: int, end_ns: int) -> None:
    if end_ns < start_ns:
        raise ValueError(f"schedule ends ({end_ns}) before it starts ({start_ns})")


class ConstantRate:
    """Sends evenly spaced at ``rate_per_s``: the k-th intended time is ``start + k / rate``.

    Times are computed from k rather than accumulated, so rounding never drifts.
    """

    def __init__(self, rate_per_s: float, *, start_ns: int, end_ns: int) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        _check_window(start_ns, end_ns)
        self._interval_ns = NS_PER_S / rate_per_s
        self._start_ns = start_ns
        self._end_ns = end_ns
        self._k = 0

    def next_ns(self) -> int | None:
        t_ns = self._start_ns + int(self._k * self._interval_ns)
        if t_ns >= self._end_ns:
            return None
        self._k += 1
        return t_ns

    def skip_until(self, cutoff_ns: int) -> int:
        cutoff_ns = min(cutoff_ns, self._end_ns)
        if cutoff_ns <= self._start_ns:
            return 0
        # The first k whose time start + int(k * interval) is at or after the cutoff.
        k = max(self._k, math.ceil((cutoff_ns - self._start_ns) / self._interval_ns))
        while k > self._k and self._start_ns + int((k - 1) * self._interval_ns) >= cutoff_ns:
            k -= 1  # float rounding of the ceil: step back to the exact first time
        skipped = k - self._k
        self._k = k
        return skipped


class PoissonArrivals:
    """Independent arrivals at mean ``rate_per_s``: exponential gaps drawn from a seeded RNG."""

    def __init__(self, rate_per_s: float, *, start_ns: int, end_ns: int, seed: int) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        _check_window(start_ns, end_ns)
        self._rng = random.Random(seed)
        self._mean_gap_ns = NS_PER_S / rate_per_s
        self._t_ns = float(start_ns)
        self._end_ns = end_ns

    def next_ns(self) -> int | None:
        # Accumulate in float ns: 2**53 ns is 104 days, far beyond any run.
        self._t_ns += self._rng.expovariate(1.0) * self._mean_gap_ns
        t_ns = int(self._t_ns)
        return t_ns if t_ns < self._end_ns else None

    def skip_until(self, cutoff_ns: int) -> int:
        cutoff_ns = min(cutoff_ns, self._end_ns)
        if cutoff_ns <= self._t_ns:
            return 0
        # Poisson arrivals are memoryless: restarting the process at the cutoff gives later times
        # exactly the right distribution. The count skipped is its expectation, not a draw.
        skipped = round((cutoff_ns - self._t_ns) / self._mean_gap_ns)
        self._t_ns = float(cutoff_ns)
        return skipped


class JitteredAgents:
    """``agents`` periodic senders merged into one ordered stream.

    Each agent's first send falls uniformly in ``[start, start + period)`` (agents started at
    different times), and each next one comes ``period * (1 + U[0, jitter))`` later, the shape of
    client-go ``wait.JitterUntil(f, period, jitter, ...)``: ``wait.Jitter`` returns
    ``d + rand.Float64() * maxFactor * d``. The kubelet renews its lease every 10 s with jitter
    0.04 (component-helpers lease controller: ``wait.JitterUntil(c.sync, c.renewInterval, 0.04,
    ...)``; kubelet: renewInterval = 0.25 * nodeLeaseDurationSeconds, default 40 s).

    ``last_agent`` is the index of the agent whose time ``next_ns`` returned last, for callers that
    give each agent its own identity.
    """

    def __init__(
        self,
        agents: int,
        period_s: float,
        *,
        jitter: float,
        start_ns: int,
        end_ns: int,
        seed: int,
    ) -> None:
        if agents <= 0:
            raise ValueError(f"need at least one agent, got {agents}")
        if period_s <= 0:
            raise ValueError(f"period must be positive, got {period_s}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter is a fraction in [0, 1), got {jitter}")
        _check_window(start_ns, end_ns)
        self._rng = random.Random(seed)
        self._period_ns = period_s * NS_PER_S
        self._jitter = jitter
        self._end_ns = end_ns
        # (next intended time, agent index): the index breaks ties deterministically.
        self._heap = [
            (start_ns + int(self._rng.random() * self._period_ns), agent) for agent in range(agents)
        ]
        heapq.heapify(self._heap)
        self.last_agent = -1

    def next_ns(self) -> int | None:
        t_ns, agent = self._heap[0]
        if t_ns >= self._end_ns:
            return None
        gap_ns = int(self._period_ns * (1.0 + self._rng.random() * self._jitter))
        heapq.heapreplace(self._heap, (t_ns + gap_ns, agent))
        self.last_agent = agent
        return t_ns

    def skip_until(self, cutoff_ns: int) -> int:
        # Bounded by the agents' own rate (a few per agent per period): drawing them is cheap.
        skipped = 0
        while self._heap[0][0] < min(cutoff_ns, self._end_ns):
            self.next_ns()
            skipped += 1
        return skipped
