"""timeline.csv: a fixed header, one flushed row per interval, read back even when cut short."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from loadlab.metrics.recorder import Recorder
from loadlab.metrics.stats import WindowStats, window_stats
from loadlab.metrics.timeline import ERROR_LABELS, TimelineWriter, read_timeline, timeline_header
from loadlab.targets.base import Outcome

MS = 1_000_000
S = 1_000_000_000
OPS = {"api": ["get-lease", "list-pods"], "dns": ["a"]}


def _api_second(rec: Recorder, sec: int, n_ok: int, n_429: int) -> WindowStats:
    base = sec * S
    for i in range(n_ok + n_429):
        t = base + i * MS
        rec.on_dispatch(t, t)
        outcome = Outcome.OK if i < n_ok else Outcome.THROTTLED
        rec.complete(i % 2, outcome, t, t, t + 20 * MS)
    rec.on_skipped(2)
    return window_stats([rec.rotate(base + S)])


def test_timeline_round_trip_has_one_row_per_second(tmp_path: Path) -> None:
    path = tmp_path / "timeline.csv"
    rec = Recorder("api", OPS["api"], start_ns=0)
    with TimelineWriter(path, ["api", "dns"], OPS) as timeline:
        for sec in range(3):
            timeline.write_row(float(sec + 1), {"api": _api_second(rec, sec, 100 * (sec + 1), 5)})

    rows = read_timeline(path)
    assert [r["t_s"] for r in rows] == [1.0, 2.0, 3.0]
    assert [r["api_sent_per_s"] for r in rows] == [105.0, 205.0, 305.0]
    assert [r["api_offered_per_s"] for r in rows] == [107.0, 207.0, 307.0]
    assert [r["api_achieved_per_s"] for r in rows] == [100.0, 200.0, 300.0]
    assert [r["api_errors_429_per_s"] for r in rows] == [5.0, 5.0, 5.0]
    assert rows[0]["api_errors_timeout_per_s"] == 0.0
    assert rows[0]["api_p99_ms"] == pytest.approx(20.0, rel=2e-3)
    assert rows[0]["api_op_get-lease_p99_ms"] == pytest.approx(20.0, rel=2e-3)
    # dns had no stats: its cells are empty, not zero.
    assert rows[0]["dns_sent_per_s"] is None
    assert rows[0]["dns_op_a_p99_ms"] is None


def test_header_is_fixed_up_front_with_every_error_label(tmp_path: Path) -> None:
    path = tmp_path / "timeline.csv"
    TimelineWriter(path, ["api"], OPS).close()
    header = path.read_text().splitlines()[0].split(",")
    assert header == timeline_header(["api"], OPS)
    assert header[:4] == ["t_s", "api_offered_per_s", "api_sent_per_s", "api_achieved_per_s"]
    assert {f"api_errors_{label}_per_s" for label in ERROR_LABELS} <= set(header)
    assert "api_errors_ok_per_s" not in header
    assert read_timeline(path) == []


def test_rows_are_on_disk_before_close_and_a_torn_row_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "timeline.csv"
    rec = Recorder("api", OPS["api"], start_ns=0)
    timeline = TimelineWriter(path, ["api"], OPS)
    for sec in range(2):
        timeline.write_row(float(sec + 1), {"api": _api_second(rec, sec, 10, 0)})
    # Not closed, as after a SIGKILL: both rows are already there.
    assert len(read_timeline(path)) == 2
    timeline.close()

    torn = tmp_path / "torn.csv"
    torn.write_text(path.read_text() + "3.000,11.0,1")
    assert [r["t_s"] for r in read_timeline(torn)] == [1.0, 2.0]


@dataclass(frozen=True)
class Sample:
    cpu_percent: float
    rss_mb: float


def test_write_takes_snapshots_offered_rates_and_generator_use(tmp_path: Path) -> None:
    path = tmp_path / "timeline.csv"
    api = Recorder("api", OPS["api"], start_ns=0)
    dns = Recorder("dns", OPS["dns"], start_ns=0)
    with TimelineWriter(path, ["api", "dns"], OPS) as timeline:
        for sec in range(2):
            for i in range(40):
                t = sec * S + i * MS
                api.on_dispatch(t, t)
                api.complete(0, Outcome.OK, t, t, t + 5 * MS)
            timeline.write(
                {"api": api.rotate((sec + 1) * S), "dns": dns.rotate((sec + 1) * S)},
                offered_per_s={"api": 50.0},
                generator=Sample(cpu_percent=12.5, rss_mb=80.0),
            )

    rows = read_timeline(path)
    assert [r["t_s"] for r in rows] == [1.0, 2.0]
    assert rows[1]["api_offered_per_s"] == 50.0  # asked for, though only 40 were planned
    assert rows[1]["api_sent_per_s"] == 40.0
    assert rows[1]["dns_offered_per_s"] == 0.0  # no rate given: planned per second
    assert rows[1]["dns_p99_ms"] == 0.0
    assert rows[1]["generator_cpu_percent"] == 12.5
    assert rows[1]["generator_rss_mb"] == 80.0
