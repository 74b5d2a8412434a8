"""The generator measuring itself: CPU% and RSS of this process, sampled on demand.

For an open-loop schedule, the schedule lag (dispatch minus intended time) the runner reports
to the recorder is exactly the lag that matters. Agents have no single schedule (each flow sleeps
on its own timers, and client-side rate limits delay requests on purpose), so for them the event
loop's own lag is measured: ``LoopLagProbe`` asks to wake every ``period`` and records how late
it woke, the way a kubelet's timer would be late on a generator that cannot keep up.

Process readings come through the small ``ProcessReadings`` protocol, so tests hand in fixed
numbers; the real one wraps ``psutil.Process``. Time comes from the injected ``Clock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import psutil
from hdrh.histogram import HdrHistogram

from loadlab.clock import NS_PER_MS, NS_PER_S, NS_PER_US, Clock
from loadlab.metrics.recorder import unlinked

BYTES_PER_MB = 1024 * 1024
MAX_SAMPLES = 86_400
"""Samples kept: a day of 1 s samples; later ones are returned but not kept."""


class ProcessReadings(Protocol):
    """Cumulative CPU time and current resident memory of one process."""

    def cpu_time_s(self) -> float:
        """User plus system CPU seconds used since the process started."""
        ...

    def rss_bytes(self) -> int:
        """Resident set size now."""
        ...


class PsutilReadings:
    """``ProcessReadings`` of a real process (this one by default)."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)

    def cpu_time_s(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)


@dataclass(frozen=True)
class GeneratorSample:
    """One interval of the generator's own resource use."""

    at_ns: int
    """End of the interval, on the engine's clock."""
    cpu_percent: float
    """CPU used over the interval, in percent of one core (may exceed 100 with threads)."""
    rss_mb: float
    """Resident memory at the end of the interval, in MiB."""


@dataclass(frozen=True)
class GeneratorSummary:
    """The generator's resource use over a run or a step."""

    cpu_percent_mean: float
    cpu_percent_max: float
    rss_mb_max: float
    samples: int


class GeneratorMonitor:
    """Samples CPU% (from CPU-time deltas over clock deltas) and RSS on each ``sample`` call."""

    def __init__(
        self,
        clock: Clock,
        readings: ProcessReadings | None = None,
        *,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self._clock = clock
        self._readings = readings if readings is not None else PsutilReadings()
        self._max_samples = max_samples
        self._last_ns = clock.now_ns()
        self._last_cpu_s = self._readings.cpu_time_s()
        self.samples: list[GeneratorSample] = []

    def sample(self) -> GeneratorSample:
        """Close the current interval: CPU% since the previous sample, RSS now. Keeps it."""
        now_ns = self._clock.now_ns()
        cpu_s = self._readings.cpu_time_s()
        elapsed_s = (now_ns - self._last_ns) / NS_PER_S
        cpu_percent = 100.0 * (cpu_s - self._last_cpu_s) / elapsed_s if elapsed_s > 0 else 0.0
        self._last_ns, self._last_cpu_s = now_ns, cpu_s
        sample = GeneratorSample(now_ns, cpu_percent, self._readings.rss_bytes() / BYTES_PER_MB)
        if len(self.samples) < self._max_samples:
            self.samples.append(sample)
        return sample

    def summary(self, since_ns: int | None = None) -> GeneratorSummary:
        """Mean and max CPU%, max RSS over the samples taken at or after ``since_ns``."""
        chosen = [s for s in self.samples if since_ns is None or s.at_ns >= since_ns]
        if not chosen:
            return GeneratorSummary(0.0, 0.0, 0.0, 0)
        cpu = [s.cpu_percent for s in chosen]
        return GeneratorSummary(
            cpu_percent_mean=sum(cpu) / len(cpu),
            cpu_percent_max=max(cpu),
            rss_mb_max=max(s.rss_mb for s in chosen),
            samples=len(chosen),
        )


LAG_PROBE_PERIOD_NS = 100 * NS_PER_MS
"""How often the probe wakes. Not from a reference: ten samples a second resolve a p99 within a
minute and cost nothing; a lag shorter than the period still shows, a longer one spans samples."""


class LoopLagProbe:
    """Records, in an HdrHistogram of microseconds, how late the event loop wakes a timer."""

    def __init__(self, clock: Clock, *, period_ns: int = LAG_PROBE_PERIOD_NS) -> None:
        if period_ns <= 0:
            raise ValueError(f"period must be positive, got {period_ns}")
        self._clock = clock
        self._period_ns = period_ns
        self.histogram = unlinked(HdrHistogram(1, 3_600_000_000, 3))

    async def run(self, until_ns: int) -> None:
        """Wake every period until ``until_ns``, recording each wake's lateness."""
        due_ns = self._clock.now_ns() + self._period_ns
        while due_ns <= until_ns:
            await self._clock.sleep_until(due_ns)
            late_us = max(0, (self._clock.now_ns() - due_ns) // NS_PER_US)
            self.histogram.record_value(min(max(late_us, 1), 3_600_000_000))
            due_ns = max(due_ns + self._period_ns, self._clock.now_ns())

    def reset(self) -> None:
        """Forget the samples so far (the run's warm-up is not its steady state)."""
        self.histogram.reset()

    def p99_ms(self) -> float:
        """The 99th percentile of lateness so far, in ms (0 before the first sample)."""
        if self.histogram.get_total_count() == 0:
            return 0.0
        return float(self.histogram.get_value_at_percentile(99.0)) / 1000.0
