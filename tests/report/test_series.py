"""The report's numbers on hand-built data: step windows, step points, onsets, tables, perfdash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadlab.metrics.recorder import new_histogram
from loadlab.metrics.stats import EMPTY_LATENCY, LatencySummary
from loadlab.report.markdown import markdown_table
from loadlab.report.perfdash import perfdash
from loadlab.report.read import OpInterval, OutcomeCount, RunFolder, StepWindow, step_windows
from loadlab.report.series import (
    api_p99_per_interval,
    lookup_rates,
    size_marks,
    step_points,
)
from loadlab.report.tables import LatencyRow, size_rows, size_verdict, verdict_lines


def rows(*cells: tuple[float, float, float]) -> list[dict[str, float | None]]:
    """Timeline rows of (t_s, offered/s, sent/s) for target ``api``."""
    return [{"t_s": t, "api_offered_per_s": o, "api_sent_per_s": s} for t, o, s in cells]


def interval(start_s: float, *latencies_us: int) -> OpInterval:
    hist = new_histogram()
    for value in latencies_us:
        hist.record_value(value)
    return OpInterval(start_s, start_s + 1.0, hist)


def test_a_step_starts_one_interval_before_its_first_send_and_lasts_step_s() -> None:
    # The 200/s step ran 1..4 s: its first row says 200 before anything was sent, its last
    # interval is labelled 0 (the rate was reset before the row was written).
    timeline = rows(
        (1.0, 200, 0), (2.0, 200, 210), (3.0, 200, 190), (4.0, 0, 200), (5.0, 0, 0),
        (6.0, 400, 400), (7.0, 400, 390), (8.0, 400, 410), (9.0, 0, 2),
    )  # fmt: skip
    windows = step_windows(timeline, "api", step_s=3.0, warmup_s=1.0)
    assert windows == [StepWindow(200, 1.0, 2.0, 4.0), StepWindow(400, 5.0, 6.0, 8.0)]


def test_without_step_s_a_few_stragglers_do_not_stretch_a_step() -> None:
    timeline = rows((1.0, 0, 0), (2.0, 300, 300), (3.0, 300, 290), (4.0, 0, 3), (5.0, 0, 0))
    assert step_windows(timeline, "api") == [StepWindow(300, 1.0, 1.0, 3.0)]
    timeline = rows((1.0, 300, 300), (2.0, 300, 290), (3.0, 0, 280))
    assert step_windows(timeline, "api", warmup_s=0.5) == [StepWindow(300, 0.0, 0.5, 3.0)]


def test_a_confirm_step_at_a_repeated_rate_takes_the_next_step_of_that_rate() -> None:
    windows = [StepWindow(500, 0, 1, 3), StepWindow(500, 4, 5, 7), StepWindow(800, 8, 9, 11)]
    intervals = {
        "get": [
            interval(0.0, 999_000),  # warm-up of the first step: excluded
            interval(1.0, 10_000), interval(2.0, 10_000),
            interval(5.0, 20_000), interval(6.0, 20_000),
            interval(9.0, 40_000), interval(10.0, 40_000),
        ]
    }  # fmt: skip
    steps = [
        {"target": "api", "offered": 500.0, "achieved": 490.0, "passed": True},
        {"target": "dns", "offered": 500.0, "achieved": 1.0, "passed": False},
        {"target": "api", "offered": 500.0, "achieved": 480.0, "passed": True},
    ]
    timeline = [
        {"t_s": 10.0, "api_achieved_per_s": 600.0},
        {"t_s": 11.0, "api_achieved_per_s": 700.0},
    ]
    points = step_points(windows, intervals, steps, timeline, "api")
    assert [p.achieved_per_s for p in points] == [490.0, 480.0, 650.0]
    assert [p.passed for p in points] == [True, True, None]  # the last: killed mid-step
    assert [p.latency.count for p in points] == [2, 2, 2]
    assert [round(p.latency.p99_ms) for p in points] == [10, 20, 40]


def test_api_p99_leaves_a_gap_for_a_second_without_answers() -> None:
    kubelet = {
        "lease": [interval(0.0, 5_000)],
        "list": [interval(0.0, 9_000), interval(2.0, 7_000)],
    }
    telemetry = {"pods": [interval(2.0, 100_000)]}
    series = api_p99_per_interval([kubelet, telemetry], grid_s=[1.0, 2.0, 3.0])
    assert series.x == (1.0, 2.0, 3.0)
    assert series.y[1] is None
    assert series.y[0] == pytest.approx(9.0, rel=0.01)
    assert series.y[2] == pytest.approx(100.0, rel=0.01)


def test_lookup_rates_count_a_silent_second_as_zero() -> None:
    counts = [OutcomeCount(0.0, 1.0, 50, 0), OutcomeCount(3.0, 4.0, 5, 45)]
    ok, failed = lookup_rates(counts, [1.0, 2.0, 3.0, 4.0])
    assert ok.x == (1.0, 2.0, 3.0, 4.0)
    assert ok.y == (50.0, 0.0, 0.0, 5.0)
    assert failed.y == (0.0, 0.0, 0.0, 45.0)


@pytest.mark.parametrize(
    ("entry", "marks"),
    [
        pytest.param(None, [], id="no-summary"),
        pytest.param({"api_saturation_at_s": None, "dns_failure_at_s": None}, [], id="held"),
        pytest.param(
            {"api_saturation_at_s": 20.0, "dns_failure_at_s": 32.4},
            [(20.0, "API saturated at 20 s"), (32.4, "DNS failed at 32 s")],
            id="both",
        ),
        pytest.param(
            {"api_saturation_at_s": None, "dns_failure_at_s": 7},
            [(7.0, "DNS failed at 7 s")],
            id="dns-only",
        ),
    ],
)
def test_size_marks_are_the_recorded_onsets(
    entry: dict[str, Any] | None, marks: list[tuple[float, str]]
) -> None:
    assert [(m.at_s, m.label) for m in size_marks(entry)] == marks


@pytest.mark.parametrize(
    ("entry", "word"),
    [
        pytest.param(None, "incomplete", id="never-finished"),
        pytest.param({"complete": False, "passed": False}, "incomplete", id="interrupted"),
        pytest.param({"complete": True, "passed": True}, "passed", id="held"),
        pytest.param(
            {"complete": True, "passed": False, "api_saturation_at_s": 20.0},
            "failed",
            id="saturated",
        ),
        pytest.param(
            {
                "complete": True,
                "passed": False,
                "api_saturation_at_s": 20.0,
                "generator_limited": True,
                "api_saturation_claimed": False,
            },
            "inconclusive",
            id="generator-limited",
        ),
        pytest.param(
            {"complete": True, "passed": False, "judged": False}, "inconclusive", id="too-short"
        ),
        pytest.param(
            {"complete": True, "passed": False, "slo": {"passed": False}}, "failed", id="slo-missed"
        ),
    ],
)
def test_size_verdict(entry: dict[str, Any] | None, word: str) -> None:
    assert size_verdict(entry) == word


def _sweep(summary: dict[str, Any] | None) -> RunFolder:
    return RunFolder(Path("/nowhere"), summary, {}, "sweep", bool(summary), None)


def test_a_killed_sweep_claims_nothing() -> None:
    assert verdict_lines(_sweep(None)) == [("incomplete run: nothing is claimed", None)]


def test_the_size_table_and_verdict_colours_follow_each_size() -> None:
    summary = {
        "complete": True,
        "exit_code": 1,
        "sizes": [
            {"nodes": 200, "complete": True, "passed": True},
            {
                "nodes": 2000,
                "complete": True,
                "passed": False,
                "api_saturation_at_s": 20.0,
                "dns_failure_at_s": 32.0,
                "dns_failure_onset_s": 12.0,
            },
        ],
        "verdict": {
            "findings": {
                "size-200": {"line": "200 nodes: held", "passed": True},
                "size-2000": {"line": "2,000 nodes: API saturated", "passed": False},
            }
        },
    }
    run = _sweep(summary)
    assert [r.cells() for r in size_rows(run)] == [
        ("200", "—", "—", "—", "—", "—", "passed"),
        ("2,000", "—", "—", "20 s", "32 s", "12 s", "failed"),
    ]
    assert verdict_lines(run) == [("200 nodes: held", True), ("2,000 nodes: API saturated", False)]
    gated = _sweep({**summary, "exit_code": 0, "gate": {"line": "gate: passed up to 200 nodes"}})
    assert verdict_lines(gated)[-1] == ("gate: passed up to 200 nodes", True)


def test_perfdash_has_clusterloader2_shape() -> None:
    rows = [
        LatencyRow(
            2000, "kubelet", "lease-renew", LatencySummary(40, 11.0, 20.5, 31.25, 40.0, 41.0)
        ),
        LatencyRow(None, "api", "get-lease", EMPTY_LATENCY),  # nothing measured
    ]
    assert perfdash("kubelet-baseline", rows) == {
        "version": "v1",
        "dataItems": [
            {
                "data": {"Perc50": 11.0, "Perc90": 20.5, "Perc99": 31.25},
                "unit": "ms",
                "labels": {
                    "Profile": "kubelet-baseline",
                    "Size": "2000",
                    "Target": "kubelet",
                    "Operation": "lease-renew",
                    "Count": "40",
                },
            }
        ],
    }


def test_a_markdown_table_escapes_pipes_and_aligns_numbers_right() -> None:
    lines = markdown_table(("op", "p99"), [("a|b", "1.0")])
    assert lines == ["| op | p99 |", "| :-- | --: |", "| a\\|b | 1.0 |"]
