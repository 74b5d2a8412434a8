"""The one line a fixed run's verdict gives per target."""

from __future__ import annotations

import pytest

from loadlab.analysis.findings import FindingKind, fixed_finding
from loadlab.analysis.slo import SloReport
from loadlab.analysis.steps import StepVerdict


def window(*, sent: int, ok: int, errors: dict[str, int] | None = None) -> StepVerdict:
    return StepVerdict(
        target="api",
        offered=5_000.0,
        sent=5_000.0,
        achieved=5_000.0,
        error_rate=0.0,
        p50_ms=12.0,
        p99_ms=27.0,
        passed=True,
        generator_limited=False,
        why="ok",
        sent_count=sent,
        ok_count=ok,
        errors_by_outcome=errors or {},
    )


@pytest.mark.parametrize(
    ("sent", "ok", "errors", "said"),
    [
        pytest.param(
            15_403,
            15_340,
            {},
            "15,340 of 15,403 requests succeeded (63 still in flight at the window's end), p99",
            id="in-flight",
        ),
        pytest.param(
            15_403,
            15_400,
            {"429": 3},
            "15,400 of 15,403 requests succeeded, p99",
            id="all-answered",
        ),
        pytest.param(
            4_004, 4_012, {}, "4,012 of 4,004 requests succeeded, p99", id="answers-from-before"
        ),
    ],
)
def test_a_held_run_says_what_was_still_in_flight_when_its_window_closed(
    sent: int, ok: int, errors: dict[str, int], said: str
) -> None:
    finding = fixed_finding(
        "api", window(sent=sent, ok=ok, errors=errors), SloReport(()), complete=True
    )
    assert finding.kind is FindingKind.HELD
    assert said in finding.line, finding.line
