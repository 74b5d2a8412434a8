"""summary.json (schema ``loadlab.summary/v1``): built from what a session measured. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadlab.analysis.knee import Knee, find_knee
from loadlab.analysis.slo import SloCheck, SloReport, evaluate_slos
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
    generator_limited: bool
    """The generator fell behind where it mattered (the search ended there, or the fixed run)."""


@dataclass(frozen=True)
class RunVerdict:
    slo: SloReport
    knees: Mapping[str, Knee | None]
    generator_limited: bool


def judge_run(targets: Sequence[TargetOutcome]) -> RunVerdict:
    """SLO checks and knees. A ramp is judged by its steps; a fixed run by its whole window."""
    knees: dict[str, Knee | None] = {}
    checks: list[SloCheck] = []
    generator_limited = False
    fixed = [t for t in targets if not t.ramped]
    if fixed:
        report = evaluate_slos(
            [t.whole_run for t in fixed],
            max_error_rate={t.name: t.max_error_rate for t in fixed},
            p99_ms={
                f"{t.name}/{op}": bound
                for t in fixed
                for op, bound in t.slo_p99_ms.items()
                if op in t.whole_run.latency_by_op
            },
        )
        checks.extend(report.checks)
    for t in targets:
        limited = t.generator_limited
        generator_limited = generator_limited or limited
        knees[t.name] = find_knee(t.steps) if t.ramped else None
        checks.append(
            SloCheck(
                f"{t.name} generator kept its schedule",
                threshold=1.0,
                observed=0.0 if limited else 1.0,
                passed=not limited,
            )
        )
    return RunVerdict(SloReport(tuple(checks)), knees, generator_limited)


def build_summary(
    *,
    run_id: str,
    profile: str,
    targets: Sequence[TargetOutcome],
    verdict: RunVerdict,
    generator: GeneratorSummary,
    lag_p50_ms: float,
    lag_p99_ms: float,
    complete: bool,
    started_at: str,
    duration_s: float,
) -> dict[str, Any]:
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
        "complete": complete,
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
        "latency_ms": latency_block([t.whole_run for t in targets]),
        "steps": [v.as_dict() for t in targets for v in t.steps],
        "knee": {
            name: knee.as_dict() if (knee := verdict.knees.get(name)) else None
            for name in ("api", "dns")
        },
        "slo": verdict.slo.as_dict(),
    }
    return dict(rounded(summary))
