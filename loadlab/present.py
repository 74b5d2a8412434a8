"""Presenting a run: the few lines a person reads first. Reads the summary, decides nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from loadlab.errors import (
    EXIT_ABORTED,
    EXIT_CODES,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_SLO_FAILED,
    EXIT_TERMINATED,
)


def print_result(summary: dict[str, Any], out_dir: Path, *, report: Path | None = None) -> None:
    """A few lines a human reads first; the full answer is in summary.json. Every line comes
    from the summary's verdict, so what is printed and what is written cannot disagree."""
    lines = [f"results: {out_dir}"]
    if report is not None:
        lines.append(f"report: {report}")
    verdict = summary["verdict"]
    for finding in verdict["findings"].values():
        lines.append(str(finding["line"]))
    totals = summary["totals"]
    if totals["requests"]:
        lines.append(
            f"api: {totals['requests']:,} requests, {totals['achieved_rps']:,.0f}/s achieved, "
            f"{totals['errors']:,} errors" + _stray(summary, "api")
        )
    if totals["dns_queries"]:
        lines.append(
            f"dns: {totals['dns_queries']:,} queries, {totals['achieved_qps']:,.0f}/s answered, "
            f"{totals['dns_failures']:,} failures" + _stray(summary, "dns")
        )
    lines.append(verdict_line(int(verdict["exit_code"]), passed=bool(verdict["passed"])))
    print("\n".join(lines), file=sys.stdout)


def gate_line(summary: dict[str, Any]) -> str:
    """``--gate`` on a request mix: the run's verdict as the gate's one line (an agent
    scenario's gate is ``loadlab.gate``)."""
    verdict = summary["verdict"]
    lines = [str(f["line"]) for f in verdict["findings"].values()]
    failing = [str(f["line"]) for f in verdict["findings"].values() if not f.get("passed")]
    if verdict["passed"]:
        return "gate: passed - " + "; ".join(lines)
    label = "FAILED" if int(verdict["exit_code"]) == EXIT_SLO_FAILED else "inconclusive"
    return f"gate: {label} - " + "; ".join(failing or lines)


def verdict_line(code: int, *, passed: bool) -> str:
    """The last line of every run: ``verdict: passed (exit 0: ...)``, the code's meaning with it."""
    label = "passed" if passed else _VERDICT_LABELS.get(code, "FAILED")
    return f"verdict: {label} (exit {code}: {EXIT_CODES.get(code, '')})"


_VERDICT_LABELS = {
    EXIT_SLO_FAILED: "FAILED",
    EXIT_INCONCLUSIVE: "INCONCLUSIVE",
    EXIT_INTERRUPTED: "INTERRUPTED, nothing claimed",
    EXIT_TERMINATED: "TERMINATED, nothing claimed",
    EXIT_ABORTED: "ABORTED by a safety rail",
}


_STRAY_WHY = {"api": "answers to no request", "dns": "wrong ID or question"}


def _stray(summary: dict[str, Any], target: str) -> str:
    n = int(summary.get("stray_answers", {}).get(target) or 0)
    return f", {n:,} stray answers ({_STRAY_WHY[target]})" if n else ""
