"""The SLOs of a cluster size: each judged on its worst window of the steady state."""

from __future__ import annotations

from loadlab.analysis.slo import DnsThresholds, SloReport, sweep_slos, windows
from loadlab.metrics.ledger import LookupSecond
from loadlab.metrics.recorder import IntervalSnapshot
from tests.analysis.test_onset import api_series, lookups

DNS = DnsThresholds(max_error_rate=0.001, p50_ms=20.0, p99_ms=100.0)
BOUNDS = {"lease-renew": 1000.0}


def judge(
    api: list[IntervalSnapshot],
    *,
    dns: list[IntervalSnapshot] | None = None,
    seconds: list[LookupSecond] | None = None,
    window_s: float = 300.0,
) -> SloReport:
    return sweep_slos(
        {"kubelet": api},
        BOUNDS,
        api_max_error_rate=0.01,
        dns=dns,
        lookup_op="lease-renew",
        lookup_seconds=seconds or [],
        dns_thresholds=DNS,
        window_s=window_s,
    )


def by_name(report: SloReport) -> dict[str, tuple[float | None, bool]]:
    return {c.name: (c.observed, c.passed) for c in report.checks}


def test_windows_cut_at_their_length_and_a_short_tail_joins_the_last_window() -> None:
    snaps = api_series(25, bad_from_s=None, rate=1)
    assert [len(w) for w in windows(snaps, 10)] == [10, 10, 5]
    assert [len(w) for w in windows(snaps[:24], 10)] == [10, 14]
    assert windows([], 10) == []


def test_a_healthy_size_meets_every_slo_with_its_measured_values() -> None:
    checks = by_name(judge(api_series(60, bad_from_s=None)))
    assert checks["kubelet/lease-renew p99_ms"][1] is True
    observed = checks["kubelet/lease-renew p99_ms"][0]
    assert observed is not None
    assert 4 <= observed <= 6
    assert checks["api error_rate"] == (0.0, True)


def test_one_slow_window_fails_the_latency_slo_on_its_own() -> None:
    # 6 s of 2 s answers in 600 s: 1 % of the run, so the whole run's p99 sits at the edge;
    # judged on 60 s windows, the window holding them has 10 % slow answers: p99 2 s > 1 s.
    fast = api_series(600, bad_from_s=None)
    slow = _shifted(api_series(6, bad_from_s=0, slow_ms=2000), 300)
    snaps = fast[:300] + slow + fast[306:]
    checks = by_name(judge(snaps, window_s=60))
    observed, passed = checks["kubelet/lease-renew p99_ms"]
    assert passed is False
    assert observed is not None
    assert observed >= 1900
    whole = by_name(judge(snaps, window_s=600))["kubelet/lease-renew p99_ms"][0]
    assert whole is not None
    assert whole < observed


def test_errors_in_one_window_fail_the_error_rate_slo() -> None:
    snaps = api_series(120, bad_from_s=100)  # the last 20 s all 429
    checks = by_name(judge(snaps, window_s=60))
    observed, passed = checks["api error_rate"]
    assert passed is False
    assert observed is not None
    assert 0.3 <= observed <= 0.35


def test_dns_lookups_judged_on_failures_p50_and_p99() -> None:
    dns = api_series(60, bad_from_s=None)  # 5 ms lookups
    fine = by_name(
        judge(api_series(60, bad_from_s=None), dns=dns, seconds=lookups(60, fail_from_s=None))
    )
    assert fine["dns lookup error_rate"] == (0.0, True)
    assert fine["dns lookup p50_ms"][1] is True
    assert fine["dns lookup p99_ms"][1] is True
    failing = by_name(
        judge(api_series(60, bad_from_s=None), dns=dns, seconds=lookups(60, fail_from_s=59))
    )
    observed, passed = failing["dns lookup error_rate"]
    assert passed is False  # 1 s of 60 failing is 1.7 % > 0.1 %
    assert observed is not None
    assert abs(observed - 1 / 60) < 1e-9


def test_an_slo_nobody_measured_is_not_met() -> None:
    checks = by_name(judge(api_series(10, bad_from_s=None), dns=[], seconds=[]))
    assert checks["dns lookup error_rate"] == (None, False)
    assert checks["dns lookup p99_ms"] == (None, False)


def _shifted(snaps: list[IntervalSnapshot], by_s: int) -> list[IntervalSnapshot]:
    from dataclasses import replace

    ns = by_s * 10**9
    return [replace(s, start_ns=s.start_ns + ns, end_ns=s.end_ns + ns) for s in snaps]
