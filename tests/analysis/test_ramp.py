"""The stepped search: growth, confirmation of a failure, bisection, and when it stops."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadlab.analysis.ramp import RampPlan, RampSearch, SearchPhase, StopReason
from loadlab.analysis.steps import StepCriteria, StepVerdict, judge_step

from .synthetic import SaturatingServer, make_stats

CRITERIA = StepCriteria(max_error_rate=0.01, slo_p99_ms={"get-lease": 200.0})


def verdict(rate: float, *, passed: bool, generator_limited: bool = False) -> StepVerdict:
    if generator_limited:
        stats = make_stats(offered=rate, sent_ratio=0.5)
    elif passed:
        stats = make_stats(offered=rate)
    else:
        stats = make_stats(offered=rate, error_rate=0.2)
    return judge_step(stats, rate, CRITERIA)


def drive(search: RampSearch, passes_below: float, max_steps: int = 100) -> list[float]:
    rates = []
    for _ in range(max_steps):
        rate = search.next_rate()
        if rate is None:
            break
        rates.append(rate)
        search.record(verdict(rate, passed=rate < passes_below))
    return rates


def run_search(
    server: SaturatingServer, plan: RampPlan, rng: random.Random
) -> tuple[RampSearch, list[float]]:
    search = RampSearch(plan)
    rates = []
    for _ in range(plan.max_steps + 1):
        rate = search.next_rate()
        if rate is None:
            break
        rates.append(rate)
        search.record(judge_step(server.step(rate, rng), rate, CRITERIA))
    return search, rates


def test_growth_is_exponential_until_two_consecutive_failures_then_bisects() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=10_000))
    rates = drive(search, passes_below=700)

    assert rates[:5] == [100, 200, 400, 800, 1600]  # 800 fails, 1600 confirms
    assert rates[5] == 600  # bisect between the last pass (400) and the first fail (800)
    assert search.stop_reason is StopReason.REFINED
    knee = search.knee()
    assert knee is not None
    assert 700 / 1.05 <= knee.offered < 700


def test_a_single_failure_followed_by_a_pass_keeps_growing() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=10_000))
    outcomes = {100: True, 200: False, 400: True, 800: False, 1600: False}
    for _ in range(5):
        rate = search.next_rate()
        assert rate is not None
        search.record(verdict(rate, passed=outcomes[int(rate)]))
    assert search.phase is SearchPhase.BISECT
    assert search.next_rate() == 600


def test_a_generator_limited_step_stops_the_search_and_is_never_the_knee() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=10_000))
    for rate, limited in [(100, False), (200, False), (400, True)]:
        assert search.next_rate() == rate
        search.record(verdict(rate, passed=True, generator_limited=limited))
    assert search.next_rate() is None
    assert search.stop_reason is StopReason.GENERATOR_LIMITED
    assert search.knee() is None


def test_passing_at_the_maximum_stops_without_a_knee() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=3, max_per_s=500))
    rates = drive(search, passes_below=1e9)
    assert rates == [100, 300, 500]
    assert search.stop_reason is StopReason.MAX_RATE_PASSED
    assert search.knee() is None


def test_failing_at_the_maximum_is_confirmed_at_the_maximum() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=3, max_per_s=500))
    rates = drive(search, passes_below=450)
    assert rates[:4] == [100, 300, 500, 500]
    assert search.phase is SearchPhase.DONE
    knee = search.knee()
    assert knee is not None
    assert 450 / 1.05 <= knee.offered < 450


def test_failing_from_the_start_steps_down_until_a_pass_then_bisects() -> None:
    search = RampSearch(RampPlan(start_per_s=1000, factor=2, max_per_s=10_000))
    rates = drive(search, passes_below=300)
    assert rates[:4] == [1000, 2000, 500, 250]
    assert search.stop_reason is StopReason.REFINED
    knee = search.knee()
    assert knee is not None
    assert 300 / 1.05 <= knee.offered < 300


def test_a_server_failing_everywhere_stops_at_the_floor_without_a_knee() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=1000, min_per_s=20))
    rates = drive(search, passes_below=0)
    assert rates == [100, 200, 50, 25, 20]
    assert search.stop_reason is StopReason.NO_PASSING_STEP
    assert search.knee() is None


def test_the_step_budget_bounds_the_search() -> None:
    search = RampSearch(
        RampPlan(start_per_s=1, factor=1.1, max_per_s=1e9, refine_within=1e-9, max_steps=7)
    )
    rates = drive(search, passes_below=1e9)
    assert len(rates) == 7
    assert search.stop_reason is StopReason.MAX_STEPS


def test_recording_after_the_end_is_refused() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=100))
    search.record(verdict(100, passed=True))
    with pytest.raises(RuntimeError, match="done"):
        search.record(verdict(100, passed=True))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start_per_s": 0, "factor": 2, "max_per_s": 10}, "start_per_s"),
        ({"start_per_s": 1, "factor": 1, "max_per_s": 10}, "factor"),
        ({"start_per_s": 10, "factor": 2, "max_per_s": 5}, "max_per_s"),
        ({"start_per_s": 1, "factor": 2, "max_per_s": 10, "max_steps": 0}, "max_steps"),
    ],
    ids=["zero-start", "no-growth", "max-below-start", "no-steps"],
)
def test_a_plan_names_its_bad_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RampPlan(**kwargs)  # type: ignore[arg-type]


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    capacity=st.floats(min_value=50, max_value=50_000),
    start_fraction=st.floats(min_value=0.01, max_value=3.0),
    factor=st.floats(min_value=1.3, max_value=4.0),
    noise=st.floats(min_value=0.0, max_value=0.01),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_ramp_and_knee_find_a_known_capacity_within_minus_10_plus_5_percent(
    capacity: float, start_fraction: float, factor: float, noise: float, seed: int
) -> None:
    # Throughput noise up to 1% (a count's noise at >= 10k requests per step); at 3% the 95%
    # achieved check sits 2 sigma away and a spurious fail during bisection can pull the knee
    # below -10% (docs/knee-method.md's table reports such misses at high noise too).
    server = SaturatingServer(capacity_per_s=capacity, noise=noise)
    plan = RampPlan(
        start_per_s=capacity * start_fraction,
        factor=factor,
        max_per_s=capacity * 20,
        max_steps=40,
    )
    search, _ = run_search(server, plan, random.Random(seed))

    assert search.stop_reason is StopReason.REFINED
    knee = search.knee()
    assert knee is not None
    assert 0.90 * capacity <= knee.offered <= 1.05 * capacity
    assert knee.reason != "ok"


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    capacity=st.floats(min_value=100, max_value=50_000),
    generator_fraction=st.floats(min_value=0.1, max_value=0.9),
    factor=st.floats(min_value=1.3, max_value=4.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_generator_slower_than_the_server_is_never_reported_as_the_knee(
    capacity: float, generator_fraction: float, factor: float, seed: int
) -> None:
    generator_max = capacity * generator_fraction
    server = SaturatingServer(capacity_per_s=capacity, generator_max_per_s=generator_max)
    plan = RampPlan(start_per_s=generator_max / 20, factor=factor, max_per_s=capacity * 20)
    search, rates = run_search(server, plan, random.Random(seed))

    assert search.stop_reason is StopReason.GENERATOR_LIMITED
    assert rates[-1] > generator_max / 0.99
    knee = search.knee()
    assert knee is None or knee.offered <= generator_max
    assert all(not v.passed for v in search.verdicts if v.generator_limited)


def test_noisier_throughput_mostly_lands_within_minus_20_plus_10_percent() -> None:
    # At 1-3% throughput noise a spurious failing step next to a real one can end the growth
    # early, so this is a rate, not a property: docs/knee-method.md scores methods by the share of
    # 300 noisy trials within -20%/+10% of the true capacity. Seeded, so deterministic.
    trials = 300
    within = 0
    for seed in range(trials):
        rng = random.Random(seed)
        capacity = rng.uniform(50, 50_000)
        server = SaturatingServer(capacity_per_s=capacity, noise=rng.uniform(0.01, 0.03))
        plan = RampPlan(
            start_per_s=capacity * rng.uniform(0.01, 3.0),
            factor=rng.uniform(1.3, 4.0),
            max_per_s=capacity * 20,
        )
        search, _ = run_search(server, plan, rng)
        knee = search.knee()
        if knee is not None and 0.80 * capacity <= knee.offered <= 1.10 * capacity:
            within += 1
    assert within / trials >= 0.95


def test_a_step_that_served_nothing_ends_the_search_at_once() -> None:
    search = RampSearch(RampPlan(start_per_s=100, factor=2, max_per_s=6400))
    search.record(verdict(100, passed=True))
    dead = judge_step(make_stats(offered=200, error_rate=1.0), 200, CRITERIA)
    assert dead.served_nothing
    search.record(dead)
    assert search.done
    assert search.stop_reason is StopReason.SERVED_NOTHING
    assert search.next_rate() is None
