"""Step verdicts: the checks of the method, in its order, and what a generator limit means."""

from __future__ import annotations

from typing import Any

import pytest

from loadlab.analysis.steps import StepCriteria, describe_errors, judge_step

from .synthetic import make_stats

CRITERIA = StepCriteria(
    max_lag_p99_ms=50.0, max_error_rate=0.01, slo_p99_ms={"get-lease": 100.0, "list-pods": 500.0}
)
OFFERED = 1000.0

# Every check failing at once, then each fixed in the method's order: the verdict must always
# name the first check still failing.
ALL_BAD: dict[str, Any] = {
    "sent_ratio": 0.9,
    "lag_p99_ms": 80.0,
    "error_rate": 0.05,
    "p99_by_op": {"get-lease": 150.0, "list-pods": 900.0},
    "achieved": 800.0,
}
FIXES: list[tuple[str, Any]] = [
    ("sent_ratio", 1.0),
    ("lag_p99_ms", 1.0),
    ("error_rate", 0.0),
    ("p99_by_op", {"get-lease": 50.0, "list-pods": 900.0}),
    ("p99_by_op", {"get-lease": 50.0, "list-pods": 100.0}),
    ("achieved", 1000.0),
]
EXPECTED_CHECKS = [
    "generator_sent",
    "generator_lag",
    "error_rate",
    "p99:get-lease",
    "p99:list-pods",
    "achieved_ratio",
    None,
]


@pytest.mark.parametrize("n_fixed", range(len(FIXES) + 1), ids=[str(c) for c in EXPECTED_CHECKS])
def test_verdict_names_the_first_failing_check_in_the_methods_order(n_fixed: int) -> None:
    kwargs = dict(ALL_BAD)
    for name, value in FIXES[:n_fixed]:
        kwargs[name] = value
    verdict = judge_step(make_stats(offered=OFFERED, **kwargs), OFFERED, CRITERIA)

    assert verdict.check == EXPECTED_CHECKS[n_fixed]
    assert verdict.passed == (verdict.check is None)
    assert verdict.generator_limited == (n_fixed < 2)
    assert (verdict.why == "ok") == verdict.passed


def test_sending_under_99_percent_is_generator_limited_not_a_server_failure() -> None:
    verdict = judge_step(make_stats(offered=OFFERED, sent_ratio=0.985), OFFERED, CRITERIA)
    assert verdict.generator_limited
    assert not verdict.passed
    assert not verdict.failed
    assert "generator-limited" in verdict.why
    assert verdict.sent == pytest.approx(985.0)


def test_sending_exactly_99_percent_is_enough() -> None:
    verdict = judge_step(make_stats(offered=OFFERED, sent_ratio=0.99), OFFERED, CRITERIA)
    assert verdict.passed


def test_achieved_just_under_95_percent_fails_the_step() -> None:
    verdict = judge_step(make_stats(offered=OFFERED, achieved=940.0), OFFERED, CRITERIA)
    assert verdict.check == "achieved_ratio"
    assert verdict.failed
    assert "94.0%" in verdict.why


def test_operations_without_an_slo_have_no_latency_check() -> None:
    criteria = StepCriteria(slo_p99_ms={})
    stats = make_stats(offered=OFFERED, p99_by_op={"get-lease": 9_000.0})
    assert judge_step(stats, OFFERED, criteria).passed


def test_error_verdict_names_the_dominant_outcome() -> None:
    verdict = judge_step(make_stats(offered=OFFERED, error_rate=0.2), OFFERED, CRITERIA)
    assert verdict.check == "error_rate"
    assert verdict.why.endswith(", all 429")
    assert verdict.dominant_outcome == "429"


def test_mixed_errors_name_the_most_frequent_with_its_share() -> None:
    assert describe_errors({"500": 30, "timeout": 70}) == ", mostly timeout (70%)"
    assert describe_errors({}) == ""


def test_a_failed_step_with_no_success_served_nothing() -> None:
    stats = make_stats(offered=OFFERED, error_rate=1.0)
    verdict = judge_step(stats, OFFERED, CRITERIA)
    assert verdict.ok_count == 0
    assert verdict.served_nothing
    assert not judge_step(
        make_stats(offered=OFFERED, error_rate=0.2), OFFERED, CRITERIA
    ).served_nothing


def test_verdict_dict_has_the_summary_step_keys() -> None:
    verdict = judge_step(make_stats(offered=OFFERED), OFFERED, CRITERIA)
    assert {
        "target",
        "offered",
        "sent",
        "achieved",
        "error_rate",
        "p50_ms",
        "p99_ms",
        "passed",
        "why",
    } <= set(verdict.as_dict())


def test_achieved_ratio_is_against_what_the_schedule_planned_not_the_nominal_rate() -> None:
    # Poisson arrivals planned 6% fewer sends than the nominal rate in this window; the server
    # answered every one of them, so the step passes.
    stats = make_stats(offered=OFFERED * 0.94)
    verdict = judge_step(stats, OFFERED, CRITERIA)
    assert verdict.passed, verdict.why
