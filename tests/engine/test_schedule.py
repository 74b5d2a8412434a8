"""Schedules: counts, spacing, order and determinism of intended send times."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.engine.schedule import (
    ConstantRate,
    JitteredAgents,
    PoissonArrivals,
    Schedule,
)


def drain(schedule: Schedule, limit: int = 1_000_000) -> list[int]:
    times: list[int] = []
    for _ in range(limit):
        t = schedule.next_ns()
        if t is None:
            return times
        times.append(t)
    raise AssertionError("schedule did not end")


def test_constant_rate_sends_rate_times_duration_evenly_spaced() -> None:
    times = drain(ConstantRate(1000.0, start_ns=5 * NS_PER_S, end_ns=7 * NS_PER_S))
    assert len(times) == 2000
    assert times[0] == 5 * NS_PER_S
    assert {b - a for a, b in itertools.pairwise(times)} == {NS_PER_MS}
    assert times[-1] < 7 * NS_PER_S


def test_constant_rate_does_not_drift_at_a_rate_with_no_exact_interval() -> None:
    times = drain(ConstantRate(3.0, start_ns=0, end_ns=30 * NS_PER_S))
    assert len(times) == 90
    assert times[-1] == int(89 * NS_PER_S / 3.0)


@settings(max_examples=50, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50_000.0),
    duration_ms=st.integers(min_value=0, max_value=2000),
)
def test_constant_rate_stays_inside_its_window_in_order(rate: float, duration_ms: int) -> None:
    end_ns = 10 + duration_ms * NS_PER_MS
    times = drain(ConstantRate(rate, start_ns=10, end_ns=end_ns))
    assert times == sorted(times)
    assert all(10 <= t < end_ns for t in times)
    assert abs(len(times) - rate * duration_ms / 1000) <= 1


def test_poisson_arrivals_average_the_rate_and_repeat_with_the_seed() -> None:
    def make(seed: int) -> PoissonArrivals:
        return PoissonArrivals(2000.0, start_ns=0, end_ns=10 * NS_PER_S, seed=seed)

    times = drain(make(7))
    assert times == sorted(times)
    assert 19_000 < len(times) < 21_000  # 20000 expected; sd ~141
    assert times == drain(make(7))
    assert times != drain(make(8))


def test_poisson_gaps_are_irregular_unlike_constant_rate() -> None:
    times = drain(PoissonArrivals(1000.0, start_ns=0, end_ns=NS_PER_S, seed=1))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Exponential gaps: many shorter than half the mean, some longer than twice it.
    assert sum(g < NS_PER_MS // 2 for g in gaps) > len(gaps) // 4
    assert sum(g > 2 * NS_PER_MS for g in gaps) > len(gaps) // 20


def test_jittered_agents_each_renew_within_period_and_period_plus_jitter() -> None:
    period_s, jitter = 10.0, 0.04
    sched = JitteredAgents(50, period_s, jitter=jitter, start_ns=0, end_ns=100 * NS_PER_S, seed=3)
    per_agent: dict[int, list[int]] = {}
    for _ in range(1000):
        t = sched.next_ns()
        if t is None:
            break
        per_agent.setdefault(sched.last_agent, []).append(t)
    assert sorted(per_agent) == list(range(50))
    for times in per_agent.values():
        assert 0 <= times[0] < period_s * NS_PER_S
        for a, b in itertools.pairwise(times):
            assert period_s * NS_PER_S <= b - a < period_s * (1 + jitter) * NS_PER_S


def test_jittered_agents_spread_their_phases_over_the_period() -> None:
    sched = JitteredAgents(1000, 10.0, jitter=0.0, start_ns=0, end_ns=10 * NS_PER_S, seed=4)
    first_round = drain(sched)
    assert len(first_round) == 1000
    assert first_round == sorted(first_round)
    per_second = [0] * 10
    for t in first_round:
        per_second[t // NS_PER_S] += 1
    assert min(per_second) > 60  # ~100 each when spread uniformly, not bunched at the start


def test_jittered_agents_offer_their_mean_rate() -> None:
    sched = JitteredAgents(200, 10.0, jitter=0.04, start_ns=0, end_ns=200 * NS_PER_S, seed=5)
    # Mean period 10 s x (1 + 0.04 / 2) = 10.2 s: 200 agents offer 200 / 10.2 per second.
    assert len(drain(sched)) == pytest.approx(200 / 10.2 * 200, rel=0.02)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ConstantRate(0.0, start_ns=0, end_ns=1), id="zero-rate"),
        pytest.param(lambda: ConstantRate(1.0, start_ns=5, end_ns=1), id="ends-before-start"),
        pytest.param(
            lambda: JitteredAgents(1, 1.0, jitter=1.5, start_ns=0, end_ns=1, seed=0),
            id="jitter-over-one",
        ),
        pytest.param(
            lambda: JitteredAgents(0, 1.0, jitter=0.1, start_ns=0, end_ns=1, seed=0),
            id="no-agents",
        ),
    ],
)
def test_schedules_refuse_nonsense_parameters(make: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by parameter
        make()  # type: ignore[operator]


def test_constant_rate_skip_until_drops_exactly_the_times_before_the_cutoff() -> None:
    sched = ConstantRate(1000, start_ns=0, end_ns=NS_PER_S)  # one every 1 ms
    assert sched.next_ns() == 0
    assert sched.skip_until(10 * 1_000_000) == 9  # 1 ms .. 9 ms
    assert sched.next_ns() == 10 * 1_000_000
    assert sched.skip_until(0) == 0  # already past it
    assert sched.skip_until(5 * NS_PER_S) == 989  # capped at the end: 11 ms .. 999 ms
    assert sched.next_ns() is None


def test_poisson_skip_until_restarts_at_the_cutoff_with_the_expected_count() -> None:
    sched = PoissonArrivals(1000, start_ns=0, end_ns=10 * NS_PER_S, seed=3)
    assert sched.skip_until(NS_PER_S) == 1000
    t = sched.next_ns()
    assert t is not None
    assert t >= NS_PER_S


def test_jittered_agents_skip_until_draws_past_the_cutoff() -> None:
    sched = JitteredAgents(10, 1.0, jitter=0.0, start_ns=0, end_ns=5 * NS_PER_S, seed=1)
    assert sched.skip_until(2 * NS_PER_S) == 20
    t = sched.next_ns()
    assert t is not None
    assert t >= 2 * NS_PER_S
