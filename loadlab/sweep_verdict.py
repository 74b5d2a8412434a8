"""What one cluster size came to: when the API saturated, when DNS failed, how long the caches hid
it, per-kind counts, and whether the generator kept up (``loadlab.sweep`` measured it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loadlab.analysis.onset import Breach, api_saturation, dns_failure, onset_s
from loadlab.analysis.slo import DnsThresholds, SloCheck, SloReport, sweep_slos
from loadlab.analysis.steps import StepCriteria
from loadlab.clock import NS_PER_S
from loadlab.cluster.rails import is_abort
from loadlab.metrics.ledger import LookupSecond
from loadlab.metrics.stats import window_stats
from loadlab.profile import Profile
from loadlab.scenario import api_op_bounds
from loadlab.sweep import LOOKUP_OP, SizeRun, effective_phases


@dataclass(frozen=True)
class SizeVerdict:
    """What a size came to, for ``summary.json``'s ``sizes`` and the printed lines."""

    nodes: int
    complete: bool
    api: Breach | None
    dns: Breach | None
    generator_limited: bool
    agents: Mapping[str, Any]
    generator: Mapping[str, Any]
    duration_s: float
    steady_s: float | None = None
    """Seconds measured after the warm-up; None: long enough (the default for built verdicts)."""
    needed_s: float = 0.0
    """What a sustained breach needs to be seen at all: two of the checks' windows."""
    slo: SloReport = field(default_factory=lambda: SloReport(()))
    """The profile's SLOs over the steady state, each on its worst window."""
    aborted: str | None = None
    """Why a safety rail stopped this size (``aborted at 12 s: GET /readyz answered 500``)."""

    @property
    def slo_missed(self) -> tuple[str, ...]:
        """The SLOs the size measured and missed, as ``name observed > threshold``."""
        return tuple(
            _describe(c) for c in self.slo.checks if not c.passed and c.observed is not None
        )

    @property
    def slo_unmeasured(self) -> tuple[str, ...]:
        """SLOs with nothing to measure after the warm-up (no API call completed, no lookup):
        not met, and not a failure of the server either."""
        return tuple(_describe(c) for c in self.slo.checks if c.observed is None)

    @property
    def judged(self) -> bool:
        """The steady state was long enough for a breach to show: a shorter run that saw none
        has not shown that the server held, only that it was not looked at long enough."""
        return self.steady_s is None or self.steady_s >= self.needed_s

    @property
    def passed(self) -> bool:
        return (
            self.complete
            and self.judged
            and not self.generator_limited
            and not self.api
            and not self.dns
            and self.slo.passed
        )

    def claimed(self, breach: Breach | None) -> bool:
        """A breach the size's result can rest on: any, when the generator kept up; only one
        about the server's answers (``Breach.about_answers``) when it fell behind."""
        if breach is None:
            return False
        return not self.generator_limited or breach.about_answers

    @property
    def server_failed(self) -> bool:
        """The API saturated or DNS failed, by a measurement the generator could not have
        caused."""
        if not self.complete:
            return False
        missed = bool(self.slo_missed) and self.judged and not self.generator_limited
        return self.claimed(self.api) or self.claimed(self.dns) or missed

    @property
    def onset_s(self) -> float | None:
        return onset_s(self.api.at_s if self.api else None, self.dns.at_s if self.dns else None)

    def line(self) -> str:
        head = f"{self.nodes:,} nodes:"
        if self.aborted is not None:
            return f"{head} {self.aborted}; the load was unwound, nothing else is claimed"
        if not self.complete:
            return f"{head} interrupted after {self.duration_s:,.0f} s: nothing is claimed"
        claimed: list[str] = []
        seen: list[str] = []
        for what, breach in (("API saturated", self.api), ("DNS failed", self.dns)):
            if breach is not None:
                text = f"{what} at {breach.at_s:,.0f} s ({breach.why})"
                (claimed if self.claimed(breach) else seen).append(text)
        if self.onset_s is not None and self.claimed(self.api) and self.claimed(self.dns):
            claimed.append(_onset_text(self.onset_s))
        if self.slo_missed:
            shown = list(self.slo_missed[:3])
            if len(self.slo_missed) > 3:
                shown.append(f"{len(self.slo_missed) - 3} more")
            text = "SLO missed: " + ", ".join(shown)
            (seen if self.generator_limited or not self.judged else claimed).append(text)
        lag = ""
        if self.generator_limited:
            lag_ms = self.generator.get("schedule_lag_p99_ms", 0.0)
            lag = f"the generator fell behind (event-loop lag p99 {lag_ms:,.0f} ms)"
        if not claimed and not seen:
            return self._nothing_breached(head, lag)
        if not claimed:
            return f"{head} inconclusive - {lag}; seen, not claimed: " + "; ".join(seen)
        tail = f" ({lag}; the errors above are the server's answers)" if lag else ""
        unclaimed = f"; seen, not claimed: {'; '.join(seen)}" if seen else ""
        return f"{head} " + "; ".join(claimed) + unclaimed + tail

    def _nothing_breached(self, head: str, lag: str) -> str:
        """The line of a size where neither the API nor DNS breached its checks."""
        if lag:
            return f"{head} inconclusive - {lag}: the size's result is not the server's"
        if not self.judged:
            return (
                f"{head} inconclusive - {self.steady_s or 0:,.0f} s after the warm-up is "
                f"shorter than the {self.needed_s:,.0f} s a sustained breach needs to show "
                "(raise phases.duration_s or lower sweep.window_s): nothing is claimed"
            )
        if self.slo_unmeasured:
            return (
                f"{head} inconclusive - nothing measured after the warm-up for: "
                + ", ".join(self.slo_unmeasured)
                + " (lengthen phases.duration_s)"
            )
        met = f"; {len(self.slo.checks)} SLOs met" if self.slo.checks else ""
        return f"{head} held for {self.duration_s:,.0f} s (API and DNS within their checks{met})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "passed": self.passed,
            "complete": self.complete,
            "knee": None,
            "api_saturation_at_s": self.api.at_s if self.api else None,
            "api_saturation_why": self.api.why if self.api else None,
            "dns_failure_at_s": self.dns.at_s if self.dns else None,
            "dns_failure_why": self.dns.why if self.dns else None,
            "dns_failure_onset_s": self.onset_s,
            "generator_limited": self.generator_limited,
            "judged": self.judged,
            "api_saturation_claimed": self.claimed(self.api),
            "dns_failure_claimed": self.claimed(self.dns),
            "duration_s": self.duration_s,
            "agents": dict(self.agents),
            "generator": dict(self.generator),
            "slo": self.slo.as_dict(),
            "aborted": self.aborted,
            "line": self.line(),
        }


def judge_size(
    profile: Profile, run: SizeRun, *, quick: bool = False, stopped_by: str | None = None
) -> SizeVerdict:
    """When the API saturated and DNS failed, per-kind counts, and the generator's health."""
    sweep = profile.sweep
    warm_ns = run.start_ns + int(effective_phases(profile, quick).warmup_s * NS_PER_S)
    steady = {k: [s for s in snaps if s.start_ns >= warm_ns] for k, snaps in run.snapshots.items()}
    api_kinds = {k: s for k, s in steady.items() if k != "pod-dns" and s}
    bounds = api_op_bounds(profile.agents, profile.slo) if profile.agents is not None else {}
    criteria = StepCriteria(max_error_rate=sweep.max_error_rate, slo_p99_ms=bounds)
    api = api_saturation(api_kinds, criteria, window_s=sweep.window_s) if api_kinds else None
    dns = None
    lookups: list[LookupSecond] = []
    if run.lookups is not None:
        warm_s = (warm_ns - run.start_ns) / NS_PER_S
        lookups = [s for s in run.lookups.seconds(since_ns=run.start_ns) if s.t_s >= warm_s]
        dns = dns_failure(lookups, max_failure_rate=sweep.dns_failure_rate, window_s=sweep.window_s)
    slo = profile.slo
    slos = sweep_slos(
        api_kinds,
        bounds,
        api_max_error_rate=slo.api.max_error_rate,
        dns=steady.get("pod-dns") if run.lookups is not None else None,
        lookup_op=LOOKUP_OP,
        lookup_seconds=lookups,
        dns_thresholds=DnsThresholds(slo.dns.max_error_rate, slo.dns.p50_ms, slo.dns.p99_ms),
        window_s=slo.window_s,
    )
    lag_p99_ms = run.lag.p99_ms() if run.lag is not None else 0.0
    gen = run.monitor.summary() if run.monitor is not None else None
    generator = {
        "rss_mb": gen.rss_mb_max if gen else 0.0,
        "cpu_percent": gen.cpu_percent_mean if gen else 0.0,
        "cpu_percent_max": gen.cpu_percent_max if gen else 0.0,
        "schedule_lag_p99_ms": lag_p99_ms,
        "workers": run.workers,
    }
    return SizeVerdict(
        nodes=run.nodes,
        complete=run.complete,
        api=api,
        dns=dns,
        generator_limited=lag_p99_ms > profile.criteria.max_lag_p99_ms,
        agents=agent_counts(run),
        generator=generator,
        duration_s=(run.end_ns - run.start_ns) / NS_PER_S,
        steady_s=max(0.0, (run.end_ns - warm_ns) / NS_PER_S),
        needed_s=2 * sweep.window_s,
        slo=slos,
        aborted=stopped_by if is_abort(stopped_by) else None,
    )


def agent_counts(run: SizeRun) -> dict[str, Any]:
    """Per kind: how many agents, and per op the count, errors by outcome and latency."""
    out: dict[str, Any] = {}
    for kind, snaps in run.snapshots.items():
        if not snaps:
            continue
        stats = window_stats(snaps)
        by_op: dict[str, Any] = {}
        for op, latency in stats.latency_by_op.items():
            by_op[op] = latency.as_dict()
        errors: dict[str, dict[str, int]] = {}
        for snap in snaps:
            for (index, outcome), n in snap.counts.items():
                per_op = errors.setdefault(snap.op_names[index], {})
                per_op[outcome.label] = per_op.get(outcome.label, 0) + n
        for name, outcomes in errors.items():
            by_op.setdefault(name, {})["outcomes"] = outcomes
        out[kind] = {"agents": run.agent_count.get(kind, 0), "ops": by_op}
        out[kind].update(run.tallies.get(kind, {}))
    if run.lookups is not None and "pod-dns" in out:
        seconds = run.lookups.seconds()
        out["pod-dns"]["lookups_ok"] = sum(s.ok for s in seconds)
        out["pod-dns"]["lookups_failed"] = sum(s.failed for s in seconds)
    return out


def _describe(check: SloCheck) -> str:
    """``telemetry/list-pods p99 41,200 ms > 30,000 ms``, or ``... not measured``."""
    name = check.name.replace("_ms", "").replace("_rate", " rate")
    if check.observed is None:
        return name
    if check.name.endswith("_rate"):
        return f"{name} {check.observed:.2%} > {check.threshold:.2%}"
    return f"{name} {check.observed:,.0f} ms > {check.threshold:,.0f} ms"


def _onset_text(onset_s: float) -> str:
    """How long DNS outlived the API: the caches' grace, or DNS failing first or with it."""
    if onset_s >= 0.5:
        return f"the caches hid it for {onset_s:,.0f} s"
    if onset_s > -0.5:
        return "DNS failed as the API saturated"
    return f"DNS failed {-onset_s:,.0f} s before the API saturated"
