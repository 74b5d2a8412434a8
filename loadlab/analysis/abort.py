"""The run's own figures as an abort condition: pure, fed one interval at a time.

The canary (``loadlab.cluster.canary``) watches the cluster from the side; this watches what the
run itself gets back. A condition stops the run only when it holds for ``sustain`` consecutive
intervals, so one slow second is not an abort; the reason names the figure and its limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AbortLimits:
    max_error_rate: float
    max_429_share: float
    max_p99_ms: float
    sustain_intervals: int


@dataclass(frozen=True)
class IntervalFigures:
    """One interval of one target's API traffic."""

    completed: int
    errors: int
    throttled: int
    """429 answers (also counted in ``errors``)."""
    p99_ms: float


@dataclass
class AbortRules:
    limits: AbortLimits
    _streak: dict[str, int] = field(default_factory=dict)

    def observe(self, figures: IntervalFigures) -> str | None:
        """The reason to stop, once a condition held long enough; None otherwise. An interval
        with nothing completed breaks no streak and extends none (silence is the canary's)."""
        if figures.completed == 0:
            return None
        checks = {
            "error rate": (figures.errors / figures.completed, self.limits.max_error_rate),
            "429 share": (figures.throttled / figures.completed, self.limits.max_429_share),
            "p99": (figures.p99_ms, self.limits.max_p99_ms),
        }
        for name, (value, limit) in checks.items():
            self._streak[name] = self._streak.get(name, 0) + 1 if value > limit else 0
            if self._streak[name] >= self.limits.sustain_intervals:
                shown = (
                    f"{value:,.0f} ms > {limit:,.0f} ms"
                    if name == "p99"
                    else f"{value:.1%} > {limit:.1%}"
                )
                return f"the run's API {name} was {shown} for {self._streak[name]} s"
        return None
