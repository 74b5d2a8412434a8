"""summary.json and the printed lines come from one verdict: they cannot disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from loadlab.analysis.steps import StepCriteria, judge_step
from loadlab.engine.selfmon import GeneratorSummary
from loadlab.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SLO_FAILED
from loadlab.present import print_result
from loadlab.summary import TargetOutcome, build_summary, judge_run
from tests.analysis.synthetic import make_stats

GENERATOR = GeneratorSummary(
    cpu_percent_mean=10.0, cpu_percent_max=20.0, rss_mb_max=50.0, samples=10
)


def outcome(error_rate: float) -> TargetOutcome:
    stats = make_stats(offered=100, error_rate=error_rate)
    window = judge_step(stats, 100, StepCriteria(slo_p99_ms={"get-lease": 1000.0}))
    return TargetOutcome(
        name="api",
        address="http://127.0.0.1:1",
        whole_run=stats,
        steps=(window,),
        ramped=False,
        slo_p99_ms={"get-lease": 1000.0},
        max_error_rate=0.01,
    )


def summary_for(
    error_rate: float, *, complete: bool = True, code: int | None = None
) -> dict[str, Any]:
    target = outcome(error_rate)
    verdict = judge_run([target], complete=complete)
    return build_summary(
        run_id="r",
        profile="p",
        targets=[target],
        verdict=verdict,
        generator=GENERATOR,
        lag_p50_ms=0.1,
        lag_p99_ms=1.0,
        started_at="2026-11-30T00:00:00+00:00",
        duration_s=10.0,
        exit_code=verdict.exit_code if code is None else code,
        stopped_by=None if complete else "SIGINT",
    )


@pytest.mark.parametrize(
    ("error_rate", "code", "label"),
    [
        pytest.param(0.0, EXIT_OK, "verdict: passed", id="healthy"),
        pytest.param(0.5, EXIT_SLO_FAILED, "verdict: FAILED", id="errors"),
        pytest.param(1.0, EXIT_SLO_FAILED, "verdict: FAILED", id="served-nothing"),
    ],
)
def test_summary_printed_lines_and_exit_code_agree(
    error_rate: float, code: int, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = summary_for(error_rate)
    assert summary["exit_code"] == summary["verdict"]["exit_code"] == code
    assert summary["slo"]["passed"] is (code == EXIT_OK)
    assert summary["verdict"]["passed"] is (code == EXIT_OK)
    print_result(summary, Path("out"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(label), lines
    assert "SLOs: passed" not in "\n".join(lines)
    finding = summary["verdict"]["findings"]["api"]
    assert finding["line"] in lines


def test_an_interrupted_summary_is_incomplete_and_claims_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = summary_for(0.0, complete=False, code=EXIT_INTERRUPTED)
    assert summary["complete"] is False
    assert summary["stopped_by"] == "SIGINT"
    assert summary["slo"]["passed"] is False
    assert summary["verdict"]["passed"] is False
    print_result(summary, Path("out"))
    assert "INTERRUPTED, nothing claimed" in capsys.readouterr().out


def test_stray_answers_are_named_on_the_totals_line(capsys: pytest.CaptureFixture[str]) -> None:
    summary = summary_for(0.0)
    print_result(summary, Path("out"))
    assert "stray" not in capsys.readouterr().out
    summary["stray_answers"] = {"api": 3}
    print_result(summary, Path("out"))
    (totals,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("api: ")][1:]
    assert totals.endswith(" errors, 3 stray answers (answers to no request)"), totals


def ramp_outcome(capacity: float) -> TargetOutcome:
    """A ramp over 100, 200, 400, 800/s against a server whose p99 of get-lease blows its 1 s
    SLO above ``capacity``."""
    criteria = StepCriteria(slo_p99_ms={"get-lease": 1000.0})
    steps = []
    for offered in (100.0, 200.0, 400.0, 800.0):
        p99 = 50.0 * offered / 100 if offered <= capacity else 4000.0
        stats = make_stats(offered=offered, p99_by_op={"get-lease": p99, "list-pods": p99})
        steps.append(judge_step(stats, offered, criteria))
    return TargetOutcome(
        name="api",
        address="http://127.0.0.1:1",
        whole_run=make_stats(offered=400),
        steps=tuple(steps),
        ramped=True,
        slo_p99_ms={"get-lease": 1000.0},
        max_error_rate=0.01,
    )


def test_a_ramp_lists_its_slos_as_measured_at_the_knee() -> None:
    verdict = judge_run([ramp_outcome(capacity=200)])
    knee = verdict.knees["api"]
    assert knee is not None
    assert knee.offered == 200
    checks = {c.name: c for c in verdict.slo.checks}
    at_knee = checks["api/get-lease p99_ms at 200/s"]
    assert (at_knee.threshold, at_knee.observed, at_knee.passed) == (1000.0, 100.0, True)
    assert checks["api error_rate at 200/s"].passed
    assert "api/list-pods p99_ms at 200/s" not in checks  # no SLO given for it
    assert verdict.slo.passed


def test_a_ramp_that_failed_at_its_lowest_load_lists_the_missed_slo_there() -> None:
    verdict = judge_run([ramp_outcome(capacity=50)])
    checks = {c.name: c for c in verdict.slo.checks}
    first = checks["api/get-lease p99_ms at 100/s"]
    assert (first.observed, first.passed) == (4000.0, False)
    assert not verdict.slo.passed
    assert verdict.exit_code != EXIT_OK


def test_a_long_fixed_run_is_judged_on_its_worst_slo_window() -> None:
    good = make_stats(offered=100, p99_by_op={"get-lease": 50.0})
    bad = make_stats(offered=100, p99_by_op={"get-lease": 3000.0})
    whole = make_stats(offered=100, p99_by_op={"get-lease": 900.0})  # the mix hides it
    target = TargetOutcome(
        name="api",
        address="http://127.0.0.1:1",
        whole_run=whole,
        steps=(judge_step(whole, 100, StepCriteria(slo_p99_ms={"get-lease": 1000.0})),),
        ramped=False,
        slo_p99_ms={"get-lease": 1000.0},
        max_error_rate=0.01,
        windows=(good, bad, good),
    )
    checks = {c.name: c for c in judge_run([target]).slo.checks}
    worst = checks["api/get-lease p99_ms"]
    assert (worst.observed, worst.passed) == (3000.0, False)
    one_window = dataclasses.replace(target, windows=())
    assert {c.name: c for c in judge_run([one_window]).slo.checks}["api/get-lease p99_ms"].passed


def test_dns_is_held_to_its_median_in_a_step_and_in_a_fixed_run() -> None:
    slow = make_stats(offered=100, p99_ms=80.0, target="dns")  # p50 = p99 / 4 = 20 ms
    criteria = StepCriteria(slo_p50_ms=15.0)
    step = judge_step(slow, 100, criteria)
    assert step.check == "p50"
    assert step.why == "p50 20.0 ms > SLO 15 ms"
    target = TargetOutcome(
        name="dns",
        address="127.0.0.1:53",
        whole_run=slow,
        steps=(step,),
        ramped=False,
        slo_p99_ms={},
        max_error_rate=0.001,
        slo_p50_ms=15.0,
    )
    checks = {c.name: c for c in judge_run([target]).slo.checks}
    assert (checks["dns p50_ms"].observed, checks["dns p50_ms"].passed) == (20.0, False)
