"""summary.json and the printed lines come from one verdict: they cannot disagree."""

from __future__ import annotations

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
