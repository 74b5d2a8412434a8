"""SLO checks over a window: summary.json's ``slo`` block and the exit code's verdict.

Latency is the SLO's measure (docs/knee-method.md: "latency for the SLO"): p99 per operation,
corrected for coordinated omission, and the error rate per target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadlab.metrics.stats import WindowStats


@dataclass(frozen=True)
class SloCheck:
    """One threshold compared with what was observed."""

    name: str
    """``api error_rate`` or ``api/get-lease p99_ms``."""
    threshold: float
    observed: float | None
    """None when nothing was measured (no traffic for that target or operation)."""
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "threshold": self.threshold,
            "observed": self.observed,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class SloReport:
    """All checks; the run passes when every one does (and vacuously with none)."""

    checks: tuple[SloCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        """summary.json's ``slo``: ``{"passed": ..., "checks": [...]}``."""
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}


def evaluate_slos(
    stats: Sequence[WindowStats],
    *,
    max_error_rate: Mapping[str, float] | None = None,
    p99_ms: Mapping[str, float] | None = None,
) -> SloReport:
    """Check each target's window against its thresholds.

    ``max_error_rate`` maps a target name to its limit; ``p99_ms`` maps ``<target>/<op>`` to its
    p99 bound. A threshold for a target or operation that saw no traffic fails: an SLO nobody
    measured is not met (its observed value is None).
    """
    by_target = {s.target: s for s in stats}
    checks: list[SloCheck] = []
    for target, limit in (max_error_rate or {}).items():
        window = by_target.get(target)
        if window is None or window.completed == 0:
            checks.append(SloCheck(f"{target} error_rate", limit, None, False))
            continue
        checks.append(
            SloCheck(f"{target} error_rate", limit, window.error_rate, window.error_rate <= limit)
        )
    for key, bound_ms in (p99_ms or {}).items():
        target, _, op = key.partition("/")
        window = by_target.get(target)
        latency = window.latency_by_op.get(op) if window is not None else None
        if latency is None or latency.count == 0:
            checks.append(SloCheck(f"{key} p99_ms", bound_ms, None, False))
            continue
        checks.append(
            SloCheck(f"{key} p99_ms", bound_ms, latency.p99_ms, latency.p99_ms <= bound_ms)
        )
    return SloReport(tuple(checks))
