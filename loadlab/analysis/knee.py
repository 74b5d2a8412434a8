"""The knee: the highest load at which the server still passes its checks.

docs/knee-method.md, "4. The knee": the last passing step before two consecutive failing
steps (steps ordered by offered rate, so bisection steps fall into place), i.e. after refinement
the highest passing rate below the first pair of failing rates. The next step's first failing
check is the reason. Generator-limited steps are ignored: they say nothing about the server.
Cross-check: Kneedle (``kneed``, polynomial interpolation of degree 4) on achieved vs offered;
both are reported and a disagreement over 15% is flagged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadlab.analysis.steps import StepVerdict

DISAGREEMENT_FLAG = 0.15
"""docs/knee-method.md, "The method" 5: flag a Kneedle/steps disagreement over 15%."""
KNEEDLE_DEGREE = 4
"""docs/knee-method.md table: polynomial degree 4 is the robust fit (97% within bounds)."""
_MIN_KNEEDLE_POINTS = KNEEDLE_DEGREE + 1  # fewer points than coefficients: the fit is exact noise
_FLAT_RELATIVE = 1e-9  # a span under this fraction of the largest value is a flat line: no knee


@dataclass(frozen=True)
class Knee:
    """Where a target stopped keeping up, and why."""

    target: str
    offered: float
    """Offered rate of the knee step, per second."""
    achieved: float
    """Its achieved (OK) rate, per second."""
    p99_ms: float
    method: str
    """``"steps"``: found by the stepped method."""
    kneedle: float | None
    """Kneedle's estimate of the offered rate at the knee, or None when it found none."""
    disagreement: float | None
    """|kneedle - offered| / offered, or None without a Kneedle estimate."""
    flagged: bool
    """The two methods disagree by more than 15%."""
    reason: str
    """The first failing check of the step above the knee."""

    def as_dict(self) -> dict[str, object]:
        """summary.json's ``knee.<target>`` entry."""
        return {
            "offered": self.offered,
            "achieved": self.achieved,
            "p99_ms": self.p99_ms,
            "method": self.method,
            "kneedle": self.kneedle,
            "disagreement": self.disagreement,
            "flagged": self.flagged,
            "reason": self.reason,
        }


def find_knee(verdicts: Sequence[StepVerdict]) -> Knee | None:
    """The knee of one target's steps, or None when no two consecutive steps failed above a pass.

    Steps are ordered by offered rate (stable, so repeats keep their run order).
    """
    targets = {v.target for v in verdicts}
    if len(targets) > 1:
        raise ValueError(f"find the knee of one target at a time, got {sorted(targets)}")
    steps = sorted((v for v in verdicts if not v.generator_limited), key=lambda v: v.offered)
    for i in range(len(steps) - 1):
        if steps[i].failed and steps[i + 1].failed:
            below = [v for v in steps[:i] if v.passed]
            if not below:
                return None
            knee_step = below[-1]
            kneedle = kneedle_knee([v.offered for v in steps], [v.achieved for v in steps])
            disagreement = (
                abs(kneedle - knee_step.offered) / knee_step.offered
                if kneedle is not None and knee_step.offered > 0
                else None
            )
            return Knee(
                target=knee_step.target,
                offered=knee_step.offered,
                achieved=knee_step.achieved,
                p99_ms=knee_step.p99_ms,
                method="steps",
                kneedle=kneedle,
                disagreement=disagreement,
                flagged=disagreement is not None and disagreement > DISAGREEMENT_FLAG,
                reason=steps[i].why,
            )
    return None


def kneedle_knee(offered: Sequence[float], achieved: Sequence[float]) -> float | None:
    """Kneedle's knee of achieved vs offered (concave, increasing), or None.

    Repeated offered rates are averaged. Too few points for a degree-4 fit, a flat or
    non-finite curve, or no knee found give None; kneed's warnings never escape.
    """
    if len(offered) != len(achieved):
        raise ValueError("offered and achieved must have the same length")
    by_rate: dict[float, list[float]] = {}
    for x, y in zip(offered, achieved, strict=True):
        by_rate.setdefault(float(x), []).append(float(y))
    xs = np.array(sorted(by_rate), dtype=float)
    ys = np.array([sum(by_rate[x]) / len(by_rate[x]) for x in sorted(by_rate)], dtype=float)
    if len(xs) < _MIN_KNEEDLE_POINTS or not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return None
    span = float(ys.max() - ys.min())
    if span <= _FLAT_RELATIVE * max(abs(float(ys.max())), 1.0):
        return None
    # Imported here: kneed imports scipy (and matplotlib when present), ~0.6 s measured here,
    # which every CLI start would otherwise pay.
    from kneed import KneeLocator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            locator = KneeLocator(
                xs,
                ys,
                curve="concave",
                direction="increasing",
                interp_method="polynomial",
                polynomial_degree=KNEEDLE_DEGREE,
                online=True,
            )
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return None
    knee = locator.knee
    if knee is None:
        return None
    value = float(knee)
    return value if np.isfinite(value) else None
