"""Hot paths of recording: one completion, one rotation, one window, one encode, and a whole
interval's samples recorded one ``record_value`` at a time against one ``record_many``.

Run: ``.venv/bin/pytest bench/test_bench_metrics.py --benchmark-only`` (pytest-benchmark). No
timing is asserted (the per-sample figures go to ``extra_info``); what is asserted is that every
sample is counted, in the bucket ``record_value`` would have put it in. docs/peers.md gives the
scale: record_value ~0.55 us, encode ~0.6 ms.
"""

from __future__ import annotations

import random
from typing import Any

from hdrh.histogram import HdrHistogram
from pytest_benchmark.fixture import BenchmarkFixture

from loadlab.clock import NS_PER_US
from loadlab.metrics.batch import record_many
from loadlab.metrics.recorder import IntervalSnapshot, Recorder, new_histogram
from loadlab.metrics.stats import window_stats
from loadlab.targets.base import Outcome

MS = 1_000_000
S = 1_000_000_000
OPS = ["get-lease", "list-pods", "put-lease"]
SAMPLES = 100_000
"""An interval's samples at 100k completions a second."""


def _latencies_ns(n: int) -> list[int]:
    """Loopback-like latencies: mostly 0.1-2 ms, a tail to 2 s."""
    rng = random.Random(1)
    return [int(rng.lognormvariate(13.0, 1.2)) for _ in range(n)]


def _counts(hist: HdrHistogram) -> list[int]:
    return list(hist.counts)


def test_bench_record_value_per_sample(benchmark: Any) -> None:
    """The old hot path: one hdrh ``record_value`` per sample (the baseline of the next two)."""
    values = [v // NS_PER_US for v in _latencies_ns(SAMPLES)]

    def record() -> HdrHistogram:
        hist = new_histogram()
        for v in values:
            hist.record_value(v)
        return hist

    hist = benchmark.pedantic(record, rounds=3, iterations=1)
    assert hist.get_total_count() == SAMPLES
    benchmark.extra_info["per_sample_ns"] = benchmark.stats.stats.median / SAMPLES * 1e9


def test_bench_record_many_per_sample(benchmark: Any) -> None:
    """One interval's raw nanosecond differences filed at once: counts equal, bucket for bucket,
    to ``record_value`` of each sample in microseconds."""
    latencies = _latencies_ns(SAMPLES)

    def record() -> HdrHistogram:
        hist = new_histogram()
        record_many(hist, latencies, scale=NS_PER_US)
        return hist

    hist = benchmark.pedantic(record, rounds=5, iterations=1)
    one_by_one = new_histogram()
    for v in latencies:
        one_by_one.record_value(v // NS_PER_US)
    assert hist.get_total_count() == one_by_one.get_total_count() == SAMPLES
    assert _counts(hist) == _counts(one_by_one)
    benchmark.extra_info["per_sample_ns"] = benchmark.stats.stats.median / SAMPLES * 1e9


def test_bench_recorder_per_completion_amortised(benchmark: Any) -> None:
    """What a completion costs the engine in all: ``Recorder.complete`` (two samples, corrected
    and from the send, each a list append) and its share of the interval's ``rotate``
    (record_many and encode), with this loop's own overhead. Every completion is in the
    snapshot's counts and its histograms."""
    latencies = _latencies_ns(SAMPLES)
    rec = Recorder("dns", OPS, start_ns=0)
    seconds = iter(range(1, 10_000))

    def interval() -> IntervalSnapshot:
        complete = rec.complete
        ok = Outcome.OK
        for i, latency in enumerate(latencies):
            complete(i % 3, ok, 0, 0, latency)
        return rec.rotate(next(seconds) * S)

    snap = benchmark.pedantic(interval, rounds=3, iterations=1)
    assert snap.completed == SAMPLES
    recorded = sum(HdrHistogram.decode(blob).get_total_count() for blob in snap.corrected.values())
    assert recorded == SAMPLES
    per_completion_ns = benchmark.stats.stats.median / SAMPLES * 1e9
    benchmark.extra_info["per_completion_ns"] = per_completion_ns
    benchmark.extra_info["per_sample_ns"] = per_completion_ns / 2


def _fill(rec: Recorder, base_ns: int, n: int) -> None:
    for i in range(n):
        t = base_ns + i * 1000
        rec.on_dispatch(t, t + 50_000)
        rec.complete(i % 3, Outcome.OK, t, t + 50_000, t + (i % 500 + 1) * 10_000)


def test_bench_complete(benchmark: BenchmarkFixture) -> None:
    rec = Recorder("api", OPS, start_ns=0)
    _fill(rec, 0, 10)  # histograms allocated: measure the steady state

    benchmark(rec.complete, 1, Outcome.OK, 0, 50_000, 3 * MS)


def test_bench_dispatch(benchmark: BenchmarkFixture) -> None:
    rec = Recorder("api", OPS, start_ns=0)
    benchmark(rec.on_dispatch, 0, 50_000)


def test_bench_interval_of_1k_completions_then_rotate(benchmark: BenchmarkFixture) -> None:
    rec = Recorder("api", OPS, start_ns=0)
    clock = iter(range(1, 10_000_000))

    def interval() -> IntervalSnapshot:
        second = next(clock)
        _fill(rec, second * S, 1000)
        return rec.rotate((second + 1) * S)

    benchmark(interval)


def test_bench_encode(benchmark: BenchmarkFixture) -> None:
    hist = new_histogram()
    for v in range(1, 200_000, 37):
        hist.record_value(v)
    benchmark(hist.encode)


def test_bench_window_stats_of_a_10s_step(benchmark: BenchmarkFixture) -> None:
    rec = Recorder("api", OPS, start_ns=0)
    snaps = []
    for second in range(10):
        _fill(rec, second * S, 1000)
        snaps.append(rec.rotate((second + 1) * S))

    benchmark(window_stats, snaps, 1000.0)
