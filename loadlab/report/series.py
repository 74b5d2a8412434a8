"""What the report's figures show, as plain numbers: derived from a results folder, drawn by
``plots``. Kept apart from the drawing so the numbers can be tested without looking at pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadlab.metrics.recorder import new_histogram
from loadlab.metrics.stats import LatencySummary, summarize_histogram
from loadlab.report.read import (
    DNS_KIND,
    INTERVAL_SLACK_S,
    LOOKUP_OP,
    TIMELINE_FILE,
    OpInterval,
    OutcomeCount,
    RunFolder,
    StepWindow,
    interval_s,
    merged_histogram,
    op_intervals,
    outcome_counts,
    ramp_seconds,
    read_steps,
    read_timeline,
    same_rate,
    size_dir,
    step_windows,
)

Row = Mapping[str, float | None]


@dataclass(frozen=True)
class Series:
    """One line of a panel."""

    label: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    """None where nothing was measured (a gap in the line)."""


@dataclass(frozen=True)
class Panel:
    """One set of axes; panels of one figure share the x axis (seconds)."""

    ylabel: str
    series: tuple[Series, ...]
    limit: float | None = None
    """A threshold drawn as a horizontal line (the schedule-lag criterion, an SLO)."""
    limit_label: str = ""


@dataclass(frozen=True)
class Mark:
    """A moment drawn as a vertical line: when the API saturated, when DNS failed."""

    at_s: float
    label: str


@dataclass(frozen=True)
class StepPoint:
    """One ramp step: what was offered, what came back, and how long it took."""

    offered_per_s: float
    achieved_per_s: float | None
    latency: LatencySummary
    """Over the step's measuring window (warm-up excluded), every outcome, from the hlog."""
    passed: bool | None
    """The step's verdict; None for a step the run was killed in."""


def column_prefixes(rows: Sequence[Row]) -> list[str]:
    """The targets (``api``, ``dns``) or agent kinds of a timeline, in column order."""
    if not rows:
        return []
    suffix = "_offered_per_s"
    return [c.removesuffix(suffix) for c in rows[0] if c.endswith(suffix)]


def _column(rows: Sequence[Row], name: str) -> tuple[float | None, ...]:
    return tuple(r.get(name) for r in rows)


def _times(rows: Sequence[Row]) -> tuple[float, ...]:
    return tuple(float(r.get("t_s") or 0.0) for r in rows)


def _measured(latencies_ms: Sequence[float | None]) -> tuple[float | None, ...]:
    """A timeline writes p99 0 for a second with no completion: that is no measurement."""
    return tuple(v if v is not None and v > 0 else None for v in latencies_ms)


def _combine_columns(
    rows: Sequence[Row], names: Sequence[str], combine: Callable[[Iterable[float]], float]
) -> tuple[float | None, ...]:
    """Per row, ``combine`` (sum, max) of the ``names`` cells that hold a number (None when none
    does)."""
    out: list[float | None] = []
    for row in rows:
        cells = [v for n in names if (v := row.get(n)) is not None]
        out.append(combine(cells) if cells else None)
    return tuple(out)


def _error_columns(rows: Sequence[Row], prefix: str) -> list[str]:
    head = f"{prefix}_errors_"
    return [c for c in (rows[0] if rows else ()) if c.startswith(head)]


def step_points(
    windows: Sequence[StepWindow],
    intervals: Mapping[str, Sequence[OpInterval]],
    steps: Sequence[Mapping[str, Any]],
    rows: Sequence[Row],
    target: str,
) -> list[StepPoint]:
    """One point per step window, in run order. Each window takes the first unused step of its
    rate (a confirm step repeats a rate); a window without one, the step the run was killed in,
    gets its achieved rate from the timeline and no verdict."""
    unused = [s for s in steps if s.get("target", target) == target]
    achieved_col = f"{target}_achieved_per_s"
    points: list[StepPoint] = []
    for window in windows:
        step = next(
            (s for s in unused if same_rate(float(s.get("offered") or 0.0), window.offered_per_s)),
            None,
        )
        hist = merged_histogram(intervals, window.measure_from_s, window.end_s)
        latency = summarize_histogram(hist)
        if step is not None:
            unused.remove(step)
            achieved: float | None = step.get("achieved")
            passed: bool | None = bool(step.get("passed"))
        else:
            inside = [
                v
                for r in rows
                if window.measure_from_s < (r.get("t_s") or 0.0) <= window.end_s + INTERVAL_SLACK_S
                and (v := r.get(achieved_col)) is not None
            ]
            achieved = sum(inside) / len(inside) if inside else None
            passed = None
            if latency.count == 0 and achieved is None:
                continue
        points.append(StepPoint(window.offered_per_s, achieved, latency, passed))
    return points


def ramp_points(run: RunFolder, target: str) -> list[StepPoint]:
    """The steps of ``target`` in a ramp run, located in the timeline and measured in the hlog."""
    rows = read_timeline(run.path / TIMELINE_FILE)
    windows = step_windows(
        rows,
        target,
        step_s=ramp_seconds(run, "step_s"),
        warmup_s=ramp_seconds(run, "warmup_s"),
        interval_s=interval_s(run),
    )
    intervals = op_intervals(run.path / f"{target}.hlog", ok_only=False)
    return step_points(windows, intervals, read_steps(run), rows, target)


def knee_offered(run: RunFolder, target: str) -> float | None:
    knee = ((run.summary or {}).get("knee") or {}).get(target)
    if isinstance(knee, dict) and knee.get("offered") is not None:
        return float(knee["offered"])
    return None


def run_timeline_panels(rows: Sequence[Row]) -> list[Panel]:
    """A ramp's or fixed run's seconds: offered, achieved and errors per target, then p99."""
    targets = column_prefixes(rows)
    if not targets:
        return []
    x = _times(rows)
    rates: list[Series] = []
    p99: list[Series] = []
    for t in targets:
        rates.append(Series(f"{t} offered/s", x, _column(rows, f"{t}_offered_per_s")))
        rates.append(Series(f"{t} OK/s", x, _column(rows, f"{t}_achieved_per_s")))
        errors = _combine_columns(rows, _error_columns(rows, t), sum)
        rates.append(Series(f"{t} errors/s", x, errors))
        p99.append(Series(f"{t} p99", x, _measured(_column(rows, f"{t}_p99_ms"))))
    return [Panel("per second", tuple(rates)), Panel("p99 latency (ms)", tuple(p99))]


def api_p99_per_interval(
    intervals_by_kind: Sequence[Mapping[str, Sequence[OpInterval]]],
    grid_s: Sequence[float] = (),
) -> Series:
    """The p99 of every API operation of every kind, interval by interval, on the seconds of
    ``grid_s`` too: a second with no answer is a gap (None), not a line drawn across it."""
    by_end: dict[int, list[OpInterval]] = {round(t): [] for t in grid_s}
    for intervals in intervals_by_kind:
        for op_list in intervals.values():
            for interval in op_list:
                by_end.setdefault(round(interval.end_s), []).append(interval)
    xs: list[float] = []
    ys: list[float | None] = []
    for end_s in sorted(by_end):
        total = new_histogram()
        for interval in by_end[end_s]:
            total.add(interval.histogram)
        xs.append(float(end_s))
        ys.append(summarize_histogram(total).p99_ms if total.get_total_count() else None)
    return Series("API p99", tuple(xs), tuple(ys))


def sweep_size_panels(run: RunFolder, n: int) -> list[Panel]:
    """One size of a sweep, second by second: API OK and errors, API p99, DNS lookups."""
    folder = size_dir(run, n)
    rows = read_timeline(folder / TIMELINE_FILE)
    kinds = column_prefixes(rows)
    api_kinds = [k for k in kinds if k != DNS_KIND]
    panels: list[Panel] = []
    if api_kinds:
        x = _times(rows)
        ok = _combine_columns(rows, [f"{k}_achieved_per_s" for k in api_kinds], sum)
        error_cols = [c for k in api_kinds for c in _error_columns(rows, k)]
        errors = _combine_columns(rows, error_cols, sum)
        panels.append(
            Panel("API requests/s", (Series("OK/s", x, ok), Series("errors/s", x, errors)))
        )
        # OK answers only: when the server refuses connections, errors come back in
        # microseconds and an all-outcome p99 would fall just as the API saturates.
        p99 = api_p99_per_interval([op_intervals(folder / f"{k}.hlog") for k in api_kinds], x)
        sweep = run.profile.get("sweep") or {}
        panels.append(
            Panel(
                "API p99, OK answers (ms)",
                (p99,),
                limit=sweep.get("single_object_p99_ms"),
                limit_label="single-object SLO",
            )
        )
    lookups = outcome_counts(folder / f"{DNS_KIND}.hlog", LOOKUP_OP)
    if lookups:
        panels.append(Panel("DNS lookups/s", lookup_rates(lookups, _times(rows))))
    return panels


def lookup_rates(counts: Sequence[OutcomeCount], grid_s: Sequence[float]) -> tuple[Series, ...]:
    """OK and failed lookups per second. An interval with no completion has no hlog line, so
    the counts are laid on the timeline's seconds (``grid_s``), a missing one counting 0: a
    line drawn straight across a silent minute would show lookups that never happened."""
    by_end = {round(c.end_s): c for c in counts}
    grid = sorted({round(t) for t in grid_s} | set(by_end))
    ok: list[float | None] = []
    failed: list[float | None] = []
    for end_s in grid:
        count = by_end.get(end_s)
        span_s = max(count.end_s - count.start_s, 1e-3) if count else 1.0
        ok.append(count.ok / span_s if count else 0.0)
        failed.append(count.failed / span_s if count else 0.0)
    x = tuple(float(t) for t in grid)
    return Series("OK/s", x, tuple(ok)), Series("failed/s", x, tuple(failed))


def size_marks(entry: Mapping[str, Any] | None) -> list[Mark]:
    """The onsets a size's summary records, as vertical lines."""
    if entry is None:
        return []
    marks: list[Mark] = []
    for key, label in (
        ("api_saturation_at_s", "API saturated"),
        ("dns_failure_at_s", "DNS failed"),
    ):
        at_s = entry.get(key)
        if isinstance(at_s, int | float):
            marks.append(Mark(float(at_s), f"{label} at {at_s:,.0f} s"))
    return marks


def sweep_warmup_s(run: RunFolder) -> float | None:
    """The warm-up each size began with: a sweep's profile.resolved.json records the phases it
    used (``--quick`` ones included); None when the folder does not record them."""
    warmup = (run.profile.get("phases") or {}).get("warmup_s")
    return float(warmup) if isinstance(warmup, int | float) else None


def health_panels(
    rows_by_label: Sequence[tuple[str, Sequence[Row]]], max_lag_ms: float | None
) -> list[Panel]:
    """The generator's own health per second: the worst schedule-lag p99 of its targets (or
    kinds), against the profile's limit, and its CPU. One line per label (a size, or the run)."""
    lag: list[Series] = []
    cpu: list[Series] = []
    for label, rows in rows_by_label:
        if not rows:
            continue
        x = _times(rows)
        lag_cols = [f"{p}_lag_p99_ms" for p in column_prefixes(rows)]
        lag.append(Series(label, x, _combine_columns(rows, lag_cols, max)))
        cpu.append(Series(label, x, _column(rows, "generator_cpu_percent")))
    if not lag:
        return []
    return [
        Panel("schedule lag p99 (ms)", tuple(lag), limit=max_lag_ms, limit_label="limit"),
        Panel("generator CPU (%)", tuple(cpu)),
    ]


def max_lag_ms(run: RunFolder) -> float | None:
    value = (run.profile.get("criteria") or {}).get("max_lag_p99_ms")
    return float(value) if isinstance(value, int | float) else None
