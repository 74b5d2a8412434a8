"""Judging one step of a stepped ramp (docs/knee-method.md, "The method" 3).

A step passes when, checked in this order:
1. the generator sent >= 99% of the planned requests and kept its schedule (lag p99 bounded);
   otherwise the step is GENERATOR-LIMITED: neither a pass nor a fail for the server;
2. the error rate is within its limit;
3. the p99 of each operation with an SLO is within it;
4. achieved / offered >= 0.95.
The first failing check names the verdict (``why``), so a knee can say why it is the knee.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loadlab.metrics.stats import WindowStats

CHECK_SENT = "generator_sent"
CHECK_LAG = "generator_lag"
CHECK_ERRORS = "error_rate"
CHECK_P99 = "p99"  # the check code is "p99:<op>"
CHECK_P50 = "p50"
CHECK_ACHIEVED = "achieved_ratio"
NO_ANSWER = "no_answer"
"""How a step's requests left unanswered past their SLO are named in a verdict."""


@dataclass(frozen=True)
class StepCriteria:
    """Pass/fail thresholds of one step."""

    min_sent_ratio: float = 0.99
    """docs/knee-method.md: the generator must send >= 99% of the planned requests."""
    max_lag_p99_ms: float = 100.0
    """Generator schedule lag bound. Our choice: a tenth of a 1 s interval."""
    max_error_rate: float = 0.01
    """Errors (non-OK incl. 429, timeouts, resets) / completions. Our default: 1%, the usual
    k6 ``http_req_failed`` threshold ``rate<0.01``."""
    slo_p99_ms: Mapping[str, float] = field(default_factory=dict)
    """p99 bound per operation name; operations absent here have no latency check."""
    slo_p50_ms: float | None = None
    """A bound on the median over all operations (DNS: clusterloader2's p50 <= 20 ms)."""
    min_achieved_ratio: float = 0.95
    """docs/knee-method.md: achieved / offered >= 0.95."""


@dataclass(frozen=True)
class StepVerdict:
    """The outcome of one step. Rates are per second."""

    target: str
    offered: float
    """Offered (planned) rate, per second."""
    sent: float
    """Dispatched rate, per second."""
    achieved: float
    """OK completions per second."""
    error_rate: float
    p50_ms: float
    """Corrected p50 over all operations."""
    p99_ms: float
    """Corrected p99 over all operations."""
    passed: bool
    generator_limited: bool
    """The generator, not the server, fell short: this step says nothing about the server."""
    why: str
    """The first failing check, explained, or ``"ok"``."""
    check: str | None = None
    """Code of the first failing check (``generator_sent``, ``generator_lag``, ``error_rate``,
    ``p99:<op>``, ``achieved_ratio``), or None when the step passed."""
    sent_count: int = 0
    """Requests dispatched in the window."""
    ok_count: int = 0
    """Successful completions in the window."""
    errors_by_outcome: Mapping[str, int] = field(default_factory=dict)
    """Error completions per outcome label."""
    unanswered_count: int = 0
    """Requests sent in the window still unanswered, past their SLO, when it was judged."""
    role: str = "search"
    """``search`` (a step of the ramp search, or a fixed run's window) or ``confirm`` (the knee
    re-run at the end, to tell a server that degrades over time from one that saturates)."""
    op_p99_ms: Mapping[str, float] = field(default_factory=dict)
    """Corrected p99 per operation that completed in the window (what the SLOs are held to)."""

    @property
    def answered_count(self) -> int:
        """Completions in the window, successes and errors."""
        return self.ok_count + sum(self.errors_by_outcome.values())

    @property
    def failed(self) -> bool:
        """A failure of the server (a generator-limited step is not one)."""
        return not self.passed and not self.generator_limited

    @property
    def served_nothing(self) -> bool:
        """A failed step in which requests went out and not one succeeded: the server is down,
        or answers only errors. It says nothing about capacity, so the search stops there."""
        return self.failed and self.sent_count > 0 and self.ok_count == 0

    @property
    def dominant_outcome(self) -> str | None:
        """The most frequent error outcome of the step; ``no_answer`` when its only trouble was
        requests left unanswered past their SLO; None when it had neither."""
        worst = max(self.errors_by_outcome.items(), key=lambda kv: kv[1], default=None)
        if worst is not None and worst[1] > 0:
            return worst[0]
        return NO_ANSWER if self.unanswered_count else None

    def as_dict(self) -> dict[str, object]:
        """The entry of summary.json's ``steps`` list."""
        return {
            "target": self.target,
            "offered": self.offered,
            "sent": self.sent,
            "achieved": self.achieved,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "passed": self.passed,
            "generator_limited": self.generator_limited,
            "why": self.why,
            "check": self.check,
            "sent_count": self.sent_count,
            "ok_count": self.ok_count,
            "errors_by_outcome": dict(self.errors_by_outcome),
            "unanswered_count": self.unanswered_count,
            "role": self.role,
            "op_p99_ms": dict(self.op_p99_ms),
        }


def judge_step(stats: WindowStats, offered_per_s: float, criteria: StepCriteria) -> StepVerdict:
    """Check a step's measuring window against ``criteria``, in the method's order."""
    check, why = _first_failure(stats, offered_per_s, criteria)
    generator_limited = check in (CHECK_SENT, CHECK_LAG)
    return StepVerdict(
        target=stats.target,
        offered=offered_per_s,
        sent=stats.sent_per_s,
        achieved=stats.achieved_per_s,
        error_rate=stats.error_rate,
        p50_ms=stats.latency.p50_ms,
        p99_ms=stats.latency.p99_ms,
        passed=check is None,
        generator_limited=generator_limited,
        why=why,
        check=check,
        sent_count=stats.sent,
        ok_count=stats.ok,
        errors_by_outcome=dict(stats.errors_by_outcome),
        unanswered_count=stats.unanswered,
        op_p99_ms={op: lat.p99_ms for op, lat in stats.latency_by_op.items() if lat.count},
    )


def describe_errors(errors_by_outcome: Mapping[str, int]) -> str:
    """``", all 500"`` or ``", mostly 429 (87%)"``: the dominant error outcome, for a verdict."""
    total = sum(errors_by_outcome.values())
    worst = max(errors_by_outcome.items(), key=lambda kv: kv[1], default=None)
    if worst is None or total == 0:
        return ""
    label, n = worst
    if n == total:
        return f", all {label}"
    return f", mostly {label} ({n / total:.0%})"


def _first_failure(
    stats: WindowStats, offered_per_s: float, criteria: StepCriteria
) -> tuple[str | None, str]:
    sent_ratio = stats.sent_ratio
    if stats.planned == 0 and offered_per_s > 0:
        sent_ratio = 0.0  # a rate was asked for and nothing was planned: the generator stalled
    if sent_ratio < criteria.min_sent_ratio:
        return CHECK_SENT, (
            f"generator-limited: sent {sent_ratio:.1%} of planned (< {criteria.min_sent_ratio:.0%})"
        )
    if stats.lag_p99_ms > criteria.max_lag_p99_ms:
        return CHECK_LAG, (
            f"generator-limited: schedule lag p99 {stats.lag_p99_ms:.1f} ms "
            f"> {criteria.max_lag_p99_ms:g} ms"
        )
    if stats.error_rate > criteria.max_error_rate:
        return CHECK_ERRORS, (
            f"error rate {stats.error_rate:.2%} > {criteria.max_error_rate:.2%}"
            f"{describe_errors(stats.errors_by_outcome)}"
        )
    for op, slo_ms in criteria.slo_p99_ms.items():
        latency = stats.latency_by_op.get(op)
        if latency is not None and latency.p99_ms > slo_ms:
            waiting = f" ({stats.unanswered:,} still unanswered)" if stats.unanswered else ""
            return f"{CHECK_P99}:{op}", (
                f"p99 of {op} {latency.p99_ms:.1f} ms > SLO {slo_ms:g} ms{waiting}"
            )
    if criteria.slo_p50_ms is not None and stats.latency.p50_ms > criteria.slo_p50_ms:
        return CHECK_P50, f"p50 {stats.latency.p50_ms:.1f} ms > SLO {criteria.slo_p50_ms:g} ms"
    # Compare with what the schedule really planned in this window, not the nominal rate:
    # Poisson arrivals at 250/s over 3 s vary by ~4%, which alone would fail a 95% check.
    basis_per_s = stats.planned_per_s if stats.planned_per_s > 0 else offered_per_s
    achieved_ratio = stats.achieved_per_s / basis_per_s if basis_per_s > 0 else 1.0
    if achieved_ratio < criteria.min_achieved_ratio:
        return CHECK_ACHIEVED, (
            f"achieved {stats.achieved_per_s:.1f}/s is {achieved_ratio:.1%} of offered "
            f"{basis_per_s:.1f}/s (< {criteria.min_achieved_ratio:.0%})"
        )
    return None, "ok"
