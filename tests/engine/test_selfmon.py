"""GeneratorMonitor: CPU% from CPU-time deltas over clock deltas, RSS in MiB."""

from __future__ import annotations

import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.engine.selfmon import GeneratorMonitor, PsutilReadings


class ScriptedReadings:
    """CPU time advances by a fixed share of each clock second; RSS is fixed."""

    def __init__(self, clock: FakeClock, *, cpu_share: float, rss_bytes: int) -> None:
        self._clock = clock
        self._cpu_share = cpu_share
        self._rss_bytes = rss_bytes

    def cpu_time_s(self) -> float:
        return self._clock.now_ns() / NS_PER_S * self._cpu_share

    def rss_bytes(self) -> int:
        return self._rss_bytes


def test_monitor_reports_cpu_percent_of_one_core_per_interval() -> None:
    clock = FakeClock(0)
    monitor = GeneratorMonitor(clock, ScriptedReadings(clock, cpu_share=0.25, rss_bytes=64 << 20))
    clock.advance(2 * NS_PER_S)
    sample = monitor.sample()
    assert sample.cpu_percent == pytest.approx(25.0)
    assert sample.rss_mb == pytest.approx(64.0)
    assert sample.at_ns == 2 * NS_PER_S


def test_monitor_summary_covers_the_samples_taken_since_a_time() -> None:
    clock = FakeClock(0)
    monitor = GeneratorMonitor(clock, ScriptedReadings(clock, cpu_share=0.5, rss_bytes=10 << 20))
    for _ in range(10):
        clock.advance(NS_PER_S // 2)
        monitor.sample()
    summary = monitor.summary(since_ns=3 * NS_PER_S)
    assert summary.samples == 5
    assert summary.cpu_percent_mean == pytest.approx(50.0)
    assert summary.rss_mb_max == pytest.approx(10.0)


def test_monitor_summary_of_no_samples_is_zero() -> None:
    clock = FakeClock(0)
    monitor = GeneratorMonitor(clock, ScriptedReadings(clock, cpu_share=1.0, rss_bytes=1))
    assert monitor.summary().samples == 0


def test_psutil_readings_of_this_process_are_plausible() -> None:
    readings = PsutilReadings()
    assert readings.rss_bytes() > 1 << 20
    assert readings.cpu_time_s() > 0.0


def test_loop_lag_probe_records_how_late_each_wake_was() -> None:
    import asyncio

    from loadlab.clock import NS_PER_MS, FakeClock
    from loadlab.engine.selfmon import LoopLagProbe

    clock = FakeClock(0)
    probe = LoopLagProbe(clock, period_ns=100 * NS_PER_MS)

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def scenario() -> None:
        task = asyncio.ensure_future(probe.run(300 * NS_PER_MS))
        await settle()
        clock.advance_to(150 * NS_PER_MS)  # due at 100 ms: 50 ms late
        await settle()
        clock.advance_to(250 * NS_PER_MS)  # next due at 200 ms: 50 ms late
        await settle()
        clock.advance_to(300 * NS_PER_MS)  # next due at 300 ms: on time
        await task

    asyncio.run(scenario())
    assert probe.histogram.get_total_count() == 3
    assert probe.p99_ms() == pytest.approx(50.0, rel=0.01)
