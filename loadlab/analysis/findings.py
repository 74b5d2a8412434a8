"""What a run found, per target, in one sentence, and the exit code that goes with it. Pure.

A verdict is only as good as the worst server it was tried on, so the rules are written from the
broken servers up:

- A step in which not one request succeeded is not a capacity measurement. If it comes first,
  the server **failed at the lowest offered load**; after passing steps, it **stopped serving**
  (it died, or turned to errors, mid-run). Neither is "no knee found".
- The knee (``find_knee``) is re-run once at the end of the search. A server that saturates serves
  its knee again; one that degrades with time (a leak, a crash loop) does not, and a knee that
  does not hold is reported as the server degrading, never as its capacity.
- "Held" (no knee within the ramp) is said only when every step of the search passed up to the
  plan's maximum.
- A generator-limited end says nothing of the server: inconclusive, never a pass.
- An interrupted run claims nothing.

Every line names the dominant outcome of the step it rests on ("all 500", "mostly 429 (87%)").
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from loadlab.analysis.knee import Knee, find_knee
from loadlab.analysis.ramp import StopReason
from loadlab.analysis.slo import SloReport
from loadlab.analysis.steps import StepVerdict, describe_errors
from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED

CONFIRM_MIN_ACHIEVED_RATIO = 0.5
"""The knee's re-run must serve at least half of what the knee step served. Not from a reference:
a saturating server re-serves its knee within noise (a few %), a failing or leaking one falls far
below it; a narrow re-run failure (p99 just over the SLO) is noise at the method's own 5%
resolution and keeps the knee."""


class FindingKind(enum.Enum):
    HELD = "held"
    """Every step passed up to the plan's maximum (ramp), or the SLOs were met (fixed run)."""
    KNEE = "knee"
    """The server served every step below its knee; above it, it saturated."""
    FAILED_AT_LOWEST_LOAD = "failed_at_lowest_load"
    """No step passed, down to the lowest load offered."""
    STOPPED_SERVING = "stopped_serving"
    """After serving, the server stopped (down, only errors, or its knee did not hold)."""
    SLO_FAILED = "slo_failed"
    """A fixed-rate or closed-loop run missed an SLO."""
    GENERATOR_LIMITED = "generator_limited"
    """The generator could not offer the load: nothing is known of the server past that point."""
    INCONCLUSIVE = "inconclusive"
    """The search ran out of steps before bracketing a knee."""
    INTERRUPTED = "interrupted"
    """The run was stopped before it could judge this target."""

    @property
    def passed(self) -> bool:
        """The server did what the run asked of it."""
        return self in (FindingKind.HELD, FindingKind.KNEE)


@dataclass(frozen=True)
class Finding:
    """What one target's part of the run came to."""

    target: str
    kind: FindingKind
    line: str
    """One sentence for the terminal, naming the load and the dominant outcome."""
    offered: float | None = None
    """The offered rate the finding is about (the knee, the failing step), per second."""
    dominant_outcome: str | None = None
    """The most frequent error outcome of the step it rests on (``500``, ``conn_error``)."""
    knee: Knee | None = None

    @property
    def passed(self) -> bool:
        return self.kind.passed

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "passed": self.passed,
            "line": self.line,
            "offered": self.offered,
            "dominant_outcome": self.dominant_outcome,
        }


def ramp_finding(
    target: str,
    steps: Sequence[StepVerdict],
    *,
    stop_reason: StopReason | None,
    complete: bool,
) -> Finding:
    """Judge one target's ramp from its steps (in run order) and why its search stopped."""
    search = [s for s in steps if s.role != "confirm"]
    confirm = next((s for s in steps if s.role == "confirm"), None)
    judged = [s for s in search if not s.generator_limited]
    if stop_reason is StopReason.SERVED_NOTHING and search:
        return _served_nothing(target, search[-1], [s for s in search[:-1] if s.passed])
    if stop_reason is StopReason.NO_PASSING_STEP:
        lowest = min(judged, key=lambda s: s.offered)
        return _failed_at_lowest(target, lowest)
    knee = find_knee(search)
    if knee is not None:
        knee_step = max((s for s in judged if s.passed and s.offered == knee.offered), key=_ok)
        if confirm is not None and _collapsed(confirm, knee_step):
            return Finding(
                target,
                FindingKind.STOPPED_SERVING,
                f"{target}: the knee at {knee.offered:,.0f}/s did not hold when re-run "
                f"({confirm.achieved:,.0f}/s served, {_ok_share(confirm)}): the server degrades "
                f"with time, not with load{describe_errors(confirm.errors_by_outcome)}",
                offered=knee.offered,
                dominant_outcome=confirm.dominant_outcome,
                knee=knee,
            )
        if complete:
            return _knee(target, knee)
    if not complete:
        return _interrupted(target, search, knee)
    if stop_reason is StopReason.GENERATOR_LIMITED or (search and search[-1].generator_limited):
        limited = next(s for s in reversed(search) if s.generator_limited)
        return Finding(
            target,
            FindingKind.GENERATOR_LIMITED,
            f"{target}: inconclusive - the generator fell behind at {limited.offered:,.0f}/s "
            f"({limited.why}); the server was not the limit up to there",
            offered=limited.offered,
        )
    if stop_reason is StopReason.MAX_RATE_PASSED and judged and all(s.passed for s in judged):
        top = max(s.offered for s in judged)
        return Finding(
            target,
            FindingKind.HELD,
            f"{target}: held at every step up to {top:,.0f}/s, the ramp's maximum: no knee below "
            "it (raise load.ramp.max_per_s to find one)",
            offered=top,
        )
    failed = [s for s in judged if s.failed]
    return Finding(
        target,
        FindingKind.INCONCLUSIVE,
        f"{target}: inconclusive - the search stopped ({_reason(stop_reason)}) before bracketing "
        f"a knee: {len(judged) - len(failed)} steps passed, {len(failed)} failed",
        offered=None,
        dominant_outcome=failed[-1].dominant_outcome if failed else None,
    )


def fixed_finding(
    target: str,
    window: StepVerdict | None,
    slo: SloReport,
    *,
    complete: bool,
    stalled_at_s: float | None = None,
) -> Finding:
    """Judge a fixed-rate or closed-loop run from its whole-run window and the SLO checks.

    ``stalled_at_s``: the run was ended at that time because this target had stopped serving.
    """
    if window is not None and stalled_at_s is not None:
        errors = _what_failed(window)
        if window.ok_count == 0:
            return Finding(
                target,
                FindingKind.FAILED_AT_LOWEST_LOAD,
                f"{target}: the server served nothing at {window.offered:,.0f}/s: not one of "
                f"{window.sent_count:,} requests succeeded ({errors}); the run was ended after "
                f"{stalled_at_s:,.0f} s",
                offered=window.offered,
                dominant_outcome=window.dominant_outcome,
            )
        return Finding(
            target,
            FindingKind.STOPPED_SERVING,
            f"{target}: the server stopped serving {stalled_at_s:,.0f} s into the run (no "
            f"success since: {errors}); the run was ended there",
            offered=window.offered,
            dominant_outcome=window.dominant_outcome,
        )
    if window is None or not complete:
        return _interrupted(target, [window] if window is not None else [], None)
    if window.generator_limited:
        return Finding(
            target,
            FindingKind.GENERATOR_LIMITED,
            f"{target}: inconclusive - the generator could not offer {window.offered:,.0f}/s "
            f"({window.why})",
            offered=window.offered,
        )
    mine = [c for c in slo.checks if c.name.startswith((f"{target} ", f"{target}/"))]
    failed = [c.name for c in mine if not c.passed]
    if window.served_nothing:
        return Finding(
            target,
            FindingKind.SLO_FAILED,
            f"{target}: the server served nothing at {window.offered:,.0f}/s "
            f"({window.why}{_errors_suffix(window)})",
            offered=window.offered,
            dominant_outcome=window.dominant_outcome,
        )
    if failed or window.failed:
        what = "; ".join(failed) if failed else window.why
        return Finding(
            target,
            FindingKind.SLO_FAILED,
            f"{target}: SLO failed at {window.offered:,.0f}/s: {what} ({window.why}"
            f"{_errors_suffix(window)})",
            offered=window.offered,
            dominant_outcome=window.dominant_outcome,
        )
    return Finding(
        target,
        FindingKind.HELD,
        f"{target}: held {window.offered:,.0f}/s: {window.ok_count:,} of {window.sent_count:,} "
        f"requests succeeded{_in_flight_suffix(window)}, p99 {window.p99_ms:,.1f} ms, "
        f"error rate {window.error_rate:.2%}",
        offered=window.offered,
    )


def _in_flight_suffix(window: StepVerdict) -> str:
    """`` (64 still in flight at the window's end)`` when the window sent more than it saw
    answered, errors included: without it, "15,340 of 15,403 succeeded" with no error reads as
    63 requests lost."""
    pending = window.sent_count - window.answered_count
    return f" ({pending:,} still in flight at the window's end)" if pending > 0 else ""


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when every target passed; 1 when the server failed anywhere (a definite finding wins
    over an inconclusive one); else 4 (inconclusive). Interruptions are decided by the caller."""
    if any(f.kind in _SERVER_FAILED for f in findings):
        return EXIT_SLO_FAILED
    if all(f.passed for f in findings) and findings:
        return EXIT_OK
    return EXIT_INCONCLUSIVE


_SERVER_FAILED = frozenset(
    {FindingKind.FAILED_AT_LOWEST_LOAD, FindingKind.STOPPED_SERVING, FindingKind.SLO_FAILED}
)


def _ok(step: StepVerdict) -> float:
    return step.achieved


def _ok_share(step: StepVerdict) -> str:
    total = step.answered_count
    return f"{step.ok_count / total:.0%} ok" if total else "no answer at all"


def _collapsed(confirm: StepVerdict, knee_step: StepVerdict) -> bool:
    if confirm.generator_limited:
        return False  # says nothing of the server
    return confirm.served_nothing or (
        confirm.failed and confirm.achieved < CONFIRM_MIN_ACHIEVED_RATIO * knee_step.achieved
    )


def _errors_suffix(step: StepVerdict) -> str:
    if step.check == "error_rate":
        return ""  # the why already names them
    return describe_errors(step.errors_by_outcome)


def _what_failed(step: StepVerdict) -> str:
    errors = describe_errors(step.errors_by_outcome).removeprefix(", ")
    if step.unanswered_count:
        waiting = f"{step.unanswered_count:,} unanswered past their SLO"
        errors = f"{errors}; {waiting}" if errors else waiting
    return errors or "no answer"


def _served_nothing(target: str, step: StepVerdict, passed_before: list[StepVerdict]) -> Finding:
    errors = _what_failed(step)
    if not passed_before:
        return Finding(
            target,
            FindingKind.FAILED_AT_LOWEST_LOAD,
            f"{target}: the server failed at the lowest offered load, {step.offered:,.0f}/s: "
            f"not one of {step.sent_count:,} requests succeeded ({errors})",
            offered=step.offered,
            dominant_outcome=step.dominant_outcome,
        )
    best = max(passed_before, key=lambda s: s.offered)
    return Finding(
        target,
        FindingKind.STOPPED_SERVING,
        f"{target}: the server stopped serving at {step.offered:,.0f}/s after passing "
        f"{best.offered:,.0f}/s: not one of {step.sent_count:,} requests succeeded ({errors})",
        offered=step.offered,
        dominant_outcome=step.dominant_outcome,
    )


def _failed_at_lowest(target: str, step: StepVerdict) -> Finding:
    return Finding(
        target,
        FindingKind.FAILED_AT_LOWEST_LOAD,
        f"{target}: the server failed at the lowest offered load, {step.offered:,.0f}/s: "
        f"{step.why}{_errors_suffix(step)}",
        offered=step.offered,
        dominant_outcome=step.dominant_outcome,
    )


def _knee(target: str, knee: Knee) -> Finding:
    cross = f", Kneedle {knee.kneedle:,.0f}/s" if knee.kneedle is not None else ""
    flag = " (methods disagree > 15%)" if knee.flagged else ""
    return Finding(
        target,
        FindingKind.KNEE,
        f"{target} knee: {knee.offered:,.0f}/s offered, {knee.achieved:,.0f}/s achieved, "
        f"p99 {knee.p99_ms:,.1f} ms{cross}{flag}; above it: {knee.reason}",
        offered=knee.offered,
        knee=knee,
    )


def _interrupted(target: str, steps: Sequence[StepVerdict], knee: Knee | None) -> Finding:
    judged = [s for s in steps if not s.generator_limited]
    so_far = ""
    if knee is not None:
        so_far = f"; knee so far {knee.offered:,.0f}/s (not confirmed)"
    elif judged:
        passed = [s.offered for s in judged if s.passed]
        so_far = f"; best passing step so far {max(passed):,.0f}/s" if passed else ""
    return Finding(
        target,
        FindingKind.INTERRUPTED,
        f"{target}: interrupted after {len(steps)} judged step(s){so_far}: nothing is claimed",
        knee=knee,
    )


def _reason(stop_reason: StopReason | None) -> str:
    return stop_reason.value if stop_reason is not None else "not finished"
