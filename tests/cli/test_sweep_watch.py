"""The live view's onsets: seen while the size runs, once each, from the recent past."""

from __future__ import annotations

from loadlab.analysis.steps import StepCriteria
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.sweep_watch import OnsetWatch
from tests.analysis.test_onset import CRITERIA, api_series, lookups


def watch() -> OnsetWatch:
    return OnsetWatch(CRITERIA, window_s=10, dns_failure_rate=0.01, warmup_s=5)


def replay(w: OnsetWatch, snaps: list[IntervalSnapshot], fail_dns_from: int | None) -> list[str]:
    """Feed the watch second by second, as the sweep's ticker does; every line it emits."""
    seen: list[str] = []
    for t in range(1, len(snaps) + 1):
        dns = lookups(t, fail_from_s=fail_dns_from)
        seen += [f"{t}: {line}" for line in w.look(float(t), {"kubelet": snaps[:t]}, dns)]
    return seen


def test_saturation_then_dns_failure_are_each_reported_once_soon_after_they_begin() -> None:
    lines = replay(watch(), api_series(120, bad_from_s=40), fail_dns_from=70)
    assert len(lines) == 2, lines
    api_line, dns_line = lines
    t_api = int(api_line.split(":")[0])
    assert 50 < t_api <= 70  # a window of 10 s after 40 s and more bad seconds after it
    assert "API saturated at 40 s" in api_line
    t_dns = int(dns_line.split(":")[0])
    assert 80 < t_dns <= 100
    assert "DNS failed at 70 s" in dns_line
    assert "the caches hid it for 30 s" in dns_line


def test_a_healthy_size_and_the_warm_up_say_nothing() -> None:
    assert replay(watch(), api_series(60, bad_from_s=None), fail_dns_from=None) == []
    early = OnsetWatch(StepCriteria(), window_s=10, dns_failure_rate=0.01, warmup_s=100)
    assert replay(early, api_series(60, bad_from_s=0), fail_dns_from=0) == []
