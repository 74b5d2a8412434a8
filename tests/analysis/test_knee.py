"""The knee from step verdicts, and Kneedle's cross-check."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from loadlab.analysis.knee import Knee, find_knee, kneedle_knee
from loadlab.analysis.steps import StepCriteria, StepVerdict, judge_step

from .synthetic import make_stats

CRITERIA = StepCriteria(max_error_rate=0.01, slo_p99_ms={"get-lease": 100.0})


def step(rate: float, kind: str, *, achieved: float | None = None) -> StepVerdict:
    """kind: pass, errors, slow, short (achieved < 95%), generator."""
    stats = {
        "pass": lambda: make_stats(offered=rate, achieved=achieved),
        "errors": lambda: make_stats(offered=rate, error_rate=0.1, achieved=achieved),
        "slow": lambda: make_stats(offered=rate, p99_by_op={"get-lease": 400.0}),
        "short": lambda: make_stats(offered=rate, achieved=rate * 0.8),
        "generator": lambda: make_stats(offered=rate, sent_ratio=0.9),
    }[kind]()
    return judge_step(stats, rate, CRITERIA)


def _knee(verdicts: list[StepVerdict]) -> Knee:
    knee = find_knee(verdicts)
    assert knee is not None
    return knee


def test_knee_is_the_last_pass_before_two_consecutive_failures() -> None:
    verdicts = [step(100, "pass"), step(200, "pass"), step(400, "slow"), step(800, "errors")]
    knee = _knee(verdicts)
    assert knee.offered == 200
    assert knee.method == "steps"
    assert "p99 of get-lease" in knee.reason  # the first failing check of the next step


def test_a_lone_failure_below_passing_steps_is_not_the_knee() -> None:
    verdicts = [
        step(100, "pass"),
        step(200, "errors"),  # a blip
        step(400, "pass"),
        step(800, "short"),
        step(1600, "errors"),
    ]
    knee = _knee(verdicts)
    assert knee.offered == 400
    assert "achieved" in knee.reason


def test_after_bisection_the_knee_is_the_highest_pass_below_the_failing_pair() -> None:
    # Run order: growth 100, 200, 400(fail), 800(fail); bisection 300(pass), 350(fail), 325(pass).
    verdicts = [
        step(100, "pass"),
        step(200, "pass"),
        step(400, "errors"),
        step(800, "errors"),
        step(300, "pass"),
        step(350, "slow"),
        step(325, "pass"),
    ]
    knee = _knee(verdicts)
    assert knee.offered == 325
    assert "p99" in knee.reason  # 350's check, not 400's


def test_generator_limited_steps_are_neither_pass_nor_fail() -> None:
    verdicts = [
        step(100, "pass"),
        step(200, "pass"),
        step(300, "generator"),  # would be the last "pass" if counted as one
        step(400, "errors"),
        step(500, "generator"),  # would separate the failing pair if counted
        step(600, "errors"),
    ]
    knee = _knee(verdicts)
    assert knee.offered == 200
    assert "error rate" in knee.reason


def test_no_knee_without_two_consecutive_failures_or_without_a_pass() -> None:
    assert find_knee([]) is None
    assert find_knee([step(100, "pass"), step(200, "pass"), step(400, "errors")]) is None
    assert find_knee([step(100, "errors"), step(200, "errors")]) is None
    assert find_knee([step(100, "pass"), step(200, "generator"), step(400, "generator")]) is None


def _saturating(capacity: float, rates: Sequence[float]) -> list[StepVerdict]:
    out = []
    for r in rates:
        achieved = min(r, capacity)
        kind = "pass" if r <= capacity else "errors"
        out.append(step(r, kind, achieved=achieved))
    return out


def test_kneedle_agrees_on_a_clean_saturating_curve() -> None:
    rates = [100, 200, 400, 800, 1600, 3200, 600, 700, 750, 850]
    knee = _knee(_saturating(800, rates))
    assert knee.offered == 800
    assert knee.kneedle is not None
    assert knee.disagreement is not None
    assert knee.disagreement <= 0.15
    assert not knee.flagged


def test_kneedle_disagreement_over_15_percent_is_flagged() -> None:
    # Steps fail on latency at 400 while throughput keeps up until 1600: the two methods differ.
    rates = [100, 200, 400, 800, 1600, 3200, 6400]
    verdicts = []
    for r in rates:
        kind = "pass" if r < 400 else "slow"
        verdicts.append(
            judge_step(
                make_stats(
                    offered=r,
                    achieved=min(r, 1600),
                    p99_by_op={"get-lease": 50.0 if kind == "pass" else 400.0},
                ),
                r,
                CRITERIA,
            )
        )
    knee = _knee(verdicts)
    assert knee.offered == 200
    assert knee.kneedle is not None
    assert knee.kneedle >= 800
    assert knee.flagged


@pytest.mark.parametrize(
    ("offered", "achieved"),
    [
        ([], []),
        ([100, 200, 400], [100, 200, 300]),
        ([100, 200, 300, 400, 500, 600], [50, 50, 50, 50, 50, 50]),
        ([100, 200, 300, 400, 500, 600], [100, 200, 300, 400, 500, 600]),
        ([100, 100, 100, 100, 100, 100], [90, 95, 100, 105, 99, 98]),
    ],
    ids=["empty", "too-short", "flat", "straight-line", "one-rate"],
)
def test_kneedle_returns_none_quietly_when_there_is_no_knee(
    offered: list[float], achieved: list[float]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping kneed fails the test
        assert kneedle_knee(offered, achieved) is None


def test_kneedle_finds_the_bend_of_min_offered_capacity() -> None:
    offered = [100 * 1.5**k for k in range(10)]
    found = kneedle_knee(offered, [min(x, 1000.0) for x in offered])
    assert found is not None
    assert 1000 * 0.85 <= found <= 1000 * 1.15


def test_kneedle_rejects_mismatched_series() -> None:
    with pytest.raises(ValueError, match="same length"):
        kneedle_knee([1, 2, 3], [1, 2])


def test_knee_dict_has_the_summary_keys() -> None:
    knee = _knee(_saturating(800, [100, 200, 400, 800, 1600, 3200]))
    assert {"offered", "achieved", "p99_ms", "method", "kneedle"} <= set(knee.as_dict())


def test_steps_of_two_targets_are_refused() -> None:
    dns = judge_step(make_stats(offered=100, target="dns"), 100, CRITERIA)
    with pytest.raises(ValueError, match="one target"):
        find_knee([step(100, "pass"), dns])
