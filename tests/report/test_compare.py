"""``loadlab compare``'s judgement on hand-built data: latency ratios against their noise, knees
with bounds, sweep sizes, and folders that cannot be compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadlab.metrics.recorder import new_histogram
from loadlab.report.compare import (
    MIN_INTERVALS,
    Capacity,
    Comparison,
    Verdict,
    capacity,
    knee_row,
    latency_row,
    ratio_of_medians,
    size_row,
    target_row,
)
from loadlab.report.compare_read import (
    common_passed_rates,
    interval_values_ms,
    not_comparable,
    profile_differences,
)
from loadlab.report.read import OpInterval, RunFolder, RunKind

# --- latency: a ratio is a regression only beyond its noise -------------------------------------


def _lognormal(median_ms: float, sigma: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in median_ms * np.exp(rng.normal(0.0, sigma, n))]


def test_identical_distributions_with_noise_are_the_same() -> None:
    a, b = _lognormal(12.0, 0.3, 20, seed=1), _lognormal(12.0, 0.3, 20, seed=2)
    row = latency_row("api", "get-lease", "p99", a, b, threshold=0.10)
    assert row.verdict is Verdict.SAME, row.why
    assert row.low is not None
    assert row.high is not None
    assert row.low < 1 < row.high


def test_b_twice_as_slow_with_a_tight_spread_regressed() -> None:
    a = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 10.3]
    b = [2 * v for v in reversed(a)]
    row = latency_row("api", "get-lease", "p99", a, b, threshold=0.10)
    assert row.verdict is Verdict.REGRESSED, row.why
    assert row.ratio == pytest.approx(2.0)
    assert row.low is not None
    assert row.low > 1.5
    assert (row.a_intervals, row.b_intervals) == (7, 7)


def test_b_twice_as_slow_with_a_huge_spread_is_noise_not_a_regression() -> None:
    a = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3.0]
    b = [2 * v for v in a]
    row = latency_row("api", "list-node-pods", "p99", a, b, threshold=0.10)
    assert row.ratio == pytest.approx(2.0)
    assert row.verdict is Verdict.SAME, row.why
    assert row.low is not None
    assert row.low < 1
    assert "noise" in row.why


def test_b_twice_as_fast_with_a_tight_spread_improved() -> None:
    a = [20.0, 20.4, 19.8, 20.2, 20.0, 19.6]
    row = latency_row("api", "put-lease", "p50", a, [v / 2 for v in a], threshold=0.10)
    assert row.verdict is Verdict.IMPROVED, row.why
    assert row.high is not None
    assert row.high < 1


def test_a_change_inside_the_threshold_is_the_same_however_tight() -> None:
    a = [10.0, 10.01, 9.99, 10.0, 10.02, 9.98]
    row = latency_row("api", "get-lease", "p50", a, [v * 1.05 for v in a], threshold=0.10)
    assert row.verdict is Verdict.SAME
    assert row.low is not None
    assert row.low > 1


def test_too_few_intervals_give_no_verdict_even_for_a_tenfold_slowdown() -> None:
    a = [10.0] * (MIN_INTERVALS - 1)
    row = latency_row("api", "get-lease", "p99", a, [100.0] * 20, threshold=0.10)
    assert row.verdict is Verdict.NONE
    assert "too few intervals (4 in A, 20 in B" in row.why
    assert row.ratio is None


def test_the_bootstrap_is_repeatable_and_brackets_the_ratio() -> None:
    a, b = _lognormal(10.0, 0.5, 15, seed=3), _lognormal(15.0, 0.5, 15, seed=4)
    first, second = ratio_of_medians(a, b), ratio_of_medians(a, b)
    assert first == second
    ratio, low, high = first
    assert ratio == pytest.approx(float(np.median(b) / np.median(a)))
    assert low < ratio < high


def _interval(start_s: float, values_us: list[int]) -> OpInterval:
    histogram = new_histogram()
    for value in values_us:
        histogram.record_value(value)
    return OpInterval(start_s, start_s + 1.0, histogram)


def test_interval_values_come_only_from_inside_the_windows_and_skip_empty_ones() -> None:
    intervals = [
        _interval(0.0, [1_000] * 10),  # warm-up: outside
        _interval(1.0, [2_000] * 99 + [50_000]),
        _interval(2.0, []),  # nothing completed
        _interval(3.0, [3_000] * 10),
        _interval(9.0, [4_000] * 10),  # another step: outside
    ]
    p50 = interval_values_ms(intervals, [(1.0, 4.0)], "p50")
    assert p50 == pytest.approx([2.0, 3.0], rel=0.01)
    p99 = interval_values_ms(intervals, [(1.0, 2.0), (8.6, 10.4)], "p99")
    assert p99 == pytest.approx([2.0, 4.0], rel=0.01)
    assert interval_values_ms(intervals, [(-math.inf, math.inf)], "p99")[1] == pytest.approx(
        2.0, rel=0.01
    )


def test_only_rates_both_ramps_ran_and_always_passed_are_common() -> None:
    def step(rate: float, passed: bool, **more: Any) -> dict[str, Any]:
        return {"target": "api", "offered": rate, "passed": passed, **more}

    a = [step(100, True), step(200, True), step(400, False), step(300, True), step(300, False)]
    b = [step(100, True), step(200, True), step(400, True), step(300, True)]
    b.append({"target": "dns", "offered": 100, "passed": True})
    assert common_passed_rates(a, b, "api") == [100.0, 200.0]
    limited = [step(100, False, generator_limited=True), step(200, True)]
    assert common_passed_rates(limited, b, "api") == [200.0]
    assert common_passed_rates(a, b, "dns") == []


# --- knees --------------------------------------------------------------------------------------


def test_a_knee_eight_times_higher_is_an_improvement_and_the_reverse_a_regression() -> None:
    row = knee_row("api", Capacity(520.0), Capacity(4_100.0), tolerance=0.10)
    assert (row.verdict, row.ratio_text) == (Verdict.IMPROVED, "7.9x")
    back = knee_row("api", Capacity(4_100.0), Capacity(520.0), tolerance=0.10)
    assert (back.verdict, back.ratio_text) == (Verdict.REGRESSED, "0.13x")


@pytest.mark.parametrize(
    ("a_per_s", "b_per_s", "tolerance", "verdict"),
    [
        (525.0, 500.0, 0.05, Verdict.SAME),  # inside the ramp's 5 % resolution
        (525.0, 470.0, 0.05, Verdict.REGRESSED),
        (525.0, 470.0, 0.15, Verdict.SAME),
        (500.0, 560.0, 0.10, Verdict.IMPROVED),
    ],
    ids=["within-resolution", "beyond-resolution", "within-threshold", "improved"],
)
def test_exact_knees_are_judged_against_the_tolerance(
    a_per_s: float, b_per_s: float, tolerance: float, verdict: Verdict
) -> None:
    assert knee_row("api", Capacity(a_per_s), Capacity(b_per_s), tolerance=tolerance).verdict is (
        verdict
    )


HELD_1600 = Capacity(1_600.0, lower_bound=True, note="held to the ramp's maximum")


@pytest.mark.parametrize(
    ("a", "b", "verdict", "text"),
    [
        (Capacity(525.0), HELD_1600, Verdict.IMPROVED, ">= 3.0x"),
        (HELD_1600, Capacity(525.0), Verdict.REGRESSED, "<= 0.33x"),
        (Capacity(1_550.0), HELD_1600, Verdict.SAME, ">= 1.03x"),
        (Capacity(3_000.0), HELD_1600, Verdict.NONE, ">= 0.53x"),
        (HELD_1600, Capacity(1_700.0), Verdict.NONE, "<= 1.06x"),
        (HELD_1600, HELD_1600, Verdict.SAME, "-"),
        (Capacity(0.0), Capacity(200.0), Verdict.IMPROVED, "-"),
        (Capacity(200.0), Capacity(0.0), Verdict.REGRESSED, "0x"),
        (Capacity(None, note="inconclusive"), Capacity(500.0), Verdict.NONE, "?"),
        (Capacity(500.0), Capacity(None, stopped_serving=True), Verdict.REGRESSED, "-"),
    ],
    ids=[
        "b-held-beyond-a",
        "a-held-beyond-b",
        "b-held-to-a",
        "b-stopped-below-a",
        "a-held-b-above",
        "both-held",
        "a-failed-at-lowest",
        "b-failed-at-lowest",
        "a-unknown",
        "b-stopped-serving",
    ],
)
def test_a_bound_decides_only_when_it_points_the_same_way(
    a: Capacity, b: Capacity, verdict: Verdict, text: str
) -> None:
    row = knee_row("api", a, b, tolerance=0.10)
    assert (row.verdict, row.ratio_text) == (verdict, text), row.why


def _summary(knee: dict[str, Any] | None, finding: dict[str, Any]) -> dict[str, Any]:
    return {"knee": {"api": knee}, "verdict": {"findings": {"api": finding}}}


def test_capacity_reads_a_knee_a_held_ramp_and_a_failure_at_the_lowest_load() -> None:
    knee = _summary({"offered": 525.0}, {"kind": "knee", "offered": 525.0})
    assert capacity(knee, "api") == Capacity(525.0)
    held = capacity(_summary(None, {"kind": "held", "offered": 12_800.0}), "api")
    assert (held.per_s, held.lower_bound, held.text()) == (12_800.0, True, ">= 12,800/s")
    failed = capacity(_summary(None, {"kind": "failed_at_lowest_load", "offered": 200.0}), "api")
    assert (failed.per_s, failed.lower_bound) == (0.0, False)
    assert "lowest load 200/s" in failed.text()
    unknown = capacity(_summary(None, {"kind": "generator_limited", "offered": 800.0}), "api")
    assert unknown.per_s is None
    assert unknown.text() == "? (generator limited)"


# --- outcomes -----------------------------------------------------------------------------------


def _size(passed: bool, api_s: float | None = None, dns_s: float | None = None) -> dict[str, Any]:
    return {
        "passed": passed,
        "judged": True,
        "api_saturation_at_s": api_s,
        "dns_failure_at_s": dns_s,
    }


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        (_size(True), _size(True), Verdict.SAME),
        (_size(True), _size(False, api_s=40.0), Verdict.REGRESSED),
        (_size(False, api_s=40.0), _size(True), Verdict.IMPROVED),
        (_size(False, api_s=40.0), _size(False, api_s=20.0), Verdict.REGRESSED),
        (_size(False, api_s=20.0), _size(False, api_s=40.0), Verdict.IMPROVED),
        (_size(False, api_s=40.0, dns_s=50.0), _size(False, api_s=42.0, dns_s=48.0), Verdict.SAME),
        (_size(False, api_s=40.0), _size(False, api_s=40.0, dns_s=60.0), Verdict.REGRESSED),
        ({"passed": False, "judged": False}, _size(True), Verdict.NONE),
        (None, _size(True), Verdict.NONE),
    ],
    ids=[
        "both-held",
        "b-failed",
        "a-failed",
        "b-saturated-sooner",
        "b-saturated-later",
        "both-failed-alike",
        "b-dns-also-failed",
        "a-not-judged",
        "a-never-ran",
    ],
)
def test_a_sweep_size_held_beats_failed_and_later_beats_sooner(
    a: dict[str, Any] | None, b: dict[str, Any], verdict: Verdict
) -> None:
    row = size_row(2_000, a, b, threshold=0.10)
    assert row.verdict is verdict, row.why
    assert row.label == "2,000 nodes"


def test_a_fixed_run_whose_slos_failed_in_b_regressed() -> None:
    passed = {"verdict": {"findings": {"api": {"kind": "held", "passed": True}}}}
    failed = {"verdict": {"findings": {"api": {"kind": "slo_failed", "passed": False}}}}
    assert target_row("api", passed, failed).verdict is Verdict.REGRESSED
    assert target_row("api", failed, passed).verdict is Verdict.IMPROVED
    assert target_row("api", passed, {}).verdict is Verdict.NONE


# --- the whole: exit code and the one line ------------------------------------------------------


def _comparison(**rows: Any) -> Comparison:
    return Comparison(Path("a"), Path("b"), "http-knee", "ramp", 0.10, (), **rows)


def test_one_regressed_latency_row_makes_the_exit_one_and_names_it() -> None:
    slow = latency_row("api", "get-lease", "p99", [10.0] * 6, [20.0] * 6, threshold=0.10)
    knee = knee_row("api", Capacity(500.0), Capacity(510.0), tolerance=0.10)
    comparison = _comparison(knees=(knee,), latency=(slow,))
    assert comparison.exit_code == 1
    assert comparison.headline().startswith("compare: B regressed: api get-lease p99 2.0x")


def test_rows_without_a_verdict_are_not_a_regression_but_are_said() -> None:
    few = latency_row("api", "get-lease", "p99", [10.0] * 2, [90.0] * 2, threshold=0.10)
    knee = knee_row("api", Capacity(520.0), Capacity(4_100.0), tolerance=0.10)
    comparison = _comparison(knees=(knee,), latency=(few,))
    assert comparison.exit_code == 0
    assert comparison.headline() == (
        "compare: B is not worse than A beyond 10 % (knee api 7.9x; 1 rows without a verdict)"
    )


# --- comparable or not --------------------------------------------------------------------------


def _run(
    path: Path,
    *,
    profile: str = "http-knee",
    kind: RunKind = "ramp",
    complete: bool = True,
    sizes: tuple[int, ...] = (),
    summary: bool = True,
) -> RunFolder:
    data = {
        "profile": profile,
        "complete": complete,
        "sizes": [{"nodes": n} for n in sizes],
    }
    if kind == "sweep":
        data["kind"] = "sweep"
    return RunFolder(path, data if summary else None, {"name": profile}, kind, complete)


@pytest.mark.parametrize(
    ("b_args", "message"),
    [
        ({"profile": "dns-knee"}, "not comparable: A ran profile http-knee, B ran dns-knee"),
        ({"kind": "fixed"}, "not comparable: A is a ramp, B is a fixed-rate run"),
        ({"complete": False}, "B is an interrupted run: nothing to compare"),
        ({"summary": False}, "B is an interrupted run: nothing to compare"),
    ],
    ids=["profile", "kind", "incomplete", "killed"],
)
def test_folders_that_cannot_be_compared_say_why_in_one_line(
    tmp_path: Path, b_args: dict[str, Any], message: str
) -> None:
    reason = not_comparable(_run(tmp_path / "a"), _run(tmp_path / "b", **b_args))
    assert reason is not None
    assert reason.startswith(message)
    assert "\n" not in reason


def test_sweeps_over_different_sizes_are_not_comparable(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", profile="kubelet-baseline", kind="sweep", sizes=(20, 40))
    b = _run(tmp_path / "b", profile="kubelet-baseline", kind="sweep", sizes=(20, 80))
    assert not_comparable(a, b) == (
        "not comparable: A swept sizes 20, 40, B swept 20, 80 (rerun one with --sizes to match)"
    )
    assert not_comparable(a, a) is None


def test_an_interrupted_a_is_named_first(tmp_path: Path) -> None:
    reason = not_comparable(_run(tmp_path / "a", summary=False), _run(tmp_path / "b"))
    assert reason is not None
    assert reason.startswith("A is an interrupted run")


def test_what_differs_lists_changed_fields_but_not_the_ports() -> None:
    a = {"name": "http-knee", "api": {"url": "http://127.0.0.1:1"}, "sim": {"config": None}}
    b = {"name": "http-knee", "api": {"url": "http://127.0.0.1:2"}, "sim": {"config": "/c.yaml"}}
    assert profile_differences(a, b) == ("sim.config: (none) -> /c.yaml",)
    assert profile_differences(a, a) == ()
