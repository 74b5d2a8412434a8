"""Reading a results folder back: real runs, a killed run, and folders that are not runs."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadlab.errors import UsageError
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import Recorder
from loadlab.report.compare_read import interval_values_ms
from loadlab.report.read import (
    OpInterval,
    RunFolder,
    interval_s,
    load_run,
    op_intervals,
    outcome_counts,
    ramp_seconds,
    read_steps,
    read_timeline,
    same_rate,
    size_dir,
    size_entry,
    sizes,
    step_windows,
)
from loadlab.targets.base import Outcome

MS_NS = 1_000_000
S_NS = 1_000_000_000


def _count(intervals: Sequence[OpInterval]) -> int:
    return sum(i.histogram.get_total_count() for i in intervals)


@pytest.mark.realtime
def test_a_ramp_folder_reads_back_with_its_steps_and_hlog(ramp_folder: Path) -> None:
    run = load_run(ramp_folder)
    assert run.kind == "ramp"
    assert run.complete is True
    assert run.summary is not None
    assert run.summary["profile"] == "http-knee"
    assert run.profile["load"]["ramp"]["step_s"] == 3
    assert sizes(run) == []

    steps = read_steps(run)
    jsonl = [json.loads(line) for line in (ramp_folder / "steps.jsonl").read_text().splitlines()]
    assert [s["offered"] for s in steps] == [s["offered"] for s in jsonl]
    assert len(steps) >= 3

    rows = read_timeline(ramp_folder / "timeline.csv")
    times = [float(r["t_s"] or 0.0) for r in rows]
    assert times == sorted(times)
    assert len(rows) >= 10
    # Every step the run judged is found on the time axis, in the same order.
    windows = step_windows(rows, "api", step_s=3.0, warmup_s=1.0)
    assert [w.offered_per_s for w in windows] == [s["offered"] for s in steps]

    every = op_intervals(ramp_folder / "api.hlog", ok_only=False)
    ok = op_intervals(ramp_folder / "api.hlog")
    latency = run.summary["latency_ms"]
    assert {f"api/{op}" for op in every} == set(latency)
    for op, intervals in every.items():
        assert _count(intervals) == latency[f"api/{op}"]["count"], op
        starts = [i.start_s for i in intervals]
        assert starts == sorted(starts)
        assert len(set(starts)) == len(starts)
    totals = run.summary["totals"]
    assert sum(_count(v) for v in ok.values()) == totals["requests"] - totals["errors"]


@pytest.mark.realtime
def test_a_sweep_folder_reads_back_size_by_size(sweep_folder: Path) -> None:
    run = load_run(sweep_folder)
    assert run.kind == "sweep"
    assert sizes(run) == [20, 40]
    for n in (20, 40):
        entry = size_entry(run, n)
        assert entry is not None
        assert entry["nodes"] == n
        assert size_dir(run, n).is_dir()
        lookups = outcome_counts(size_dir(run, n) / "pod-dns.hlog", "lookup")
        assert (
            sum(c.ok + c.failed for c in lookups)
            == entry["agents"]["pod-dns"]["ops"]["lookup"]["count"]
        )
        kubelet = op_intervals(size_dir(run, n) / "kubelet.hlog", ok_only=False)
        assert (
            _count(kubelet["lease-renew"])
            == entry["agents"]["kubelet"]["ops"]["lease-renew"]["count"]
        )
    assert read_steps(run) == []
    assert size_entry(run, 30) is None


@pytest.mark.realtime
def test_a_killed_run_reads_back_from_its_files(ramp_folder: Path, tmp_path: Path) -> None:
    original = load_run(ramp_folder)
    assert original.summary is not None
    killed = tmp_path / "killed"
    shutil.copytree(ramp_folder, killed)
    (killed / "summary.json").unlink()
    with (killed / "steps.jsonl").open("a") as fh:
        fh.write('{"target": "api", "offered": 99')  # the kill cut this line short

    run = load_run(killed)
    assert run.summary is None
    assert run.complete is False
    assert run.kind == "ramp"
    steps = read_steps(run)
    assert [s["offered"] for s in steps] == [s["offered"] for s in original.summary["steps"]]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({}, "not a loadlab results folder", id="empty-folder"),
        pytest.param({"run.id": "abc pid 1\n"}, "stopped before writing", id="only-run-id"),
        pytest.param(
            {"run.id": "x", "profile.resolved.json": "{not json"}, "not valid JSON", id="bad-json"
        ),
        pytest.param(
            {"profile.resolved.json": "[1, 2]"}, "expected a JSON object", id="json-not-object"
        ),
        pytest.param(
            {"profile.resolved.json": "{}", "summary.json": '{"complete": tru'},
            "summary.json: not valid JSON",
            id="bad-summary",
        ),
    ],
)
def test_a_folder_that_is_not_a_run_is_refused_in_one_line(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(UsageError, match=message) as caught:
        load_run(folder)
    assert "\n" not in str(caught.value)
    assert str(folder) in str(caught.value)


def test_a_missing_folder_and_a_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such results folder"):
        load_run(tmp_path / "nowhere")
    a_file = tmp_path / "summary.json"
    a_file.write_text("{}")
    with pytest.raises(UsageError, match="not a folder"):
        load_run(a_file)


def test_a_broken_hlog_and_timeline_are_usage_errors(tmp_path: Path) -> None:
    hlog = tmp_path / "api.hlog"
    hlog.write_text("Tag=get/ok,1.0,1.0,2.0,not-a-histogram\n")
    with pytest.raises(UsageError, match="not a readable interval log") as caught:
        op_intervals(hlog)
    assert "\n" not in str(caught.value)
    timeline = tmp_path / "timeline.csv"
    timeline.write_text("t_s,api_offered_per_s\n1.0,abc\n")
    with pytest.raises(UsageError, match="not a readable timeline"):
        read_timeline(timeline)


def test_missing_files_read_as_nothing_recorded(tmp_path: Path) -> None:
    assert op_intervals(tmp_path / "dns.hlog") == {}
    assert outcome_counts(tmp_path / "pod-dns.hlog", "lookup") == []
    assert read_timeline(tmp_path / "timeline.csv") == []


def test_a_server_that_refuses_fast_or_goes_silent_does_not_flatter_the_ok_latency(
    tmp_path: Path,
) -> None:
    """Second 0: 10 OK at 50 ms. Second 1: the server starts refusing, 90 429s in 20 us beside
    10 OK. Second 2: silence, 5 timeouts at 2 s and no OK. The OK percentiles (what the sweep's
    API p99 and compare judge) keep the 429s and timeouts out; the counts call them failed."""
    rec = Recorder("api", ["get-lease"], start_ns=0)
    with TargetHlogs(tmp_path, "api", start_time_epoch_s=1_700_000_000.0) as logs:
        for sec, ok, refused, timed_out in ((0, 10, 0, 0), (1, 10, 90, 0), (2, 0, 0, 5)):
            base = sec * S_NS
            for _ in range(ok):
                rec.complete(0, Outcome.OK, base, base, base + 50 * MS_NS)
            for _ in range(refused):
                rec.complete(0, Outcome.THROTTLED, base, base, base + 20_000)
            for _ in range(timed_out):
                rec.complete(0, Outcome.TIMEOUT, base - S_NS, base - S_NS, base + S_NS)
            logs.write(rec.rotate(base + S_NS))
    hlog = tmp_path / "api.hlog"

    ok_only = op_intervals(hlog)["get-lease"]
    assert [(i.start_s, _count([i])) for i in ok_only] == [(0.0, 10), (1.0, 10)]
    assert interval_values_ms(ok_only, [(-math.inf, math.inf)], "p99") == pytest.approx(
        [50.0, 50.0], rel=0.01
    )
    every = op_intervals(hlog, ok_only=False)["get-lease"]
    assert [_count([i]) for i in every] == [10, 100, 5]
    assert every[1].histogram.get_value_at_percentile(50.0) < 1_000  # what ok_only keeps out
    counts = outcome_counts(hlog, "get-lease")
    assert [(c.start_s, c.ok, c.failed) for c in counts] == [
        (0.0, 10, 0),
        (1.0, 10, 90),
        (2.0, 0, 5),
    ]


def test_a_bisected_rate_is_the_step_the_timeline_rounded_to_three_decimals() -> None:
    assert same_rate(101.5625, 101.562)  # what timeline.csv writes for it
    assert same_rate(400.0, 400.0)
    assert not same_rate(400.0, 401.0)


def test_report_and_compare_place_steps_on_whole_intervals_as_the_session_ran_them() -> None:
    profile = {"interval_s": 1.0, "load": {"ramp": {"step_s": 2.5, "warmup_s": 0.5}}}
    run = RunFolder(Path("/nowhere"), None, profile, "ramp", False)
    assert ramp_seconds(run, "step_s") == 3.0
    assert ramp_seconds(run, "warmup_s") == 1.0
    assert interval_s(run) == 1.0
    assert interval_s(RunFolder(Path("/nowhere"), None, {}, "ramp", False)) == 1.0
