"""Window aggregation: interval snapshots in, plain numbers out.

A window is any run of consecutive ``IntervalSnapshot``s of one target: one second for the
timeline, a step's measuring window for the knee, the whole run for the summary. Histograms are
merged (``HdrHistogram.add``) and each merged histogram is scanned for percentiles once
(``get_percentile_to_value_dict``), never per sample: a query is a ~0.9 ms linear scan
(docs/peers.md, "Figures measured on this machine").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from loadlab.clock import US_PER_MS
from loadlab.metrics.recorder import (
    HIGHEST_US,
    LOWEST_US,
    IntervalSnapshot,
    decode_histogram,
    merge_blobs,
    new_histogram,
)

_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencySummary:
    """Latency distribution of one window, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        """The ``latency_ms`` entry of summary.json: count, p50, p90, p99, p999, max."""
        return {
            "count": self.count,
            "p50": self.p50_ms,
            "p90": self.p90_ms,
            "p99": self.p99_ms,
            "p999": self.p999_ms,
            "max": self.max_ms,
        }


EMPTY_LATENCY = LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)


def percentile_values(hist: HdrHistogram, percentiles: Sequence[float]) -> dict[float, int]:
    """``hist.get_percentile_to_value_dict(percentiles)``, the same values, ~30x faster.

    hdrh walks its counts array in Python, one ``get_count_at_index`` call per bucket (about
    1.6 ms per histogram here, and a run's every interval summarises a dozen); this takes the
    cumulative sum of the same array with numpy and finds each percentile's bucket by bisection,
    then maps it to a value with hdrh's own ``get_value_from_index`` and equivalence rules.
    """
    length = min(hist.counts_len, hist.encoder.payload.counts_len)
    counts = np.ctypeslib.as_array(hist.counts)[:length]
    cumulative = np.cumsum(counts, dtype=np.int64)
    total = hist.get_total_count()
    values: dict[float, int] = {}
    for percentile in sorted(set(percentiles)):
        if percentile > 100:
            break
        target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
        index = int(np.searchsorted(cumulative, target, side="left"))
        if index >= length:
            break
        value = hist.get_value_from_index(index)
        values[percentile] = (
            hist.get_highest_equivalent_value(value)
            if percentile
            else hist.get_lowest_equivalent_value(value)
        )
    return values


def summarize_histogram(hist: HdrHistogram) -> LatencySummary:
    """Percentiles of a microsecond histogram, in ms, from a single pass over its counts."""
    count = hist.get_total_count()
    if count == 0:
        return EMPTY_LATENCY
    values_us = percentile_values(hist, _PERCENTILES)
    p50, p90, p99, p999 = (values_us[p] / US_PER_MS for p in _PERCENTILES)
    return LatencySummary(
        count=count,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        p999_ms=p999,
        max_ms=hist.get_max_value() / US_PER_MS,
    )


@dataclass(frozen=True)
class WindowStats:
    """One target over one window, as plain numbers.

    Latency is measured from the intended send time (corrected for coordinated omission);
    per-operation latency counts every outcome (a timeout is slow service, not a missing sample).
    """

    target: str
    duration_s: float
    """Sum of the window's interval lengths."""
    planned: int
    """Requests the schedule planned: sent + skipped (offered x duration if both are 0)."""
    sent: int
    skipped: int
    completed: int
    ok: int
    """Completions whose outcome counts as success for their operation."""
    errors: int
    errors_by_outcome: Mapping[str, int]
    """Error completions per outcome label (``429``, ``timeout``, ...)."""
    achieved_per_s: float
    """OK completions per second."""
    error_rate: float
    """errors / completed (0 when nothing completed)."""
    latency_by_op: Mapping[str, LatencySummary]
    """Corrected latency per operation name (operations with no completion are absent)."""
    latency: LatencySummary
    """Corrected latency over all operations."""
    lag_p50_ms: float
    lag_p99_ms: float
    """Schedule lag of the generator (dispatched minus intended)."""
    unanswered: int = 0
    """Requests sent in the window with no answer yet, though older than their SLO, when it was
    judged (not completions: their age only enters the latency percentiles)."""

    def per_s(self, count: int) -> float:
        """``count`` over the window's duration (0 for an empty window)."""
        return count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def planned_per_s(self) -> float:
        return self.per_s(self.planned)

    @property
    def sent_per_s(self) -> float:
        return self.per_s(self.sent)

    @property
    def sent_ratio(self) -> float:
        """sent / planned (1.0 when nothing was planned)."""
        return self.sent / self.planned if self.planned else 1.0


def window_stats(
    snapshots: Sequence[IntervalSnapshot],
    offered_per_s: float | None = None,
    *,
    unanswered: Sequence[tuple[int, int]] = (),
    load_s: float | None = None,
) -> WindowStats:
    """Aggregate consecutive snapshots of one target.

    Rates are per second of the window, or of ``load_s`` when the load ran for less than the
    window holds (a fixed run's window ends one interval after its load, so that the last
    answers are counted: they must not dilute its rates).

    ``planned`` is what the schedule actually planned (sent + skipped), not offered rate x
    duration: a Poisson schedule's count varies by ~1/sqrt(n) (1% at 10k requests), which would
    trip the 99% sent check by chance. ``offered_per_s`` (None in closed loop) only fills in
    when nothing was planned at all.

    ``unanswered`` lists (op index, age in us) of requests sent in the window that had no answer
    yet, though older than their SLO, when the window was judged: their age, a lower bound of
    their latency, goes into the percentiles, and their number into ``unanswered``. A server
    that goes silent therefore shows a p99 of seconds, not an empty window with p99 0; the
    error rate stays a rate of answers.
    """
    if not snapshots:
        raise ValueError("a window needs at least one interval snapshot")
    targets = {s.target for s in snapshots}
    if len(targets) != 1:
        raise ValueError(f"a window holds one target, got {sorted(targets)}")
    first = snapshots[0]
    duration_s = load_s if load_s is not None else sum(s.duration_s for s in snapshots)
    sent = sum(s.sent for s in snapshots)
    skipped = sum(s.skipped for s in snapshots)
    completed = sum(s.completed for s in snapshots)
    errors = sum(s.errors for s in snapshots)
    planned = sent + skipped
    if planned == 0 and offered_per_s:
        # Nothing dispatched nor skipped while a rate was asked for: the generator never ran.
        planned = round(offered_per_s * duration_s)

    errors_by_outcome: dict[str, int] = {}
    for s in snapshots:
        for label, n in s.errors_by_outcome().items():
            errors_by_outcome[label] = errors_by_outcome.get(label, 0) + n

    # Each blob is decoded once, into its operation's histogram; the all-operations histogram is
    # the sum of those (decoding is the costly part, and a second pass would double it).
    by_op: dict[int, HdrHistogram] = {}
    for snap in snapshots:
        for (op, _), blob in snap.corrected.items():
            by_op.setdefault(op, new_histogram()).add(decode_histogram(blob))
    for op, age_us in unanswered:
        by_op.setdefault(op, new_histogram()).record_value(min(max(age_us, LOWEST_US), HIGHEST_US))
    all_ops = new_histogram()
    latency_by_op: dict[str, LatencySummary] = {}
    for op, name in enumerate(first.op_names):
        if op in by_op:
            all_ops.add(by_op[op])
            latency_by_op[name] = summarize_histogram(by_op[op])
    lag = summarize_histogram(merge_blobs(s.lag for s in snapshots))

    ok = completed - errors
    return WindowStats(
        target=first.target,
        duration_s=duration_s,
        planned=planned,
        sent=sent,
        skipped=skipped,
        completed=completed,
        ok=ok,
        errors=errors,
        errors_by_outcome=errors_by_outcome,
        achieved_per_s=ok / duration_s if duration_s > 0 else 0.0,
        error_rate=errors / completed if completed else 0.0,
        latency_by_op=latency_by_op,
        latency=summarize_histogram(all_ops),
        lag_p50_ms=lag.p50_ms,
        lag_p99_ms=lag.p99_ms,
        unanswered=len(unanswered),
    )


def latency_block(stats: Sequence[WindowStats]) -> dict[str, dict[str, float | int]]:
    """summary.json's ``latency_ms``: ``{"api/get-lease": {"count", "p50", ...}}``."""
    return {
        f"{s.target}/{op}": summary.as_dict()
        for s in stats
        for op, summary in s.latency_by_op.items()
    }
