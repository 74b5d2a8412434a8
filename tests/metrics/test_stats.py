"""Window aggregation: snapshots of several seconds become one set of plain numbers."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from loadlab.metrics.recorder import IntervalSnapshot, Recorder, new_histogram
from loadlab.metrics.stats import latency_block, percentile_values, window_stats
from loadlab.targets.base import Outcome

MS = 1_000_000
S = 1_000_000_000


def _three_seconds() -> list[IntervalSnapshot]:
    """get: 1..100 ms each second, all OK; list: 200 ms, 10 of them 429s each second."""
    rec = Recorder("api", ["get", "list"], start_ns=0)
    snaps = []
    for sec in range(3):
        base = sec * S
        for i in range(100):
            t = base + i * MS
            rec.on_dispatch(t, t + MS)
            rec.complete(0, Outcome.OK, t, t, t + (i + 1) * MS)
        for i in range(20):
            t = base + i * MS
            rec.on_dispatch(t, t)
            outcome = Outcome.THROTTLED if i < 10 else Outcome.OK
            rec.complete(1, outcome, t, t, t + 200 * MS)
        rec.on_skipped(5)
        snaps.append(rec.rotate(base + S))
    return snaps


def test_window_sums_counts_and_rates_over_its_intervals() -> None:
    stats = window_stats(_three_seconds(), offered_per_s=125.0)

    assert stats.duration_s == pytest.approx(3.0)
    assert (stats.sent, stats.skipped, stats.planned) == (360, 15, 375)
    assert (stats.completed, stats.errors, stats.ok) == (360, 30, 330)
    assert stats.errors_by_outcome == {"429": 30}
    assert stats.achieved_per_s == pytest.approx(110.0)
    assert stats.error_rate == pytest.approx(30 / 360)
    assert stats.sent_ratio == pytest.approx(360 / 375)


def test_window_percentiles_come_from_the_merged_histograms() -> None:
    stats = window_stats(_three_seconds())

    get = stats.latency_by_op["get"]
    assert get.count == 300
    assert get.p50_ms == pytest.approx(50.0, rel=2e-3)
    assert get.p99_ms == pytest.approx(99.0, rel=2e-3)
    assert get.max_ms == pytest.approx(100.0, rel=2e-3)
    assert stats.latency_by_op["list"].p50_ms == pytest.approx(200.0, rel=2e-3)
    # All ops: 300 gets up to 100 ms, then 60 lists at 200 ms: p90 falls among the lists.
    assert stats.latency.count == 360
    assert stats.latency.p90_ms == pytest.approx(200.0, rel=2e-3)
    assert stats.lag_p99_ms == pytest.approx(1.0, rel=2e-3)
    assert stats.lag_p50_ms == pytest.approx(1.0, rel=2e-3)


def test_latency_block_keys_are_target_slash_op() -> None:
    stats = window_stats(_three_seconds())
    block = latency_block([stats])
    assert set(block) == {"api/get", "api/list"}
    assert block["api/get"]["count"] == 300
    assert set(block["api/get"]) == {"count", "p50", "p90", "p99", "p999", "max"}


def test_a_window_without_sends_plans_the_offered_rate() -> None:
    rec = Recorder("api", ["get"], start_ns=0)
    stats = window_stats([rec.rotate(2 * S)], offered_per_s=50.0)
    assert stats.planned == 100
    assert stats.sent_ratio == 0.0
    assert stats.latency.count == 0


def test_a_window_refuses_to_mix_targets() -> None:
    api = Recorder("api", ["get"], start_ns=0).rotate(S)
    dns = Recorder("dns", ["a"], start_ns=0).rotate(S)
    with pytest.raises(ValueError, match="one target"):
        window_stats([api, dns])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(min_value=1, max_value=3_600_000_000), min_size=1, max_size=300),
    percentiles=st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=6),
)
def test_fast_percentiles_equal_hdrh_own(values: list[int], percentiles: list[float]) -> None:
    hist = new_histogram()
    for v in values:
        hist.record_value(v)
    assert percentile_values(hist, percentiles) == hist.get_percentile_to_value_dict(percentiles)
    # A decoded histogram (a shorter counts array on the wire) gives the same answers.
    decoded = HdrHistogram.decode(hist.encode())
    assert percentile_values(decoded, percentiles) == hist.get_percentile_to_value_dict(percentiles)
