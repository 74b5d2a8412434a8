"""HdrHistogram interval logs (``*.hlog``, format v1.3), written as the run goes.

One file per target and kind: ``api.hlog`` (latency from the intended send time) and
``api.uncorrected.hlog`` (from the actual send). Each interval adds one line per
(operation, outcome)::

    Tag=get-lease/ok,12.000,1.000,3.215,HISTFAAAA...

start and length in seconds relative to ``#[BaseTime]`` (the run's start), the interval's max in
milliseconds (values are recorded in microseconds, so the max is divided by 1000 where Java's
writer divides nanoseconds by 1e6), then the ``encode()`` payload. The file is flushed after every
interval, so a run killed with SIGKILL leaves every complete line readable by
``hdrh.log.HistogramLogReader`` and Java's HistogramLogAnalyzer. The lines are written here, not
with hdrh's ``HistogramLogWriter``, whose ``output_start_time`` is broken (it calls a
non-existent ``iso_format``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TextIO

from hdrh.histogram import HdrHistogram

from loadlab.clock import US_PER_MS
from loadlab.metrics.recorder import IntervalSnapshot, decode_histogram

FORMAT_VERSION = "1.3"
_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
_TAG_UNSAFE = re.compile(r"[,\s]")  # the log format splits on commas; tags hold no whitespace
_START_TIME = re.compile(r"#\[StartTime: *([\d.]+)")
_BASE_TIME = re.compile(r"#\[BaseTime: *([\d.]+)")


def safe_tag(tag: str) -> str:
    """``tag`` with commas and whitespace replaced, as the log format requires."""
    return _TAG_UNSAFE.sub("_", tag)


class HlogWriter:
    """Writes one interval log; every ``write`` call ends with a flush, so a killed run keeps
    every complete line (the OS holds flushed data even when the process dies)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start_time_epoch_s: float,
        corrected: bool = True,
    ) -> None:
        """``corrected`` picks what ``write(snapshot)`` logs: latency from the intended send
        time (``api.hlog``) or, when False, from the actual send (``api.uncorrected.hlog``)."""
        self.path = Path(path)
        self.corrected = corrected
        self._file: TextIO = self.path.open("w", encoding="ascii", newline="\n")
        when = datetime.fromtimestamp(start_time_epoch_s, tz=UTC).isoformat()
        self._file.write(f"#[Histogram log format version {FORMAT_VERSION}]\n")
        self._file.write(f"#[StartTime: {start_time_epoch_s:.3f} (seconds since epoch), {when}]\n")
        self._file.write(f"#[BaseTime: {start_time_epoch_s:.3f} (seconds since epoch)]\n")
        self._file.write(f"{_LEGEND}\n")
        self._flush()

    def write(self, snapshot: IntervalSnapshot) -> None:
        """Append one line per (op, outcome) of ``snapshot``, tagged ``<op>/<outcome>``, of this
        writer's kind (see ``corrected``); flush."""
        blobs = snapshot.corrected if self.corrected else snapshot.uncorrected
        for key in sorted(blobs):  # (op index, Outcome): an IntEnum, so ordered by value
            payload = blobs[key]
            # The line carries the interval max; decoding (~0.1 ms) beats carrying it around.
            max_us = decode_histogram(payload).get_max_value()
            self._write_line(
                snapshot.tag(key), snapshot.start_s, snapshot.duration_s, payload, max_us
            )
        self._flush()

    def close(self) -> None:
        if not self._file.closed:
            self._flush()
            self._file.close()

    def __enter__(self) -> HlogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_line(
        self, tag: str, start_s: float, length_s: float, payload: bytes, max_us: int
    ) -> None:
        self._file.write(
            f"Tag={safe_tag(tag)},{start_s:.3f},{length_s:.3f},{max_us / US_PER_MS:.3f},"
            f"{payload.decode('ascii')}\n"
        )

    def _flush(self) -> None:
        self._file.flush()


class TargetHlogs:
    """The two logs of one target: ``<target>.hlog`` and ``<target>.uncorrected.hlog``."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        target: str,
        *,
        start_time_epoch_s: float,
    ) -> None:
        out = Path(out_dir)
        self.corrected = HlogWriter(out / f"{target}.hlog", start_time_epoch_s=start_time_epoch_s)
        self.uncorrected = HlogWriter(
            out / f"{target}.uncorrected.hlog",
            start_time_epoch_s=start_time_epoch_s,
            corrected=False,
        )

    def write(self, snapshot: IntervalSnapshot) -> None:
        self.corrected.write(snapshot)
        self.uncorrected.write(snapshot)

    def close(self) -> None:
        self.corrected.close()
        self.uncorrected.close()

    def __enter__(self) -> TargetHlogs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HlogInterval(NamedTuple):
    """One interval line read back."""

    tag: str | None
    start_s: float
    """Seconds since the log's StartTime (the run's start)."""
    end_s: float
    histogram: HdrHistogram


def read_hlog(path: str | os.PathLike[str]) -> list[HlogInterval]:
    """Every complete interval line of an hlog file, in file order.

    A last line without its newline (a writer killed mid-line) is ignored; a complete line that
    does not decode raises ``ValueError`` naming the line.
    """
    start_time_s: float | None = None
    base_time_s = 0.0
    intervals: list[HlogInterval] = []
    text = Path(path).read_text(encoding="ascii", errors="replace")
    for lineno, line in enumerate(text.split("\n")[:-1], start=1):
        if line.startswith("#"):
            if m := _START_TIME.match(line):
                start_time_s = float(m.group(1))
            elif m := _BASE_TIME.match(line):
                base_time_s = float(m.group(1))
            continue
        if not line or line.startswith('"'):
            continue
        tag: str | None = None
        if line.startswith("Tag="):
            tag, _, line = line[4:].partition(",")
        try:
            start_txt, length_txt, _max, payload = line.split(",", 3)
            absolute_start_s = float(start_txt) + base_time_s
            histogram = decode_histogram(payload.encode("ascii"))
            length_s = float(length_txt)
        except Exception as exc:  # hdrh raises TypeError, zlib.error, its own cookie errors
            raise ValueError(f"{path}:{lineno}: not an interval line ({exc})") from exc
        if start_time_s is None:
            start_time_s = absolute_start_s
        start_s = absolute_start_s - start_time_s
        intervals.append(HlogInterval(tag, start_s, start_s + length_s, histogram))
    return intervals
