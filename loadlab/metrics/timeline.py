"""``timeline.csv``: one row per interval (normally per second), flushed row by row.

Columns, fixed when the file is opened: ``t_s`` (end of the interval, seconds since the run's
start), then per target (``api_...``, ``dns_...``): ``offered_per_s`` (the rate asked for, else
planned/s), ``sent_per_s``, ``achieved_per_s`` (OK completions), ``errors_<label>_per_s`` for
every non-OK outcome label, ``p50_ms``/``p90_ms``/``p99_ms`` (corrected, all operations),
``lag_p99_ms``, then ``op_<name>_p99_ms`` per operation; last, the generator's own
``generator_cpu_percent`` and ``generator_rss_mb``. Missing data leaves cells empty. A run killed
mid-row leaves every complete row readable by ``read_timeline``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, TextIO

from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.metrics.stats import WindowStats, window_stats
from loadlab.targets.base import Outcome

ERROR_LABELS: tuple[str, ...] = tuple(o.label for o in Outcome if o is not Outcome.OK)
"""Outcome labels that get an errors column (an op may still count some of them as OK)."""

_TARGET_COLUMNS = ("offered_per_s", "sent_per_s", "achieved_per_s")
_LATENCY_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "lag_p99_ms")
_GENERATOR_COLUMNS = ("generator_cpu_percent", "generator_rss_mb")


class GeneratorReading(Protocol):
    """The generator's resource use over an interval (the engine's ``GeneratorSample``)."""

    @property
    def cpu_percent(self) -> float: ...

    @property
    def rss_mb(self) -> float: ...


def timeline_header(
    targets: Sequence[str], op_names_by_target: Mapping[str, Sequence[str]]
) -> list[str]:
    """The column names, in order."""
    header = ["t_s"]
    for target in targets:
        header += [f"{target}_{c}" for c in _TARGET_COLUMNS]
        header += [f"{target}_errors_{label}_per_s" for label in ERROR_LABELS]
        header += [f"{target}_{c}" for c in _LATENCY_COLUMNS]
        header += [f"{target}_op_{op}_p99_ms" for op in op_names_by_target.get(target, ())]
    header += list(_GENERATOR_COLUMNS)
    return header


class TimelineWriter:
    """Writes ``timeline.csv``; the header goes out at once, each row is flushed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        targets: Sequence[str],
        op_names_by_target: Mapping[str, Sequence[str]],
    ) -> None:
        self.path = Path(path)
        self.targets = tuple(targets)
        self.op_names_by_target = {t: tuple(op_names_by_target.get(t, ())) for t in self.targets}
        self.header = timeline_header(self.targets, self.op_names_by_target)
        self._file: TextIO = self.path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(self.header)
        self._file.flush()

    def write(
        self,
        snapshots: Mapping[str, IntervalSnapshot],
        *,
        offered_per_s: Mapping[str, float] | None = None,
        generator: GeneratorReading | None = None,
    ) -> dict[str, WindowStats]:
        """One interval from each target's snapshot (all closed at the same boundary).

        Returns the interval's stats per target, so a caller that also shows them does not
        merge and scan the histograms a second time.
        """
        if not snapshots:
            return {}
        t_s = max(s.end_s for s in snapshots.values())
        stats = {name: window_stats([snap]) for name, snap in snapshots.items()}
        self.write_row(t_s, stats, offered_per_s=offered_per_s, generator=generator)
        return stats

    def write_row(
        self,
        t_s: float,
        stats_by_target: Mapping[str, WindowStats],
        *,
        offered_per_s: Mapping[str, float] | None = None,
        generator: GeneratorReading | None = None,
    ) -> None:
        """One interval; ``stats_by_target`` is ``window_stats`` of that interval per target.

        ``offered_per_s`` is the rate each target was asked for (absent: planned per second).
        """
        row: list[str] = [_fmt(t_s)]
        for target in self.targets:
            stats = stats_by_target.get(target)
            ops = self.op_names_by_target[target]
            if stats is None:
                width = len(_TARGET_COLUMNS) + len(ERROR_LABELS) + len(_LATENCY_COLUMNS) + len(ops)
                row += [""] * width
                continue
            offered = (offered_per_s or {}).get(target)
            row += [
                _fmt(stats.planned_per_s if offered is None else offered),
                _fmt(stats.sent_per_s),
                _fmt(stats.achieved_per_s),
            ]
            row += [
                _fmt(stats.per_s(stats.errors_by_outcome.get(label, 0))) for label in ERROR_LABELS
            ]
            row += [
                _fmt(stats.latency.p50_ms),
                _fmt(stats.latency.p90_ms),
                _fmt(stats.latency.p99_ms),
                _fmt(stats.lag_p99_ms),
            ]
            row += [
                _fmt(stats.latency_by_op[op].p99_ms) if op in stats.latency_by_op else ""
                for op in ops
            ]
        if generator is None:
            row += [""] * len(_GENERATOR_COLUMNS)
        else:
            row += [_fmt(generator.cpu_percent), _fmt(generator.rss_mb)]
        self._csv.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> TimelineWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_timeline(path: str | os.PathLike[str]) -> list[dict[str, float | None]]:
    """Every complete row, as column -> number (None for an empty cell).

    A last row without its newline (a writer killed mid-row) is ignored.
    """
    text = Path(path).read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(complete))
    header = next(reader, None)
    if header is None:
        return []
    return [
        {name: (float(cell) if cell else None) for name, cell in zip(header, row, strict=True)}
        for row in reader
    ]


def _fmt(value: float) -> str:
    return f"{value:.3f}"
