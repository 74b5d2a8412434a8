"""Interval logs: hdrh's own reader and ``read_hlog`` read back what was written, even cut short."""

from __future__ import annotations

from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadlab.metrics.hlog import HlogWriter, TargetHlogs, read_hlog
from loadlab.metrics.recorder import IntervalSnapshot, Recorder, new_histogram
from loadlab.targets.base import Outcome

MS = 1_000_000
S = 1_000_000_000
EPOCH_S = 1_700_000_000.0


def _run(seconds: int) -> list[IntervalSnapshot]:
    """Each second: (sec+1)*10 OK gets at 5 ms (2 ms from send), and 3 timed-out lists."""
    rec = Recorder("api", ["get-lease", "list pods"], start_ns=7 * S)
    snaps = []
    for sec in range(seconds):
        base = 7 * S + sec * S
        for _ in range((sec + 1) * 10):
            rec.complete(0, Outcome.OK, base, base + 3 * MS, base + 5 * MS)
        for _ in range(3):
            rec.complete(1, Outcome.TIMEOUT, base, base, base + 900 * MS)
        snaps.append(rec.rotate(base + S))
    return snaps


def _read_all_with_hdrh(path: Path) -> list[HdrHistogram]:
    reader = HistogramLogReader(str(path), new_histogram())
    try:
        out = []
        for _ in range(1000):  # bounded
            hist = reader.get_next_interval_histogram()
            if hist is None:
                break
            out.append(hist)
        return out
    finally:
        reader.close()


def test_hdrh_reader_reads_tagged_lines_with_matching_counts(tmp_path: Path) -> None:
    snaps = _run(3)
    with TargetHlogs(tmp_path, "api", start_time_epoch_s=EPOCH_S) as logs:
        for snap in snaps:
            logs.write(snap)

    hists = _read_all_with_hdrh(tmp_path / "api.hlog")
    assert [(h.get_tag(), h.get_total_count()) for h in hists] == [
        ("get-lease/ok", 10),
        ("list_pods/timeout", 3),
        ("get-lease/ok", 20),
        ("list_pods/timeout", 3),
        ("get-lease/ok", 30),
        ("list_pods/timeout", 3),
    ]
    # Absolute start times: StartTime + the interval's offset from the run's start.
    assert hists[2].get_start_time_stamp() == pytest.approx((EPOCH_S + 1.0) * 1000.0)
    assert hists[0].get_value_at_percentile(50.0) == pytest.approx(5_000, rel=1e-3)

    uncorrected = _read_all_with_hdrh(tmp_path / "api.uncorrected.hlog")
    assert uncorrected[0].get_value_at_percentile(50.0) == pytest.approx(2_000, rel=1e-3)


def test_read_hlog_reads_the_untagged_lines_other_writers_write(tmp_path: Path) -> None:
    """loadlab tags every line; a log from hdrh's or Java's writer may carry none."""
    path = tmp_path / "plain.hlog"
    hist = new_histogram()
    for v in range(1, 101):
        hist.record_value(v * 1000)
    payload = hist.encode().decode("ascii")
    path.write_text(
        f"#[StartTime: {EPOCH_S:.3f} (seconds since epoch)]\n"
        f"#[BaseTime: {EPOCH_S:.3f} (seconds since epoch)]\n"
        f"0.000,1.000,100.000,{payload}\n1.000,1.000,100.000,{payload}\n"
    )

    intervals = read_hlog(path)
    assert [(i.tag, i.start_s, i.end_s) for i in intervals] == [
        (None, 0.0, 1.0),
        (None, 1.0, 2.0),
    ]
    assert [i.histogram.get_total_count() for i in intervals] == [100, 100]
    assert [h.get_tag() for h in _read_all_with_hdrh(path)] == [None, None]


def test_read_hlog_returns_tags_times_and_histograms(tmp_path: Path) -> None:
    with TargetHlogs(tmp_path, "api", start_time_epoch_s=EPOCH_S) as logs:
        for snap in _run(2):
            logs.write(snap)

    intervals = read_hlog(tmp_path / "api.hlog")
    assert [(i.tag, i.start_s, i.end_s, i.histogram.get_total_count()) for i in intervals] == [
        ("get-lease/ok", 0.0, 1.0, 10),
        ("list_pods/timeout", 0.0, 1.0, 3),
        ("get-lease/ok", 1.0, 2.0, 20),
        ("list_pods/timeout", 1.0, 2.0, 3),
    ]


def test_a_log_cut_mid_line_still_yields_every_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "api.hlog"
    with HlogWriter(path, start_time_epoch_s=EPOCH_S) as writer:
        for snap in _run(3):
            writer.write(snap)
    data = path.read_bytes()
    payload_start = data.rstrip(b"\n").rfind(b",") + 1
    cut = tmp_path / "cut.hlog"
    cut.write_bytes(data[: payload_start + 12])  # a kill mid-payload of the last line

    intervals = read_hlog(cut)
    assert [i.histogram.get_total_count() for i in intervals] == [10, 3, 20, 3, 30]

    # hdrh's reader gets the same complete lines, then fails to decode the torn one (base64 or
    # length errors, depending on where the cut falls).
    reader = HistogramLogReader(str(cut), new_histogram())
    counts = []
    torn_line_raised = False
    try:
        for _ in range(10):
            try:
                hist = reader.get_next_interval_histogram()
            except Exception:
                torn_line_raised = True
                break
            if hist is None:
                break
            counts.append(hist.get_total_count())
    finally:
        reader.close()
    assert counts == [10, 3, 20, 3, 30]
    assert torn_line_raised


def test_a_writer_killed_between_intervals_leaves_a_readable_log(tmp_path: Path) -> None:
    """Flushed per interval: what a killed process wrote is on disk without close()."""
    path = tmp_path / "api.hlog"
    writer = HlogWriter(path, start_time_epoch_s=EPOCH_S)
    for snap in _run(2):
        writer.write(snap)
    # No close(): read the file as another process would after a SIGKILL.
    assert len(read_hlog(path)) == 4
    writer.close()


def test_a_complete_but_corrupt_line_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.hlog"
    path.write_text("#[BaseTime: 0.000 (seconds since epoch)]\n0.000,1.000,1.0,notbase64!!\n")
    with pytest.raises(ValueError, match=r"bad\.hlog:2"):
        read_hlog(path)


def test_tags_never_carry_commas_or_spaces(tmp_path: Path) -> None:
    path = tmp_path / "t.hlog"
    rec = Recorder("api", ["list, pods now"], start_ns=0)
    rec.complete(0, Outcome.OK, 0, 0, 10 * MS)
    with HlogWriter(path, start_time_epoch_s=EPOCH_S) as writer:
        writer.write(rec.rotate(S))
    assert read_hlog(path)[0].tag == "list__pods_now/ok"
