"""Two results folders side by side: is B worse than A beyond a threshold, or only noisier? Pure.

Three kinds of rows, each with its own verdict (``Verdict``):

- **Knees** (ramps), per target: B's knee over A's. A knee is only known to within the ramp's
  ``refine_within`` (the search stops bisecting there), so a ratio inside
  max(threshold, refine_within) of 1 is "same". A run that held at every step has a *lower bound*
  (``>= max``); one that failed at the lowest load has 0 capacity. A bound decides a row only
  when it points the same way as the other side (B held further than A's knee: not worse).
- **Outcomes**: per size of a sweep (held or failed; when both failed, later is better), per
  target of a fixed-rate run (its SLOs met or not).
- **Latency**, per operation, p50 and p99 of successful requests: the per-interval values of A
  and B, the ratio of their medians, and a bootstrap 90 % interval of that ratio. A row regresses
  only when the ratio is past the threshold *and* the interval's low end is above 1, so a noisy
  p99 that moved is not called a regression. Fewer than ``MIN_INTERVALS`` intervals on either
  side gives no verdict, never a pass.

B regressed (exit 1) when any row regressed. Reading two folders into a ``Comparison`` is
``compare_read``'s job.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from loadlab.errors import EXIT_OK, EXIT_SLO_FAILED
from loadlab.report.read import RunKind

MIN_INTERVALS = 5
"""Per-interval values below this on either side give no latency verdict: a median of four
one-second p99s says little, and a bootstrap over them even less (not from a reference: a
judgement)."""
BOOTSTRAP_DRAWS = 1_000
"""Resamples per latency row: Efron & Tibshirani, An Introduction to the Bootstrap (1993), ask for
about 1,000 for a percentile interval's ends (200 at most do for a standard error only)."""
CONFIDENCE = 0.90
"""Two-sided, so "the interval's low end is above 1" is a one-sided test at 5 % (not from a
reference: the usual 5 % level, one-sided because only one direction is a regression)."""
BOOTSTRAP_SEED = 20_240_613
"""Fixed, so the same two folders always give the same page (the value itself is arbitrary)."""
_MEDIAN_FLOOR_MS = 1e-9
"""A median of 0 ms divides as this, not by zero."""

Quantile = Literal["p50", "p99"]
QUANTILES: dict[Quantile, float] = {"p50": 50.0, "p99": 99.0}


class Verdict(enum.Enum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    SAME = "same"
    NONE = "no verdict"
    """Nothing can be said (a side unknown, too few intervals): never counted as a pass."""


@dataclass(frozen=True)
class Capacity:
    """One run's knee for one target, as far as the run can tell."""

    per_s: float | None
    """Offered load at the knee; 0 when the server failed at the lowest load; None: unknown."""
    lower_bound: bool = False
    """The run held at every step up to ``per_s``: its knee is at least that."""
    note: str = ""
    """Why the knee is a bound or unknown (``held to the maximum``, ``inconclusive``)."""
    stopped_serving: bool = False

    def text(self) -> str:
        if self.per_s is None:
            return f"? ({self.note})" if self.note else "?"
        value = f">= {self.per_s:,.0f}/s" if self.lower_bound else f"{self.per_s:,.0f}/s"
        return f"{value} ({self.note})" if self.note and not self.lower_bound else value


@dataclass(frozen=True)
class KneeRow:
    target: str
    nodes: int | None
    """The embedded control plane's ``sim.nodes`` when both runs used the same (else None)."""
    a: Capacity
    b: Capacity
    ratio: float | None
    """B/A; with a bound on one side it is a bound too (see ``ratio_text``)."""
    ratio_text: str
    verdict: Verdict
    why: str


@dataclass(frozen=True)
class OutcomeRow:
    """A sweep size (``label`` "2,000 nodes") or a fixed run's target: held or failed."""

    label: str
    a_held: bool | None
    b_held: bool | None
    """None: the run did not judge it (inconclusive, never reached)."""
    a_api_s: float | None = None
    b_api_s: float | None = None
    """When the API saturated, seconds into the size (None: it did not)."""
    a_dns_s: float | None = None
    b_dns_s: float | None = None
    verdict: Verdict = Verdict.NONE
    why: str = ""


@dataclass(frozen=True)
class LatencyRow:
    scope: str
    """Where the operation ran: the target of a ramp (``api``), the size and agent kind of a
    sweep (``2,000 nodes kubelet``)."""
    op: str
    quantile: Quantile
    a_ms: float | None
    b_ms: float | None
    """Median over intervals of the per-interval quantile, milliseconds."""
    ratio: float | None
    low: float | None
    high: float | None
    """Bootstrap interval (``CONFIDENCE``) of ``ratio``."""
    a_intervals: int
    b_intervals: int
    verdict: Verdict
    why: str


@dataclass(frozen=True)
class Comparison:
    a_path: Path
    b_path: Path
    profile: str
    kind: RunKind
    threshold: float
    differs: tuple[str, ...]
    """Profile fields that differ, ``field: A -> B`` (the point of most comparisons)."""
    knees: tuple[KneeRow, ...] = ()
    outcomes: tuple[OutcomeRow, ...] = ()
    latency: tuple[LatencyRow, ...] = ()
    latency_range: str = ""
    """Which part of each run the latency rows come from."""

    def regressions(self) -> list[str]:
        return [_describe(r) for r in self._rows() if r.verdict is Verdict.REGRESSED]

    @property
    def exit_code(self) -> int:
        return EXIT_SLO_FAILED if self.regressions() else EXIT_OK

    def headline(self) -> str:
        """The one line that answers the question, for stdout and the top of both pages."""
        undecided = sum(r.verdict is Verdict.NONE for r in self._rows())
        tail = [f"{undecided} rows without a verdict"] if undecided else []
        regressed = self.regressions()
        if regressed:
            more = [f"and {len(regressed) - 3} more"] if len(regressed) > 3 else []
            return f"compare: B regressed: {'; '.join([*regressed[:3], *more, *tail])}"
        shown = [f"knee {r.target} {r.ratio_text}" for r in self.knees]
        shown += [_describe(r) for r in self.outcomes if r.verdict is Verdict.IMPROVED][:2]
        detail = f" ({'; '.join([*shown, *tail])})" if shown or tail else ""
        return f"compare: B is not worse than A beyond {percent(self.threshold)}{detail}"

    def _rows(self) -> list[KneeRow | OutcomeRow | LatencyRow]:
        return [*self.knees, *self.outcomes, *self.latency]


def percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def times(ratio: float) -> str:
    """A ratio as people read one: 7.9x, 0.52x."""
    return f"{ratio:.1f}x" if ratio >= 2 else f"{ratio:.2f}x"


def _describe(row: KneeRow | OutcomeRow | LatencyRow) -> str:
    if isinstance(row, KneeRow):
        return f"{row.target} knee {row.ratio_text} ({row.a.text()} -> {row.b.text()})"
    if isinstance(row, OutcomeRow):
        return f"{row.label}: {row.why}"
    interval = f" [{row.low:.2f}-{row.high:.2f}]" if row.low is not None and row.high else ""
    ratio = times(row.ratio) if row.ratio is not None else "?"
    return f"{row.scope} {row.op} {row.quantile} {ratio}{interval}"


# --- knees ---------------------------------------------------------------------------------------


def capacity(summary: Mapping[str, Any], target: str) -> Capacity:
    """A target's knee from ``summary.json``: its ``knee`` entry, else what its finding says."""
    knee = (summary.get("knee") or {}).get(target)
    if isinstance(knee, Mapping) and isinstance(knee.get("offered"), int | float):
        return Capacity(float(knee["offered"]))
    finding = ((summary.get("verdict") or {}).get("findings") or {}).get(target) or {}
    kind, offered = finding.get("kind"), finding.get("offered")
    if kind == "held" and isinstance(offered, int | float):
        return Capacity(float(offered), lower_bound=True, note="held to the ramp's maximum")
    if kind == "failed_at_lowest_load":
        at = f" {offered:,.0f}/s" if isinstance(offered, int | float) else ""
        return Capacity(0.0, note=f"failed at the lowest load{at}")
    if kind == "stopped_serving":
        return Capacity(None, note="stopped serving", stopped_serving=True)
    return Capacity(None, note=str(kind).replace("_", " ") if kind else "no knee")


KneeComparison = tuple[float | None, str, Verdict, str]
"""(ratio, ratio as shown, verdict, why)."""


def knee_row(
    target: str, a: Capacity, b: Capacity, *, tolerance: float, nodes: int | None = None
) -> KneeRow:
    """``tolerance``: max(threshold, refine_within); a ratio within it of 1 is "same"."""
    if a.per_s is None or b.per_s is None:
        compared = _knee_unknown(a, b)
    elif a.per_s == 0 or b.per_s == 0:
        compared = _knee_zero(a.per_s, b.per_s)
    else:
        compared = _knee_ratio(a, b, a.per_s, b.per_s, tolerance)
    return KneeRow(target, nodes, a, b, *compared)


def _knee_unknown(a: Capacity, b: Capacity) -> KneeComparison:
    if b.stopped_serving and not a.stopped_serving and a.per_s is not None:
        return None, "-", Verdict.REGRESSED, "B stopped serving mid-run"
    if a.stopped_serving and not b.stopped_serving and b.per_s is not None:
        return None, "-", Verdict.IMPROVED, "A stopped serving mid-run, B did not"
    name, unknown = ("A", a) if a.per_s is None else ("B", b)
    return None, "?", Verdict.NONE, f"{name}'s knee is unknown ({unknown.note})"


def _knee_zero(a_per_s: float, b_per_s: float) -> KneeComparison:
    if a_per_s == b_per_s:
        return None, "-", Verdict.SAME, "both failed at the lowest load"
    if b_per_s == 0:
        return 0.0, "0x", Verdict.REGRESSED, "B failed at the lowest load"
    return None, "-", Verdict.IMPROVED, "A failed at the lowest load, B served"


def _knee_ratio(
    a: Capacity, b: Capacity, a_per_s: float, b_per_s: float, tolerance: float
) -> KneeComparison:
    ratio = b_per_s / a_per_s
    low, high = 1 - tolerance, 1 + tolerance
    if not a.lower_bound and not b.lower_bound:
        text = times(ratio)
        if ratio < low:
            return ratio, text, Verdict.REGRESSED, f"B's knee is {text} A's"
        if ratio > high:
            return ratio, text, Verdict.IMPROVED, f"B's knee is {text} A's"
        return ratio, text, Verdict.SAME, f"within {percent(tolerance)}, the ramp's resolution"
    if not a.lower_bound:  # B held to its maximum: its knee is at least there
        text = f">= {times(ratio)}"
        if ratio > high:
            return ratio, text, Verdict.IMPROVED, "B held beyond A's knee"
        if ratio >= low:
            return ratio, text, Verdict.SAME, "B held up to A's knee or beyond"
        return ratio, text, Verdict.NONE, "B's ramp stopped below A's knee"
    if not b.lower_bound:  # A held to its maximum: the ratio is at most this
        text = f"<= {times(ratio)}"
        if ratio < low:
            return ratio, text, Verdict.REGRESSED, "B's knee is below where A held"
        return ratio, text, Verdict.NONE, "A held to its maximum: its knee is unknown"
    if ratio >= low:
        return None, "-", Verdict.SAME, "both held to their ramp's maximum"
    return None, "?", Verdict.NONE, "B's ramp stopped below A's maximum"


# --- outcomes: sweep sizes, fixed-run targets ----------------------------------------------------


def size_row(
    nodes: int, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, *, threshold: float
) -> OutcomeRow:
    """One size of two sweeps from their ``summary.json`` entries (None: the size never ran).

    Held beats failed; when both failed, the later failure is better, API and DNS each: B failing
    sooner than A by more than ``threshold`` is a regression.
    """
    a_held, b_held = _held(a), _held(b)
    row = OutcomeRow(
        f"{nodes:,} nodes",
        a_held,
        b_held,
        _seconds(a, "api_saturation_at_s"),
        _seconds(b, "api_saturation_at_s"),
        _seconds(a, "dns_failure_at_s"),
        _seconds(b, "dns_failure_at_s"),
    )
    verdict, why = _outcome_verdict(row, threshold)
    return replace(row, verdict=verdict, why=why)


def target_row(target: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> OutcomeRow:
    """A fixed-rate run's target, from both summaries' findings: its SLOs met or not."""
    a_held, b_held = _finding_passed(a, target), _finding_passed(b, target)
    verdict, why = _outcome_verdict(OutcomeRow(target, a_held, b_held), 0.0)
    return OutcomeRow(target, a_held, b_held, verdict=verdict, why=why)


def _outcome_verdict(row: OutcomeRow, threshold: float) -> tuple[Verdict, str]:
    if row.a_held is None or row.b_held is None:
        return Verdict.NONE, f"{'A' if row.a_held is None else 'B'} did not judge it"
    if row.a_held and row.b_held:
        return Verdict.SAME, "held in both"
    if row.a_held:
        return Verdict.REGRESSED, f"A held, B failed{_when(row.b_api_s, row.b_dns_s)}"
    if row.b_held:
        return Verdict.IMPROVED, f"A failed{_when(row.a_api_s, row.a_dns_s)}, B held"
    parts = [
        _later_is_better("API saturated", row.a_api_s, row.b_api_s, threshold),
        _later_is_better("DNS failed", row.a_dns_s, row.b_dns_s, threshold),
    ]
    for verdict in (Verdict.REGRESSED, Verdict.IMPROVED):
        found = [why for v, why in parts if v is verdict]
        if found:
            return verdict, "; ".join(found)
    return Verdict.SAME, "failed in both, " + ("; ".join(w for _, w in parts if w) or "alike")


def _later_is_better(
    what: str, a_s: float | None, b_s: float | None, threshold: float
) -> tuple[Verdict, str]:
    if a_s is None and b_s is None:
        return Verdict.SAME, ""
    if a_s is None or b_s is None:
        if a_s is None:
            return Verdict.REGRESSED, f"{what} in B at {b_s:,.0f} s, not in A"
        return Verdict.IMPROVED, f"{what} in A at {a_s:,.0f} s, not in B"
    ratio = b_s / a_s if a_s > 0 else math.inf
    why = f"{what} at {a_s:,.0f} s in A, {b_s:,.0f} s in B ({ratio:.2f}x)"
    if ratio < 1 - threshold:
        return Verdict.REGRESSED, why
    if ratio > 1 + threshold:
        return Verdict.IMPROVED, why
    return Verdict.SAME, why


def _held(entry: Mapping[str, Any] | None) -> bool | None:
    if entry is None or entry.get("judged") is False or not isinstance(entry.get("passed"), bool):
        return None
    return bool(entry["passed"])


def _seconds(entry: Mapping[str, Any] | None, key: str) -> float | None:
    value = (entry or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def _when(api_s: float | None, dns_s: float | None) -> str:
    parts = [
        f"API at {api_s:,.0f} s" if api_s is not None else "",
        f"DNS at {dns_s:,.0f} s" if dns_s is not None else "",
    ]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def _finding_passed(summary: Mapping[str, Any], target: str) -> bool | None:
    finding = ((summary.get("verdict") or {}).get("findings") or {}).get(target)
    if not isinstance(finding, Mapping) or finding.get("kind") in (
        "interrupted",
        "generator_limited",
        "inconclusive",
    ):
        return None
    passed = finding.get("passed")
    return passed if isinstance(passed, bool) else None


# --- latency ------------------------------------------------------------------------------------


def ratio_of_medians(
    a: Sequence[float],
    b: Sequence[float],
    *,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """median(b) / median(a), and the ``CONFIDENCE`` bootstrap interval of that ratio
    (intervals resampled with replacement, A and B independently)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    med_a = np.median(xa[rng.integers(0, xa.size, (draws, xa.size))], axis=1)
    med_b = np.median(xb[rng.integers(0, xb.size, (draws, xb.size))], axis=1)
    ratios = med_b / np.maximum(med_a, _MEDIAN_FLOOR_MS)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    ratio = float(np.median(xb)) / max(float(np.median(xa)), _MEDIAN_FLOOR_MS)
    return ratio, float(low), float(high)


def latency_row(
    scope: str,
    op: str,
    quantile: Quantile,
    a: Sequence[float],
    b: Sequence[float],
    *,
    threshold: float,
) -> LatencyRow:
    """Compare one operation's per-interval ``quantile`` values (ms) of A and B."""
    a_ms = float(np.median(a)) if a else None
    b_ms = float(np.median(b)) if b else None
    if len(a) < MIN_INTERVALS or len(b) < MIN_INTERVALS:
        why = f"too few intervals ({len(a)} in A, {len(b)} in B; {MIN_INTERVALS} needed)"
        return LatencyRow(
            scope, op, quantile, a_ms, b_ms, None, None, None, len(a), len(b), Verdict.NONE, why
        )
    ratio, low, high = ratio_of_medians(a, b)
    spread = f"{ratio:.2f}x, {CONFIDENCE:.0%} interval {low:.2f}-{high:.2f}"
    if ratio > 1 + threshold and low > 1:
        verdict, why = Verdict.REGRESSED, f"slower: {spread}"
    elif ratio < 1 - threshold and high < 1:
        verdict, why = Verdict.IMPROVED, f"faster: {spread}"
    elif abs(ratio - 1) > threshold:
        verdict, why = Verdict.SAME, f"within noise: {spread} spans 1"
    else:
        verdict, why = Verdict.SAME, f"within {percent(threshold)}: {spread}"
    return LatencyRow(
        scope, op, quantile, a_ms, b_ms, ratio, low, high, len(a), len(b), verdict, why
    )
