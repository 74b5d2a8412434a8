"""The report's tables and sentences, as text cells: one source for report.html, summary.md and
perfdash.json, so the three never disagree about a number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from loadlab.errors import EXIT_OK, EXIT_SLO_FAILED
from loadlab.metrics.stats import LatencySummary
from loadlab.report.read import RunFolder, size_entry, sizes

DASH = "—"
SIZE_HEADER = (
    "size (nodes)",
    "knee",
    "p99 at the knee",
    "API saturated at",
    "DNS failed at",
    "DNS onset",
    "verdict",
)
LATENCY_HEADER = ("size", "target", "operation", "count", "p50", "p90", "p99", "p99.9", "max")
MACHINE_KEYS = ("hostname", "os", "kernel", "python", "loadlab", "cpu_model", "cpus", "memory_gib")
INCOMPLETE_LINE = "incomplete run: nothing is claimed"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_COLOUR: dict[str, bool] = {"passed": True, "failed": False}
"""Verdict words shown green or red; inconclusive and incomplete are grey."""


@dataclass(frozen=True)
class SizeRow:
    """One row of the per-size table, every cell already text."""

    size: str
    knee: str
    p99_at_knee: str
    api_saturation: str
    dns_failure: str
    dns_onset: str
    """How long the DNS caches hid the API's saturation (DNS failure minus API saturation)."""
    verdict: str
    """``passed``, ``failed``, ``inconclusive`` or ``incomplete``."""

    def cells(self) -> tuple[str, ...]:
        return (
            self.size,
            self.knee,
            self.p99_at_knee,
            self.api_saturation,
            self.dns_failure,
            self.dns_onset,
            self.verdict,
        )


@dataclass(frozen=True)
class LatencyRow:
    """One operation's latency over a run (or a size)."""

    size: int | None
    group: str
    """The target (``api``, ``dns``) or the agent kind (``kubelet``, ``pod-dns``)."""
    op: str
    latency: LatencySummary
    """As summary.json records it (``LatencySummary.as_dict`` read back)."""

    def cells(self) -> tuple[str, ...]:
        size = f"{self.size:,}" if self.size is not None else DASH
        lat = self.latency
        numbers = (lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.p999_ms, lat.max_ms)
        return (size, self.group, self.op, f"{lat.count:,}", *(f"{v:,.1f}" for v in numbers))


def seconds(value: object) -> str:
    return f"{value:,.0f} s" if isinstance(value, int | float) else DASH


def run_verdict(summary: Mapping[str, Any] | None) -> str:
    """A whole run's word: what its exit code says, or ``incomplete`` when it did not finish."""
    if summary is None or not summary.get("complete"):
        return "incomplete"
    code = summary.get("exit_code")
    if code == EXIT_OK:
        return "passed"
    return "failed" if code == EXIT_SLO_FAILED else "inconclusive"


def size_verdict(entry: Mapping[str, Any] | None) -> str:
    """One size's word. Failed needs a breach the size can claim (the generator kept up, or the
    breach is about the server's answers) or a missed SLO; anything else unpassed is
    inconclusive."""
    if entry is None or not entry.get("complete"):
        return "incomplete"
    if entry.get("passed"):
        return "passed"
    limited = bool(entry.get("generator_limited"))
    claimed = [
        entry.get(f"{what}_claimed", entry.get(f"{what}_at_s") is not None and not limited)
        for what in ("api_saturation", "dns_failure")
    ]
    slo = entry.get("slo") or {}
    slo_missed = slo.get("passed") is False and entry.get("judged", True) and not limited
    return "failed" if any(claimed) or slo_missed else "inconclusive"


def embedded_nodes(run: RunFolder) -> int | None:
    """The size of the embedded simulated cluster a ramp or fixed run measured; None when it
    measured a server of its own (an address that is not loopback: its size is unknown)."""
    sim = run.profile.get("sim")
    api = run.profile.get("api") or {}
    host = urlsplit(str(api.get("url") or "")).hostname if api.get("url") else None
    if not isinstance(sim, dict) or host not in _LOOPBACK:
        return None
    nodes = sim.get("nodes")
    return nodes if isinstance(nodes, int) else None


def _per_target(knees: Mapping[str, Any], key: str, fmt: str) -> str:
    parts = [
        f"{target} {fmt.format(knee[key])}"
        for target, knee in knees.items()
        if isinstance(knee, dict) and isinstance(knee.get(key), int | float)
    ]
    return "; ".join(parts) or DASH


def size_rows(run: RunFolder) -> list[SizeRow]:
    """The per-size table: a sweep's sizes, or the single row of a ramp or fixed run."""
    if run.kind != "sweep":
        knees = (run.summary or {}).get("knee") or {}
        nodes = embedded_nodes(run)
        return [
            SizeRow(
                size=f"{nodes:,}" if nodes is not None else DASH,
                knee=_per_target(knees, "offered", "{:,.0f}/s"),
                p99_at_knee=_per_target(knees, "p99_ms", "{:,.1f} ms"),
                api_saturation=DASH,
                dns_failure=DASH,
                dns_onset=DASH,
                verdict=run_verdict(run.summary),
            )
        ]
    rows = []
    for n in sizes(run):
        entry = size_entry(run, n) or {}
        rows.append(
            SizeRow(
                size=f"{n:,}",
                knee=DASH,
                p99_at_knee=DASH,
                api_saturation=seconds(entry.get("api_saturation_at_s")),
                dns_failure=seconds(entry.get("dns_failure_at_s")),
                dns_onset=seconds(entry.get("dns_failure_onset_s")),
                verdict=size_verdict(entry or None),
            )
        )
    return rows


def _latency_row(size: int | None, group: str, op: str, v: Mapping[str, Any]) -> LatencyRow:
    latency = LatencySummary(
        count=int(v.get("count") or 0),
        p50_ms=float(v.get("p50") or 0.0),
        p90_ms=float(v.get("p90") or 0.0),
        p99_ms=float(v.get("p99") or 0.0),
        p999_ms=float(v.get("p999") or 0.0),
        max_ms=float(v.get("max") or 0.0),
    )
    return LatencyRow(size=size, group=group, op=op, latency=latency)


def latency_rows(run: RunFolder) -> list[LatencyRow]:
    """Per operation, as summary.json records it (``[]`` for a killed run: it has no summary)."""
    summary = run.summary or {}
    if run.kind != "sweep":
        nodes = embedded_nodes(run)
        rows = []
        for key, values in (summary.get("latency_ms") or {}).items():
            group, _, op = str(key).partition("/")
            if isinstance(values, dict):
                rows.append(_latency_row(nodes, group, op, values))
        return rows
    rows = []
    for entry in summary.get("sizes") or []:
        for kind, agent in (entry.get("agents") or {}).items():
            for op, values in ((agent or {}).get("ops") or {}).items():
                if isinstance(values, dict):
                    rows.append(_latency_row(entry.get("nodes"), kind, op, values))
    return rows


def verdict_lines(run: RunFolder) -> list[tuple[str, bool | None]]:
    """The report's answer, line by line (a finding each), with its colour: green (True), red
    (False) or grey (None: nothing is claimed, or the result is inconclusive)."""
    if run.summary is None:
        return [(INCOMPLETE_LINE, None)]
    word = run_verdict(run.summary)
    findings = (run.summary.get("verdict") or {}).get("findings") or {}
    lines: list[tuple[str, bool | None]] = []
    for key, finding in findings.items():
        if not isinstance(finding, dict) or not finding.get("line"):
            continue
        if run.kind == "sweep":
            nodes = str(key).removeprefix("size-")
            entry = size_entry(run, int(nodes)) if nodes.isdigit() else None
            size_word = size_verdict(entry)
        else:
            size_word = (
                word if word != "passed" else ("passed" if finding.get("passed") else "failed")
            )
        lines.append((str(finding["line"]), _COLOUR.get(size_word)))
    abort = run.summary.get("abort")
    if isinstance(abort, dict) and abort.get("why"):  # a safety rail stopped the load
        at = f" at {float(abort['at_s']):,.0f} s" if abort.get("at_s") is not None else ""
        lines.insert(0, (f"aborted by a safety rail{at}: {abort['why']}", False))
    gate = run.summary.get("gate")
    if isinstance(gate, dict) and gate.get("line"):  # ``--gate``: its line decides the exit code
        lines.append((str(gate["line"]), _COLOUR.get(word)))
    if word == "incomplete":
        return [*lines, (INCOMPLETE_LINE, None)]
    return lines or [(f"verdict: {word} (exit {run.summary.get('exit_code')})", _COLOUR.get(word))]


def generator_line(run: RunFolder, max_lag_ms: float | None) -> str:
    """One sentence on the generator's own health: was the knee the server's?"""
    limit = f" (limit {max_lag_ms:,.0f} ms)" if max_lag_ms is not None else ""
    summary = run.summary
    if summary is None:
        return "generator: no summary (the run was killed); see its health per second below"
    if run.kind == "sweep":
        entries = [e for e in summary.get("sizes") or [] if isinstance(e, dict)]
        if not entries:
            return "generator: no size finished"
        lag = max(
            float((e.get("generator") or {}).get("schedule_lag_p99_ms") or 0) for e in entries
        )
        cpu = max(float((e.get("generator") or {}).get("cpu_percent_max") or 0) for e in entries)
        behind = [f"{e.get('nodes'):,}" for e in entries if e.get("generator_limited")]
        kept = (
            f"it fell behind at {', '.join(behind)} nodes (those sizes are not the server's)"
            if behind
            else "it kept up at every size"
        )
        return (
            f"generator: schedule lag p99 at most {lag:,.1f} ms{limit}, "
            f"CPU at most {cpu:,.0f}%; {kept}"
        )
    g = summary.get("generator") or {}
    lag_p99 = float((g.get("schedule_lag_ms") or {}).get("p99") or 0.0)
    kept = (
        "it was the limit: the results are not the server's"
        if g.get("limited")
        else "it kept up, so the knee is the server's"
    )
    cpu_mean, cpu_max = float(g.get("cpu_percent") or 0), float(g.get("cpu_percent_max") or 0)
    return (
        f"generator: CPU {cpu_mean:,.0f}% mean, {cpu_max:,.0f}% max; "
        f"RSS {float(g.get('rss_mb') or 0):,.0f} MB; schedule lag p99 {lag_p99:,.1f} ms{limit}; "
        f"{kept}"
    )


def machine_rows(run: RunFolder) -> list[tuple[str, str]]:
    """``machine.json`` as (key, value) rows, known keys first; ``[]`` when not recorded."""
    if run.machine is None:
        return []
    keys = [k for k in MACHINE_KEYS if k in run.machine]
    keys += [k for k in run.machine if k not in MACHINE_KEYS]
    return [(k, str(run.machine[k])) for k in keys]
