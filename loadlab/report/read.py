"""A results folder read back: the files ``loadlab run`` wrote, as plain data for reports.

Everything here reads; nothing writes. A killed run (no ``summary.json``) is still a folder to
read: its timeline, hlogs and ``steps.jsonl`` say what happened up to the kill, so a report can
show them while claiming nothing. A folder that is not a run, or a file that does not parse, is a
user's mistake (``UsageError``, one line), never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hdrh.histogram import HdrHistogram

from loadlab.errors import UsageError
from loadlab.metrics.hlog import HlogInterval, read_hlog
from loadlab.metrics.recorder import new_histogram
from loadlab.metrics.timeline import read_timeline as _read_timeline_rows
from loadlab.results import RUN_ID_FILE

RunKind = Literal["ramp", "fixed", "sweep"]

PROFILE_FILE = "profile.resolved.json"
SUMMARY_FILE = "summary.json"
MACHINE_FILE = "machine.json"
STEPS_FILE = "steps.jsonl"
TIMELINE_FILE = "timeline.csv"
OK_OUTCOME = "ok"
DNS_KIND = "pod-dns"
"""The agent kind of a sweep that resolves names; every other kind talks to the API server."""
LOOKUP_OP = "lookup"
"""pod-dns's operation as an application sees it, end to end (``dns-wire`` is one query)."""
INTERVAL_SLACK_S = 0.5
"""Half an interval of ticker slack, as the run itself allows when judging a window: an interval
that starts or ends this much outside a window still belongs to it."""


@dataclass(frozen=True)
class RunFolder:
    """One results folder, its JSON files parsed."""

    path: Path
    summary: dict[str, Any] | None
    """``summary.json``; None for a run that was killed before writing it."""
    profile: dict[str, Any]
    """``profile.resolved.json``: the profile as run ({} when the folder has none)."""
    kind: RunKind
    """``sweep`` (an agent scenario over sizes), ``ramp`` (a stepped search), else ``fixed``."""
    complete: bool
    """The run says it finished everything it planned (False without a summary)."""
    machine: dict[str, Any] | None = None
    """``machine.json`` (hostname, os, cpus, ...); None for runs from before it was written."""


@dataclass(frozen=True)
class OpInterval:
    """One interval of one operation, its outcome tags merged."""

    start_s: float
    """Seconds since the run's (or the size's) start."""
    end_s: float
    histogram: HdrHistogram
    """Latency in microseconds, corrected for coordinated omission."""

    def within(self, start_s: float, end_s: float) -> bool:
        """Inside [start_s, end_s], give or take ``INTERVAL_SLACK_S``."""
        return self.start_s >= start_s - INTERVAL_SLACK_S and self.end_s <= end_s + INTERVAL_SLACK_S


@dataclass(frozen=True)
class StepWindow:
    """Where one ramp step sits on the run's time axis (seconds since the start)."""

    offered_per_s: float
    start_s: float
    measure_from_s: float
    """``start_s`` plus the step's warm-up: what the step's verdict judged starts here."""
    end_s: float


def load_run(path: Path) -> RunFolder:
    """Read a results folder; ``UsageError`` (one line) when it is not one or a file is broken."""
    if not path.exists():
        raise UsageError(f"{path}: no such results folder")
    if not path.is_dir():
        raise UsageError(f"{path}: not a folder; give a results folder written by loadlab run")
    has_profile = (path / PROFILE_FILE).is_file()
    has_summary = (path / SUMMARY_FILE).is_file()
    has_sizes = any(_size_dirs(path))
    if not (has_profile or has_summary or has_sizes):
        if (path / RUN_ID_FILE).is_file():
            raise UsageError(
                f"{path}: the run stopped before writing any result; nothing to report"
            )
        raise UsageError(
            f"{path}: not a loadlab results folder (no {RUN_ID_FILE}, {PROFILE_FILE} or "
            f"{SUMMARY_FILE})"
        )
    # A sweep's folder holds no profile.resolved.json yet (its sizes are the record): {}.
    profile = _read_json_object(path / PROFILE_FILE) if has_profile else {}
    summary = _read_json_object(path / SUMMARY_FILE) if has_summary else None
    machine = _read_json_object(path / MACHINE_FILE) if (path / MACHINE_FILE).is_file() else None
    return RunFolder(
        path=path,
        summary=summary,
        profile=profile,
        kind=_kind(profile, summary, has_sizes),
        complete=bool(summary.get("complete")) if summary is not None else False,
        machine=machine,
    )


def _size_dirs(path: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in path.glob("size-*"):
        number = child.name.removeprefix("size-")
        if number.isdigit() and child.is_dir():
            found[int(number)] = child
    return found


def _kind(profile: dict[str, Any], summary: dict[str, Any] | None, has_sizes: bool) -> RunKind:
    swept = summary is not None and summary.get("kind") == "sweep"
    if swept or has_sizes or profile.get("agents"):
        return "sweep"
    load = profile.get("load")
    if isinstance(load, dict) and load.get("ramp"):
        return "ramp"
    return "fixed"


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def sizes(run: RunFolder) -> list[int]:
    """The cluster sizes of a sweep that left a trace (a ``size-<N>`` folder or a summary
    entry), ascending; ``[]`` for a ramp or fixed run."""
    if run.kind != "sweep":
        return []
    found = set(_size_dirs(run.path))
    for entry in (run.summary or {}).get("sizes") or []:
        if isinstance(entry, dict) and isinstance(entry.get("nodes"), int):
            found.add(entry["nodes"])
    return sorted(found)


def size_dir(run: RunFolder, n: int) -> Path:
    """The folder of size ``n`` of a sweep (it may not exist for a size that never started)."""
    return run.path / f"size-{n}"


def size_entry(run: RunFolder, n: int) -> dict[str, Any] | None:
    """The summary's record of size ``n`` (None for a killed sweep or a size it never reached)."""
    for entry in (run.summary or {}).get("sizes") or []:
        if isinstance(entry, dict) and entry.get("nodes") == n:
            return entry
    return None


def op_intervals(hlog_path: Path, *, ok_only: bool = True) -> dict[str, list[OpInterval]]:
    """Per operation, its intervals in time order; an interval's outcome tags are merged
    (``ok_only``: only ``<op>/ok`` lines count, so errors that answer fast do not flatter the
    percentiles). A missing file (a kind that never ran) gives ``{}``."""
    merged: dict[str, dict[tuple[float, float], list[HdrHistogram]]] = {}
    for line in _hlog_lines(hlog_path):
        op, _, outcome = (line.tag or "").partition("/")
        if ok_only and outcome != OK_OUTCOME:
            continue
        merged.setdefault(op, {}).setdefault(_interval_key(line), []).append(line.histogram)
    return {
        op: [
            OpInterval(start_s, end_s, _merge(hists))
            for (start_s, end_s), hists in sorted(by_time.items())
        ]
        for op, by_time in merged.items()
    }


@dataclass(frozen=True)
class OutcomeCount:
    """How many of one operation's completions in one interval were OK, and how many not."""

    start_s: float
    end_s: float
    ok: int
    failed: int


def outcome_counts(hlog_path: Path, op: str) -> list[OutcomeCount]:
    """Per interval (time order), ``op``'s completions split into ``ok`` and the rest; ``[]``
    for a missing file."""
    counts: dict[tuple[float, float], list[int]] = {}
    for line in _hlog_lines(hlog_path):
        line_op, _, outcome = (line.tag or "").partition("/")
        if line_op != op:
            continue
        cell = counts.setdefault(_interval_key(line), [0, 0])
        cell[0 if outcome == OK_OUTCOME else 1] += line.histogram.get_total_count()
    return [
        OutcomeCount(start_s, end_s, ok, failed)
        for (start_s, end_s), (ok, failed) in sorted(counts.items())
    ]


def _hlog_lines(hlog_path: Path) -> list[HlogInterval]:
    """Every complete line of an interval log; none for a missing file (a kind that never ran)."""
    if not hlog_path.is_file():
        return []
    try:
        return read_hlog(hlog_path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{hlog_path}: not a readable interval log ({exc})") from None


def _interval_key(line: HlogInterval) -> tuple[float, float]:
    """(start_s, end_s) to the millisecond the hlog writes them with (``%.3f``): the lines of one
    interval, one per (op, outcome), share it."""
    return round(line.start_s, 3), round(line.end_s, 3)


def _merge(histograms: Sequence[HdrHistogram]) -> HdrHistogram:
    if len(histograms) == 1:
        return histograms[0]
    total = new_histogram()
    for histogram in histograms:
        total.add(histogram)
    return total


def merged_histogram(
    intervals: Mapping[str, Sequence[OpInterval]],
    start_s: float = float("-inf"),
    end_s: float = float("inf"),
) -> HdrHistogram:
    """Every operation's intervals that lie inside [start_s, end_s] (``OpInterval.within``),
    merged."""
    total = new_histogram()
    for op_list in intervals.values():
        for interval in op_list:
            if interval.within(start_s, end_s):
                total.add(interval.histogram)
    return total


def read_timeline(path: Path) -> list[dict[str, float | None]]:
    """Every complete row of a ``timeline.csv`` (empty cells are None); a missing file gives
    ``[]``: a run killed before its first interval."""
    if not path.is_file():
        return []
    try:
        return _read_timeline_rows(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable timeline ({exc})") from None


def read_steps(run: RunFolder) -> list[dict[str, Any]]:
    """The ramp's steps in the order they ran: the summary's, or for a killed run every complete
    line of ``steps.jsonl`` (a line cut by the kill is skipped)."""
    if run.summary is not None and isinstance(run.summary.get("steps"), list):
        return [s for s in run.summary["steps"] if isinstance(s, dict)]
    path = run.path / STEPS_FILE
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    steps: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.split("\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        if isinstance(step, dict):
            steps.append(step)
    return steps


RATE_TOLERANCE_PER_S = 1e-3
"""timeline.csv writes rates with three decimals while steps keep every digit: a bisected rate
such as 101.5625/s is the same step within this."""


def same_rate(a: float, b: float) -> bool:
    """A step's offered rate and a timeline window's, equal but for the timeline's rounding."""
    return math.isclose(a, b, abs_tol=RATE_TOLERANCE_PER_S)


def interval_s(run: RunFolder) -> float:
    """The run's interval (``interval_s`` of the profile as run; 1 s by default)."""
    value = run.profile.get("interval_s")
    return float(value) if isinstance(value, int | float) and value > 0 else 1.0


def ramp_seconds(run: RunFolder, key: str) -> float:
    """``load.ramp.<key>`` (``step_s``, ``warmup_s``) as the session ran it: rounded up to whole
    intervals, since steps begin and end on interval boundaries."""
    ramp = (run.profile.get("load") or {}).get("ramp") or {}
    value = ramp.get(key)
    seconds = float(value) if isinstance(value, int | float) else 0.0
    every = interval_s(run)
    return math.ceil(seconds / every - 1e-9) * every


def step_windows(
    timeline: Sequence[dict[str, float | None]],
    target: str,
    *,
    step_s: float | None = None,
    warmup_s: float = 0.0,
    interval_s: float = 1.0,
) -> list[StepWindow]:
    """The ramp's steps of ``target`` located on the time axis, from ``timeline.csv``.

    A row's ``<target>_offered_per_s`` is the rate asked for when the row was written, just after
    its interval closed, so the interval that ends a step is often labelled 0 (the rate was
    already reset) and the one that starts it is sometimes labelled with the step's rate before
    anything was sent. A step is therefore a run of rows with one non-zero offered rate; it starts
    one interval before its first row with sends and lasts ``step_s`` (the profile's
    ``load.ramp.step_s``, warm-up included). Without ``step_s`` it ends with its last labelled row
    with sends, or the 0-labelled row after it when that one still sent at half the rate or more
    (a few stragglers sent after the step's end do not stretch it). Exact to one interval.
    """
    offered_col, sent_col = f"{target}_offered_per_s", f"{target}_sent_per_s"
    windows: list[StepWindow] = []
    i = 0
    while i < len(timeline):
        offered = timeline[i].get(offered_col) or 0.0
        if offered <= 0:
            i += 1
            continue
        j = i
        while j < len(timeline) and (timeline[j].get(offered_col) or 0.0) == offered:
            j += 1
        sent_rows = [r for r in timeline[i:j] if (r.get(sent_col) or 0.0) > 0]
        after = timeline[j] if j < len(timeline) else None
        ends_late = after is not None and not after.get(offered_col)
        if after is not None and ends_late and (after.get(sent_col) or 0.0) >= offered / 2:
            sent_rows.append(after)
        times = [float(t) for r in sent_rows if (t := r.get("t_s")) is not None]
        if times:
            start_s = max(times[0] - interval_s, 0.0)
            end_s = start_s + step_s if step_s is not None else times[-1]
            measure_from_s = min(start_s + warmup_s, end_s)
            windows.append(StepWindow(offered, start_s, measure_from_s, end_s))
        i = j
    return windows
