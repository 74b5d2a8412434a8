"""``loadlab compare``'s back end: two results folders read into a ``Comparison``.

What is compared is chosen here, so that noise from parts of a run the other did not share stays
out: for ramps, only the steps both ran at the same offered rate and both passed (past each step's
warm-up), since a latency measured at 800/s says nothing about one at 400/s; for sweeps, each size
from the end of its warm-up to the first failure in either run, since past a saturation the
survivors' latency is not the same population.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadlab.clock import US_PER_MS
from loadlab.errors import UsageError
from loadlab.profile import Ramp
from loadlab.report.compare import (
    QUANTILES,
    Comparison,
    KneeRow,
    LatencyRow,
    OutcomeRow,
    Quantile,
    capacity,
    knee_row,
    latency_row,
    size_row,
    target_row,
)
from loadlab.report.read import (
    TIMELINE_FILE,
    OpInterval,
    RunFolder,
    interval_s,
    load_run,
    op_intervals,
    ramp_seconds,
    read_steps,
    read_timeline,
    same_rate,
    size_dir,
    size_entry,
    sizes,
    step_windows,
)
from loadlab.report.series import sweep_warmup_s

DEFAULT_REFINE_WITHIN: float = Ramp.model_fields["refine_within"].default
"""The profile's ``load.ramp.refine_within`` default, for a profile as run that does not say."""
IGNORED_FIELDS = frozenset({"schema", "name", "description", "api.url", "dns.server"})
"""Profile fields that differ between any two runs (ports picked at start) or say nothing."""
KIND_NAMES = {"ramp": "a ramp", "fixed": "a fixed-rate run", "sweep": "a sweep"}
UNCORRECTED_SUFFIX = ".uncorrected.hlog"

Windows = list[tuple[float, float]]
"""Parts of a run's time axis, (start_s, end_s), seconds since its (or its size's) start."""


def read_comparison(a_path: Path, b_path: Path, *, threshold: float) -> Comparison:
    """``UsageError`` (one line, exit 2) when a folder is not a run or the two are not
    comparable; else every row, judged against ``threshold`` (a fraction)."""
    a, b = load_run(a_path), load_run(b_path)
    reason = not_comparable(a, b)
    if reason is not None:
        raise UsageError(reason)
    assert a.summary is not None
    assert b.summary is not None
    knees: tuple[KneeRow, ...] = ()
    outcomes: tuple[OutcomeRow, ...] = ()
    if a.kind == "ramp":
        knees = knee_rows(a, b, threshold=threshold)
        latency, covered = ramp_latency(a, b, threshold=threshold)
    elif a.kind == "sweep":
        outcomes = tuple(
            size_row(n, size_entry(a, n), size_entry(b, n), threshold=threshold) for n in sizes(a)
        )
        latency, covered = sweep_latency(a, b, threshold=threshold)
    else:
        outcomes = tuple(target_row(t, a.summary, b.summary) for t in _targets(a, b))
        whole = [(-math.inf, math.inf)]
        latency = tuple(
            row
            for t in _targets(a, b)
            for row in latency_rows(
                t, *_intervals(a, b, f"{t}.hlog"), whole, whole, threshold=threshold
            )
        )
        covered = "the whole of both runs"
    differs = profile_differences(a.profile, b.profile)
    return Comparison(
        a_path,
        b_path,
        profile_name(a),
        a.kind,
        threshold,
        differs,
        knees,
        outcomes,
        latency,
        covered,
    )


# --- comparable or not --------------------------------------------------------------------------


def not_comparable(a: RunFolder, b: RunFolder) -> str | None:
    """Why A and B cannot be compared (one line), or None. Different sim configurations are
    the point of comparing; a different profile, kind or set of sizes is another experiment."""
    for name, run in (("A", a), ("B", b)):
        if run.summary is None or not run.complete:
            return f"{name} is an interrupted run: nothing to compare ({run.path})"
    a_name, b_name = profile_name(a), profile_name(b)
    if a_name != b_name:
        return f"not comparable: A ran profile {a_name}, B ran {b_name}"
    if a.kind != b.kind:
        return f"not comparable: A is {KIND_NAMES[a.kind]}, B is {KIND_NAMES[b.kind]}"
    a_sizes, b_sizes = sizes(a), sizes(b)
    if a_sizes != b_sizes:
        return (
            f"not comparable: A swept sizes {_join(a_sizes)}, B swept {_join(b_sizes)} "
            "(rerun one with --sizes to match)"
        )
    return None


def profile_name(run: RunFolder) -> str:
    name = (run.summary or {}).get("profile") or run.profile.get("name")
    return str(name) if name else "(unnamed)"


def _join(values: Iterable[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values) or "none"


def profile_differences(
    a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 12
) -> tuple[str, ...]:
    """``field: A -> B`` for every leaf of the two resolved profiles that differs."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    keys = sorted(k for k in flat_a.keys() | flat_b.keys() if k not in IGNORED_FIELDS)
    out = [
        f"{k}: {_show(flat_a.get(k))} -> {_show(flat_b.get(k))}"
        for k in keys
        if flat_a.get(k) != flat_b.get(k)
    ]
    more = (f"... and {len(out) - limit} more",) if len(out) > limit else ()
    return (*out[:limit], *more)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# --- knees --------------------------------------------------------------------------------------


def knee_rows(a: RunFolder, b: RunFolder, *, threshold: float) -> tuple[KneeRow, ...]:
    """One row per target either ramp searched."""
    assert a.summary is not None
    assert b.summary is not None
    tolerance = max(threshold, _refine_within(a), _refine_within(b))
    nodes_a, nodes_b = _sim_nodes(a), _sim_nodes(b)
    nodes = nodes_a if nodes_a == nodes_b else None
    return tuple(
        knee_row(
            t, capacity(a.summary, t), capacity(b.summary, t), tolerance=tolerance, nodes=nodes
        )
        for t in _targets(a, b)
    )


def _targets(a: RunFolder, b: RunFolder) -> list[str]:
    """The targets either run aimed at (``api``, ``dns``): a target it did not use is null."""
    named = [(run.summary or {}).get("targets") or {} for run in (a, b)]
    return sorted({target for targets in named for target, url in targets.items() if url})


def _refine_within(run: RunFolder) -> float:
    value = _dig(run.profile, "load", "ramp", "refine_within")
    return float(value) if isinstance(value, int | float) else DEFAULT_REFINE_WITHIN


def _sim_nodes(run: RunFolder) -> int | None:
    nodes = _dig(run.profile, "sim", "nodes")
    return nodes if isinstance(nodes, int) else None


def _dig(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


# --- latency ------------------------------------------------------------------------------------


def latency_rows(
    scope: str,
    a: Mapping[str, Sequence[OpInterval]],
    b: Mapping[str, Sequence[OpInterval]],
    a_windows: Windows,
    b_windows: Windows,
    *,
    threshold: float,
) -> list[LatencyRow]:
    """p50 and p99 rows of every operation either run recorded in ``scope``; an operation with
    no interval inside the windows in either run (a kubelet's start-up GETs, after warm-up) has
    nothing to compare and gets no row."""
    rows = [
        latency_row(
            scope,
            op,
            quantile,
            interval_values_ms(a.get(op, ()), a_windows, quantile),
            interval_values_ms(b.get(op, ()), b_windows, quantile),
            threshold=threshold,
        )
        for op in sorted(a.keys() | b.keys())
        for quantile in QUANTILES
    ]
    return [row for row in rows if row.a_intervals or row.b_intervals]


def interval_values_ms(
    intervals: Sequence[OpInterval], windows: Sequence[tuple[float, float]], quantile: Quantile
) -> list[float]:
    """The ``quantile`` of every interval that lies inside one of ``windows`` ((start_s, end_s),
    ``OpInterval.within``), milliseconds; empty intervals are skipped."""
    values = []
    for interval in intervals:
        inside = any(interval.within(start, end) for start, end in windows)
        if inside and interval.histogram.get_total_count() > 0:
            values.append(
                interval.histogram.get_value_at_percentile(QUANTILES[quantile]) / US_PER_MS
            )
    return values


def common_passed_rates(
    a_steps: Sequence[Mapping[str, Any]], b_steps: Sequence[Mapping[str, Any]], target: str
) -> list[float]:
    """Offered rates that both ramps ran for ``target`` and passed every time they ran them."""

    def passed(steps: Sequence[Mapping[str, Any]]) -> set[float]:
        by_rate: dict[float, bool] = {}
        for step in steps:
            rate = step.get("offered")
            if step.get("target") != target or not isinstance(rate, int | float):
                continue
            ok = step.get("passed") is True and not step.get("generator_limited")
            by_rate[float(rate)] = by_rate.get(float(rate), True) and ok
        return {rate for rate, ok in by_rate.items() if ok}

    return sorted(passed(a_steps) & passed(b_steps))


def ramp_latency(
    a: RunFolder, b: RunFolder, *, threshold: float
) -> tuple[tuple[LatencyRow, ...], str]:
    """Latency rows over the steps both ramps passed at the same rate, and which those were."""
    rows: list[LatencyRow] = []
    said: list[str] = []
    for target in _targets(a, b):
        rates = common_passed_rates(read_steps(a), read_steps(b), target)
        if not rates:
            said.append(f"{target}: no offered rate was run and passed by both")
            continue
        a_windows, b_windows = _step_windows(a, target, rates), _step_windows(b, target, rates)
        hlogs = _intervals(a, b, f"{target}.hlog")
        rows += latency_rows(target, *hlogs, a_windows, b_windows, threshold=threshold)
        warmups = sorted({ramp_seconds(run, "warmup_s") for run in (a, b)})
        said.append(
            f"{target}: the steps at {_join(rates)}/s (run and passed in both), each step's "
            f"first {' / '.join(f'{w:g}' for w in warmups)} s skipped"
        )
    return tuple(rows), "; ".join(said)


def _step_windows(run: RunFolder, target: str, rates: Sequence[float]) -> Windows:
    timeline = read_timeline(run.path / TIMELINE_FILE)
    windows = step_windows(
        timeline,
        target,
        step_s=ramp_seconds(run, "step_s"),
        warmup_s=ramp_seconds(run, "warmup_s"),
        interval_s=interval_s(run),
    )
    return [
        (w.measure_from_s, w.end_s)
        for w in windows
        if any(same_rate(w.offered_per_s, rate) for rate in rates)
    ]


def sweep_latency(
    a: RunFolder, b: RunFolder, *, threshold: float
) -> tuple[tuple[LatencyRow, ...], str]:
    """Per size and agent kind: from the end of warm-up to the first failure in either run."""
    known = [w for run in (a, b) if (w := sweep_warmup_s(run)) is not None]
    warmup_s = max(known, default=0.0)
    rows: list[LatencyRow] = []
    cut: list[str] = []
    for n in sizes(a):
        failures = [
            float(t)
            for entry in (size_entry(a, n), size_entry(b, n))
            for key in ("api_saturation_at_s", "dns_failure_at_s")
            if isinstance(t := (entry or {}).get(key), int | float)
        ]
        end_s = min(failures, default=math.inf)
        if failures:
            cut.append(f"{n:,} nodes up to {end_s:,.0f} s")
        for kind in _kinds(size_dir(a, n), size_dir(b, n)):
            hlogs = _size_intervals(a, b, n, f"{kind}.hlog")
            window = [(warmup_s, end_s)]
            rows += latency_rows(f"{n:,} nodes {kind}", *hlogs, window, window, threshold=threshold)
    source = (
        f"after the warm-up of {warmup_s:g} s (phases.warmup_s of the profile as run; the "
        "--quick phases when it ran with --quick)"
        if known
        else "from the start of each size (the profile as run names no warm-up)"
    )
    stop = f", to the first failure in either run ({'; '.join(cut)})" if cut else ""
    return tuple(rows), f"each size {source}{stop}"


def _kinds(*dirs: Path) -> list[str]:
    found = {
        p.name.removesuffix(".hlog")
        for d in dirs
        for p in d.glob("*.hlog")
        if not p.name.endswith(UNCORRECTED_SUFFIX)
    }
    return sorted(found)


def _intervals(
    a: RunFolder, b: RunFolder, name: str
) -> tuple[dict[str, list[OpInterval]], dict[str, list[OpInterval]]]:
    return op_intervals(a.path / name), op_intervals(b.path / name)


def _size_intervals(
    a: RunFolder, b: RunFolder, n: int, name: str
) -> tuple[dict[str, list[OpInterval]], dict[str, list[OpInterval]]]:
    return op_intervals(size_dir(a, n) / name), op_intervals(size_dir(b, n) / name)
