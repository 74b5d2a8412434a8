"""``loadlab run --gate``: the pre-rollout answer as one line and an exit code a pipeline acts on.

An agent scenario fits when the cluster held, SLOs met, at a size at least the required one
(``require.min_nodes``; without it, the largest size run), and no size up to it failed. Larger
sizes are headroom: reported, not gating. The gate never passes on missing evidence: a required
size above every size that held is not "fits", it is inconclusive (exit 4) with what to run.
Pure: it reads the verdicts the sweep already made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED
from loadlab.sweep_verdict import SizeVerdict


@dataclass(frozen=True)
class Gate:
    exit_code: int
    line: str
    min_nodes: int | None

    def as_dict(self) -> dict[str, object]:
        return {"exit_code": self.exit_code, "line": self.line, "min_nodes": self.min_nodes}


def sweep_gate(verdicts: Sequence[SizeVerdict], min_nodes: int | None) -> Gate:
    """The gate over a finished sweep's sizes (any order)."""
    sizes = sorted(verdicts, key=lambda v: v.nodes)
    if not sizes:
        return Gate(EXIT_INCONCLUSIVE, "gate: inconclusive - no size was run", min_nodes)
    required = min_nodes if min_nodes is not None else sizes[-1].nodes
    failed = [v for v in sizes if v.server_failed]
    failed_within = [v for v in failed if v.nodes <= required]
    if failed_within:
        first = failed_within[0]
        need = f" (required {min_nodes:,})" if min_nodes is not None else ""
        return Gate(
            EXIT_SLO_FAILED,
            f"gate: FAILED - {first.nodes:,} nodes{need}: {failure_reason(first)}",
            min_nodes,
        )
    held = [v for v in sizes if v.passed and v.nodes >= required]
    if not held:
        return Gate(EXIT_INCONCLUSIVE, _no_evidence(sizes, required), min_nodes)
    at = held[0]
    headroom = ""
    if failed:
        headroom = f"; saturates at {failed[0].nodes:,} nodes"
    elif at.nodes < sizes[-1].nodes or min_nodes is None:
        headroom = f"; held up to {max(v.nodes for v in sizes if v.passed):,} nodes"
    checks = len(at.slo.checks)
    need = f" (required {min_nodes:,})" if min_nodes is not None else ""
    return Gate(
        EXIT_OK,
        f"gate: passed - fits {required:,} nodes{need}: held at {at.nodes:,} nodes with "
        f"{checks} SLO{'' if checks == 1 else 's'} met{headroom}",
        min_nodes,
    )


def failure_reason(v: SizeVerdict) -> str:
    """What made a size fail, claimed breaches first: the API, then DNS, then the SLOs."""
    if v.claimed(v.api) and v.api is not None:
        return f"API saturated at {v.api.at_s:,.0f} s ({v.api.why})"
    if v.claimed(v.dns) and v.dns is not None:
        return f"DNS failed at {v.dns.at_s:,.0f} s ({v.dns.why})"
    return "SLO missed: " + ", ".join(v.slo_missed)


def _no_evidence(sizes: Sequence[SizeVerdict], required: int) -> str:
    """Why no size shows the required one fits: what ran, what it came to, what to run."""
    largest = sizes[-1]
    if largest.nodes < required:
        return (
            f"gate: inconclusive - the required {required:,} nodes is above every size run "
            f"(largest {largest.nodes:,}): add it with --sizes"
        )
    unsure = [v for v in sizes if v.nodes >= required and not v.passed]
    shown = ", ".join(f"{v.nodes:,} nodes {_why_unsure(v)}" for v in unsure[:3])
    return f"gate: inconclusive - no size of {required:,} nodes or more was measured: {shown}"


def _why_unsure(v: SizeVerdict) -> str:
    if not v.complete:
        return "was interrupted"
    if v.generator_limited:
        return "was limited by the generator"
    if not v.judged:
        return "ran too short to judge"
    if v.server_failed:
        return f"failed ({failure_reason(v)})"
    if v.slo_unmeasured:
        return "measured nothing after its warm-up for " + ", ".join(v.slo_unmeasured)
    return "did not pass"
