"""SLO checks over a window: summary.json's ``slo`` block and the exit code's verdict.

Latency is the SLO's measure (docs/knee-method.md: "latency for the SLO"): p99 per operation,
corrected for coordinated omission, and the error rate per target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from loadlab.clock import NS_PER_S
from loadlab.metrics.ledger import LookupSecond
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.metrics.stats import WindowStats, window_stats


@dataclass(frozen=True)
class SloCheck:
    """One threshold compared with what was observed."""

    name: str
    """``api error_rate`` or ``api/get-lease p99_ms``."""
    threshold: float
    observed: float | None
    """None when nothing was measured (no traffic for that target or operation)."""
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "threshold": self.threshold,
            "observed": self.observed,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class SloReport:
    """All checks; the run passes when every one does (and vacuously with none)."""

    checks: tuple[SloCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        """summary.json's ``slo``: ``{"passed": ..., "checks": [...]}``."""
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}


def evaluate_slos(
    stats: Sequence[WindowStats],
    *,
    max_error_rate: Mapping[str, float] | None = None,
    p99_ms: Mapping[str, float] | None = None,
    p50_ms: Mapping[str, float] | None = None,
) -> SloReport:
    """Check each target's window against its thresholds.

    ``max_error_rate`` maps a target name to its limit; ``p99_ms`` maps ``<target>/<op>`` to its
    p99 bound. A threshold for a target or operation that saw no traffic fails: an SLO nobody
    measured is not met (its observed value is None).
    """
    by_target = {s.target: s for s in stats}
    checks: list[SloCheck] = []
    for target, limit in (max_error_rate or {}).items():
        window = by_target.get(target)
        if window is None or window.completed == 0:
            checks.append(SloCheck(f"{target} error_rate", limit, None, False))
            continue
        checks.append(
            SloCheck(f"{target} error_rate", limit, window.error_rate, window.error_rate <= limit)
        )
    for key, bound_ms in (p99_ms or {}).items():
        target, _, op = key.partition("/")
        window = by_target.get(target)
        latency = window.latency_by_op.get(op) if window is not None else None
        if latency is None or latency.count == 0:
            checks.append(SloCheck(f"{key} p99_ms", bound_ms, None, False))
            continue
        checks.append(
            SloCheck(f"{key} p99_ms", bound_ms, latency.p99_ms, latency.p99_ms <= bound_ms)
        )
    for target, bound_ms in (p50_ms or {}).items():
        window = by_target.get(target)
        if window is None or window.completed == 0:
            checks.append(SloCheck(f"{target} p50_ms", bound_ms, None, False))
            continue
        median = window.latency.p50_ms
        checks.append(SloCheck(f"{target} p50_ms", bound_ms, median, median <= bound_ms))
    return SloReport(tuple(checks))


def worst_of(reports: Iterable[SloReport]) -> SloReport:
    """Checks judged window by window, each kept at its worst window: the first failing one, or
    the one with the highest measured value when all passed."""
    worst: dict[str, SloCheck] = {}
    for report in reports:
        for check in report.checks:
            kept = worst.get(check.name)
            if kept is None or _worse(check, kept):
                worst[check.name] = check
    return SloReport(tuple(worst.values()))


def _worse(new: SloCheck, kept: SloCheck) -> bool:
    if new.passed != kept.passed:
        return not new.passed
    if new.observed is None or kept.observed is None:
        return new.observed is None and kept.observed is not None
    return new.observed > kept.observed


@dataclass(frozen=True)
class DnsThresholds:
    """Cluster DNS as applications see it (the profile's ``slo.dns``)."""

    max_error_rate: float
    p50_ms: float
    p99_ms: float


def windows(snapshots: Sequence[IntervalSnapshot], window_s: float) -> list[list[IntervalSnapshot]]:
    """``snapshots`` cut into consecutive windows of ``window_s``; a last window shorter than
    half of one joins the one before (a few seconds' p99 would be noise, not a window)."""
    if not snapshots:
        return []
    window_ns = int(window_s * NS_PER_S)
    origin = snapshots[0].start_ns
    cut: list[list[IntervalSnapshot]] = []
    for snap in snapshots:
        k = (snap.start_ns - origin) // window_ns
        while len(cut) <= k:
            cut.append([])
        cut[k].append(snap)
    cut = [w for w in cut if w]
    if len(cut) >= 2:
        tail = cut[-1]
        if tail[-1].end_ns - tail[0].start_ns < window_ns / 2:
            cut[-2].extend(cut.pop())
    return cut


def _worst(values: Sequence[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return max(seen) if seen else None


def _check(name: str, threshold: float, observed: float | None) -> SloCheck:
    """A check that fails when nothing was measured: an SLO nobody measured is not met."""
    return SloCheck(name, threshold, observed, observed is not None and observed <= threshold)


def sweep_slos(
    api: Mapping[str, Sequence[IntervalSnapshot]],
    bounds_ms: Mapping[str, float],
    *,
    api_max_error_rate: float,
    dns: Sequence[IntervalSnapshot] | None,
    lookup_op: str,
    lookup_seconds: Sequence[LookupSecond],
    dns_thresholds: DnsThresholds,
    window_s: float,
) -> SloReport:
    """The SLOs of one cluster size over its steady state, each on its worst window.

    ``api`` maps an agent kind to its snapshots after the warm-up; ``bounds_ms`` maps an
    operation to its p99 bound (operations without one are not checked). The API error rate
    counts every API kind together; it is None (not measured, so not met) when no API call
    completed after the warm-up. DNS is judged on ``lookup_op``, what an application sees:
    its p50 and p99 from ``dns`` snapshots, its failure rate from ``lookup_seconds`` (lookups
    by the second they were sent, so a lookup still retrying at the end is not lost)."""
    checks: list[SloCheck] = []
    error_rates: list[list[tuple[int, int]]] = []
    for kind, snaps in api.items():
        cut = windows(snaps, window_s)
        stats = [window_stats(w) for w in cut]
        for i, st in enumerate(stats):
            while len(error_rates) <= i:
                error_rates.append([])
            error_rates[i].append((st.errors, st.completed))
        ops = snaps[0].op_names if snaps else ()
        for op in ops:
            worst = _worst([_latency(st, op, "p99") for st in stats])
            if op in bounds_ms and worst is not None:  # an op that never ran has no latency
                checks.append(_check(f"{kind}/{op} p99_ms", bounds_ms[op], worst))
    if api:
        rates = [
            sum(e for e, _ in w) / total for w in error_rates if (total := sum(c for _, c in w)) > 0
        ]
        checks.append(_check("api error_rate", api_max_error_rate, _worst(rates)))
    if dns is not None:
        cut = windows(dns, window_s)
        stats = [window_stats(w) for w in cut]
        p50 = _worst([_latency(st, lookup_op, "p50") for st in stats])
        p99 = _worst([_latency(st, lookup_op, "p99") for st in stats])
        span_s = window_s if len(cut) > 1 else float("inf")
        failures = _lookup_failure_rates(lookup_seconds, span_s)
        checks.append(_check("dns lookup error_rate", dns_thresholds.max_error_rate, failures))
        checks.append(_check("dns lookup p50_ms", dns_thresholds.p50_ms, p50))
        checks.append(_check("dns lookup p99_ms", dns_thresholds.p99_ms, p99))
    return SloReport(tuple(checks))


def _latency(stats: WindowStats, op: str, which: str) -> float | None:
    latency = stats.latency_by_op.get(op)
    if latency is None or latency.count == 0:
        return None
    return latency.p50_ms if which == "p50" else latency.p99_ms


def _lookup_failure_rates(seconds: Sequence[LookupSecond], span_s: float) -> float | None:
    """The worst failure rate of lookups over windows of ``span_s`` (inf: one window)."""
    if not seconds:
        return None
    origin = seconds[0].t_s
    buckets: dict[int, list[int]] = {}
    for s in seconds:
        k = 0 if span_s == float("inf") else int((s.t_s - origin) // span_s)
        ok_failed = buckets.setdefault(k, [0, 0])
        ok_failed[0] += s.ok
        ok_failed[1] += s.failed
    rates = [f / (o + f) for o, f in buckets.values() if o + f > 0]
    return max(rates) if rates else None
