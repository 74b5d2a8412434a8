"""Synthetic servers of known capacity, answering a step with its window stats."""

from __future__ import annotations

import random
from dataclasses import dataclass

from loadlab.metrics.stats import LatencySummary, WindowStats

PLANNED = 1_000_000
OPS = ("get-lease", "list-pods")


def latency(p99_ms: float, count: int = 1000) -> LatencySummary:
    return LatencySummary(
        count=count,
        p50_ms=p99_ms / 4,
        p90_ms=p99_ms / 2,
        p99_ms=p99_ms,
        p999_ms=p99_ms * 1.5,
        max_ms=p99_ms * 2,
    )


def make_stats(
    *,
    offered: float,
    sent_ratio: float = 1.0,
    achieved: float | None = None,
    error_rate: float = 0.0,
    p99_ms: float = 20.0,
    p99_by_op: dict[str, float] | None = None,
    lag_p99_ms: float = 1.0,
    target: str = "api",
) -> WindowStats:
    """Window stats of a step with the given plain numbers.

    The window always plans PLANNED requests (its duration follows from the rate), so counts
    are large enough that rounding them never decides a check.
    """
    duration_s = PLANNED / offered
    planned = PLANNED
    sent = round(planned * sent_ratio)
    completed = sent
    errors = round(completed * error_rate)
    achieved_per_s = offered if achieved is None else achieved
    ok = min(round(achieved_per_s * duration_s), completed - errors)
    by_op = p99_by_op or dict.fromkeys(OPS, p99_ms)
    return WindowStats(
        target=target,
        duration_s=duration_s,
        planned=planned,
        sent=sent,
        skipped=planned - sent,
        completed=completed,
        ok=ok,
        errors=errors,
        errors_by_outcome={"429": errors} if errors else {},
        achieved_per_s=ok / duration_s,
        error_rate=errors / completed if completed else 0.0,
        latency_by_op={op: latency(ms) for op, ms in by_op.items()},
        latency=latency(max(by_op.values())),
        lag_p50_ms=lag_p99_ms / 2,
        lag_p99_ms=lag_p99_ms,
    )


@dataclass(frozen=True)
class SaturatingServer:
    """achieved = min(offered, C) x (1 + noise); past C the excess is rejected (429) and p99
    climbs steeply; the generator can send at most ``generator_max_per_s``."""

    capacity_per_s: float
    noise: float = 0.02
    base_p99_ms: float = 20.0
    generator_max_per_s: float = float("inf")

    def step(self, offered: float, rng: random.Random) -> WindowStats:
        sent_ratio = min(1.0, self.generator_max_per_s / offered)
        c = self.capacity_per_s
        served = min(offered * sent_ratio, c) * (1 + rng.gauss(0.0, self.noise))
        excess = max(0.0, offered * sent_ratio - c) / (offered * sent_ratio)
        error_rate = min(1.0, excess + abs(rng.gauss(0.0, self.noise / 10)))
        overload = max(0.0, offered / c - 1.0)
        p99_ms = self.base_p99_ms * (1 + abs(rng.gauss(0.0, self.noise * 5))) * (1 + 40 * overload)
        return make_stats(
            offered=offered,
            sent_ratio=sent_ratio,
            achieved=served,
            error_rate=error_rate,
            p99_ms=p99_ms,
        )
