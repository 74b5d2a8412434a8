"""summary.json (schema ``loadlab.summary/v1``): built from what a session measured. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadlab.analysis.findings import (
    Finding,
    FindingKind,
    exit_code,
    fixed_finding,
    ramp_finding,
)
from loadlab.analysis.knee import Knee
from loadlab.analysis.ramp import StopReason
from loadlab.analysis.slo import SloCheck, SloReport, evaluate_slos, worst_of
from loadlab.analysis.steps import StepVerdict
from loadlab.engine.selfmon import GeneratorSummary
from loadlab.metrics.stats import WindowStats, latency_block
from loadlab.results import SUMMARY_SCHEMA, rounded


@dataclass(frozen=True)
class TargetOutcome:
    """What one target's part of the run came to."""

    name: str
    address: str
    whole_run: WindowStats
    steps: tuple[StepVerdict, ...]
    ramped: bool
    slo_p99_ms: Mapping[str, float]
    max_error_rate: float
    stop_reason: StopReason | None = None
    """Why the ramp search ended (ramps only)."""
    stalled_at_s: float | None = None
    """A fixed run was ended then because this target stopped serving."""
    stray_answers: int = 0
    """Answers that matched no request (DNS: wrong ID or question)."""
    windows: tuple[WindowStats, ...] = ()
    """A long fixed run cut into SLO windows (``slo.window_s``): judged on its worst one. Empty:
    the whole run is one window."""
    slo_p50_ms: float | None = None
    """The target's median bound (DNS), or None."""


@dataclass(frozen=True)
class RunVerdict:
    """The run's answer: one finding per target, the SLO checks, and the exit code they imply.
    ``summary.json`` and the exit code are both built from this one object, so they agree."""

    slo: SloReport
    knees: Mapping[str, Knee | None]
    findings: tuple[Finding, ...]
    complete: bool

    @property
    def generator_limited(self) -> bool:
        return any(f.kind is FindingKind.GENERATOR_LIMITED for f in self.findings)

    @property
    def passed(self) -> bool:
        return self.complete and self.slo.passed

    @property
    def exit_code(self) -> int:
        """From the findings; an interrupted run's code is the caller's (130 or 143)."""
        return exit_code(self.findings)


def judge_run(targets: Sequence[TargetOutcome], *, complete: bool = True) -> RunVerdict:
    """One finding per target (a ramp by its steps, a fixed run by its whole window) and the SLO
    checks; every finding is also a check, so ``slo.passed`` is true only when all passed."""
    checks: list[SloCheck] = []
    fixed = [t for t in targets if not t.ramped]
    report = SloReport(())
    if fixed:
        report = SloReport(tuple(c for t in fixed for c in fixed_slos(t).checks))
        checks.extend(report.checks)
    findings: list[Finding] = []
    knees: dict[str, Knee | None] = {}
    for t in targets:
        if t.ramped:
            finding = ramp_finding(t.name, t.steps, stop_reason=t.stop_reason, complete=complete)
        else:
            window = next((s for s in reversed(t.steps) if s.role == "search"), None)
            finding = fixed_finding(
                t.name, window, report, complete=complete, stalled_at_s=t.stalled_at_s
            )
        findings.append(finding)
        knees[t.name] = finding.knee if finding.kind is FindingKind.KNEE else None
        if t.ramped:
            checks.extend(slos_at_step(t, knees[t.name]))
        checks.append(
            SloCheck(
                f"{t.name} {finding.kind.value}",
                threshold=1.0,
                observed=1.0 if finding.passed else 0.0,
                passed=finding.passed,
            )
        )
    if not complete:
        checks.append(SloCheck("run completed", threshold=1.0, observed=0.0, passed=False))
    return RunVerdict(SloReport(tuple(checks)), knees, tuple(findings), complete)


def fixed_slos(target: TargetOutcome) -> SloReport:
    """A fixed-rate or closed-loop target's SLOs: over the whole run, or, for a run longer than
    the SLO window, on each window, each check kept at its worst window (sig-scalability judges
    p99 over 5-minute windows: a bad five minutes in an hour is a missed SLO)."""
    windows = target.windows or (target.whole_run,)
    p99 = {
        f"{target.name}/{op}": bound
        for op, bound in target.slo_p99_ms.items()
        if op in target.whole_run.latency_by_op
    }
    p50 = {target.name: target.slo_p50_ms} if target.slo_p50_ms is not None else {}
    return worst_of(
        evaluate_slos(
            [window],
            max_error_rate={target.name: target.max_error_rate},
            p99_ms={k: v for k, v in p99.items() if k.partition("/")[2] in window.latency_by_op},
            p50_ms=p50,
        )
        for window in windows
    )


def slos_at_step(target: TargetOutcome, knee: Knee | None) -> list[SloCheck]:
    """A ramp's SLOs as measured at its answer: the knee's step, else the last step that passed
    (held up to the maximum), else the first step (it failed at the lowest load). Operations that
    did not complete in that step are not listed (too rare to have a p99 there)."""
    search = [s for s in target.steps if s.role == "search"]
    step = None
    if knee is not None:
        step = next((s for s in search if s.offered == knee.offered and s.passed), None)
    if step is None:
        step = next((s for s in reversed(search) if s.passed), search[0] if search else None)
    if step is None:
        return []
    where = f" at {step.offered:,.0f}/s"
    checks = [
        SloCheck(
            f"{target.name} error_rate{where}",
            target.max_error_rate,
            step.error_rate,
            step.error_rate <= target.max_error_rate,
        )
    ]
    for op, bound in target.slo_p99_ms.items():
        observed = step.op_p99_ms.get(op)
        if observed is not None:
            name = f"{target.name}/{op} p99_ms{where}"
            checks.append(SloCheck(name, bound, observed, observed <= bound))
    if target.slo_p50_ms is not None:
        name = f"{target.name} p50_ms{where}"
        checks.append(
            SloCheck(name, target.slo_p50_ms, step.p50_ms, step.p50_ms <= target.slo_p50_ms)
        )
    return checks


def build_summary(
    *,
    run_id: str,
    profile: str,
    targets: Sequence[TargetOutcome],
    verdict: RunVerdict,
    generator: GeneratorSummary,
    lag_p50_ms: float,
    lag_p99_ms: float,
    started_at: str,
    duration_s: float,
    exit_code: int,
    stopped_by: str | None = None,
) -> dict[str, Any]:
    """``exit_code`` is the one the process exits with; ``stopped_by`` says what ended a run
    early (``SIGINT``, ``SIGTERM``, ``write error: ...``), None for a run that ran its course."""
    by_name = {t.name: t for t in targets}
    api, dns = by_name.get("api"), by_name.get("dns")
    totals = {
        "requests": api.whole_run.completed if api else 0,
        "errors": api.whole_run.errors if api else 0,
        "achieved_rps": api.whole_run.achieved_per_s if api else 0.0,
        "dns_queries": dns.whole_run.completed if dns else 0,
        "dns_failures": dns.whole_run.errors if dns else 0,
        "achieved_qps": dns.whole_run.achieved_per_s if dns else 0.0,
    }
    summary = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run_id,
        "profile": profile,
        "complete": verdict.complete,
        "stopped_by": stopped_by,
        "exit_code": exit_code,
        "started_at": started_at,
        "duration_s": duration_s,
        "targets": {"api": api.address if api else None, "dns": dns.address if dns else None},
        "generator": {
            "cpu_percent": generator.cpu_percent_mean,
            "cpu_percent_max": generator.cpu_percent_max,
            "rss_mb": generator.rss_mb_max,
            "schedule_lag_ms": {"p50": lag_p50_ms, "p99": lag_p99_ms},
            "limited": verdict.generator_limited,
        },
        "totals": totals,
        "errors_by_outcome": {t.name: dict(t.whole_run.errors_by_outcome) for t in targets},
        "stray_answers": {t.name: t.stray_answers for t in targets},
        "latency_ms": latency_block([t.whole_run for t in targets]),
        "steps": [v.as_dict() for t in targets for v in t.steps],
        "knee": {
            name: knee.as_dict() if (knee := verdict.knees.get(name)) else None
            for name in ("api", "dns")
        },
        "slo": verdict.slo.as_dict(),
        "verdict": {
            "passed": verdict.passed and exit_code == 0,
            "exit_code": exit_code,
            "findings": {f.target: f.as_dict() for f in verdict.findings},
        },
    }
    return dict(rounded(summary))
