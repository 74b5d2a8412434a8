"""Hot paths of recording: one completion, one rotation, one window, one encode.

Run: ``.venv/bin/pytest bench/test_bench_metrics.py`` (pytest-benchmark). No timing is
asserted; docs/peers.md gives the expected scale (record_value ~0.55 us, encode ~0.6 ms).
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from loadlab.metrics.recorder import IntervalSnapshot, Recorder, new_histogram
from loadlab.metrics.stats import window_stats
from loadlab.targets.base import Outcome

MS = 1_000_000
S = 1_000_000_000
OPS = ["get-lease", "list-pods", "put-lease"]


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
