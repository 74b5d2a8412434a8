"""``loadlab compare A B``: ``compare.md``, ``compare.html`` and the terminal's short table.

Exit codes follow the question a pipeline asks: 0 when B is not worse than A beyond the
threshold, 1 when any row regressed, 2 (``UsageError``, one line) when the two folders are not
comparable or not runs at all. A row without a verdict (too few intervals, a knee the ramp never
bracketed) is shown as such on every output: it never passes silently, but it is not a
regression either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from loadlab.errors import ResultsWriteError, UsageError
from loadlab.report.compare import (
    CONFIDENCE,
    Comparison,
    KneeRow,
    LatencyRow,
    OutcomeRow,
    Verdict,
    percent,
    times,
)
from loadlab.report.compare_read import read_comparison
from loadlab.report.page import document, esc, image, table, verdict
from loadlab.report.plots import DPI, png_bytes
from loadlab.results import write_bytes_atomic

HTML_FILE = "compare.html"
MD_FILE = "compare.md"
_THRESHOLD = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")
_RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0, 1.25, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""Where the ratio axis may be labelled: 1-2-5 steps, and 0.8/1.25 (a 1.25x change either way)
while the axis is narrow enough to show them."""
RATIO_WIDTH_IN = 7.5
RATIO_MARGIN_IN = 1.2
RATIO_ROW_IN = 0.32
"""The p99-ratio figure, inches: its width, the room for the axis and its label, and one row per
operation (not from a reference: chosen by eye)."""
_ROW_CLASS = {Verdict.REGRESSED: "fail", Verdict.IMPROVED: "pass"}
_VERDICT_COLOUR = {
    Verdict.REGRESSED: "#c5221f",
    Verdict.IMPROVED: "#188038",
    Verdict.SAME: "#3c4043",
    Verdict.NONE: "#9aa0a6",
}


def parse_threshold(text: str) -> float:
    """``10%``, ``10 %`` or a fraction (``0.1``) as a fraction in [0, 1)."""
    match = _THRESHOLD.match(text)
    if match is None:
        raise UsageError(
            f"--threshold {text!r}: expected a percentage (10%) or a fraction (0.1), not negative"
        )
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    if value >= 1:
        hint = "" if match.group(2) else f"; for {match.group(1)} percent write {match.group(1)}%"
        raise UsageError(f"--threshold {text!r}: must be below 100 %{hint}")
    return value


def compare_command(a: Path, b: Path, *, threshold: float, out: Path | None) -> int:
    """Compare, write both pages into ``out`` (default ``<parent of B>/compare-A-vs-B``), print
    the short table and the verdict; the exit code (0 or 1; 2 is raised as ``UsageError``)."""
    comparison = read_comparison(a, b, threshold=threshold)
    folder = out if out is not None else default_out(a, b)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Atomic: a browser reloading or a CI artefact upload never sees half a page.
        write_bytes_atomic(folder / MD_FILE, compare_markdown(comparison).encode("utf-8"))
        write_bytes_atomic(folder / HTML_FILE, compare_html(comparison).encode("utf-8"))
    except OSError as exc:
        raise ResultsWriteError(
            f"{folder}: cannot write the comparison ({exc.strerror or type(exc).__name__})"
        ) from None
    print(terminal_table(comparison))
    print(comparison.headline())
    print(f"report: {folder / HTML_FILE}")
    return comparison.exit_code


def default_out(a: Path, b: Path) -> Path:
    a_name, b_name = a.resolve().name, b.resolve().name
    return b.resolve().parent / f"compare-{a_name}-vs-{b_name}"


# --- the rows, as cells -------------------------------------------------------------------------

KNEE_HEADER = ("target", "sim nodes", "A knee", "B knee", "B/A", "verdict", "why")
OUTCOME_HEADER = (
    "",
    "A",
    "B",
    "A API sat.",
    "B API sat.",
    "A DNS fail",
    "B DNS fail",
    "verdict",
    "why",
)
LATENCY_HEADER = (
    "where",
    "operation",
    "",
    "A ms",
    "B ms",
    "B/A",
    f"{CONFIDENCE:.0%} interval",
    "intervals A/B",
    "verdict",
)


def knee_cells(row: KneeRow) -> list[str]:
    nodes = f"{row.nodes:,}" if row.nodes is not None else "-"
    return [
        row.target,
        nodes,
        row.a.text(),
        row.b.text(),
        row.ratio_text,
        row.verdict.value,
        row.why,
    ]


def outcome_cells(row: OutcomeRow) -> list[str]:
    return [
        row.label,
        _held(row.a_held),
        _held(row.b_held),
        _seconds(row.a_api_s),
        _seconds(row.b_api_s),
        _seconds(row.a_dns_s),
        _seconds(row.b_dns_s),
        row.verdict.value,
        row.why,
    ]


def latency_cells(row: LatencyRow) -> list[str]:
    interval = f"{row.low:.2f}-{row.high:.2f}" if row.low is not None and row.high else "-"
    shown = row.why if row.verdict is Verdict.NONE else row.verdict.value
    return [
        row.scope,
        row.op,
        row.quantile,
        _ms(row.a_ms),
        _ms(row.b_ms),
        times(row.ratio) if row.ratio is not None else "-",
        interval,
        f"{row.a_intervals}/{row.b_intervals}",
        shown,
    ]


def _held(held: bool | None) -> str:
    return "not judged" if held is None else ("held" if held else "failed")


def _seconds(value: float | None) -> str:
    return f"{value:,.0f} s" if value is not None else "-"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def _row_classes(rows: Sequence[KneeRow | OutcomeRow | LatencyRow]) -> list[str]:
    """Each row's colour on the page: red when it regressed, green when it improved."""
    return [_ROW_CLASS.get(r.verdict, "") for r in rows]


def _outcome_id(c: Comparison) -> str:
    return "sizes" if c.kind == "sweep" else "targets"


def _header_lines(c: Comparison) -> list[str]:
    return [
        f"A: {c.a_path}",
        f"B: {c.b_path}",
        f"profile {c.profile} ({c.kind}); threshold {percent(c.threshold)}",
        f"latency compared over: {c.latency_range or 'nothing'}",
    ]


# --- compare.html, compare.md -------------------------------------------------------------------


def compare_html(c: Comparison) -> str:
    sections = [
        f"<h1>loadlab compare: {esc(c.a_path.name)} vs {esc(c.b_path.name)}</h1>",
        verdict(c.headline(), not c.regressions()),
        "<p>" + "<br>".join(esc(line) for line in _header_lines(c)) + "</p>",
        "<h2>What differs</h2>",
        "<ul>" + "".join(f"<li><code>{esc(d)}</code></li>" for d in c.differs) + "</ul>"
        if c.differs
        else "<p>The two profiles as run are the same (only the targets' ports differ).</p>",
    ]
    if c.kind == "ramp":
        sections += [
            "<h2>Knees</h2>",
            table(
                KNEE_HEADER,
                [knee_cells(r) for r in c.knees],
                table_id="knees",
                row_classes=_row_classes(c.knees),
                text_columns=1,
            ),
        ]
    else:
        sections += [
            "<h2>Sizes</h2>" if c.kind == "sweep" else "<h2>Targets</h2>",
            table(
                OUTCOME_HEADER,
                [outcome_cells(r) for r in c.outcomes],
                table_id=_outcome_id(c),
                row_classes=_row_classes(c.outcomes),
            ),
        ]
    png = p99_ratio_png(c.latency, c.threshold)
    if png is not None:
        sections.append(image(png, "p99 ratio B/A per operation", _png_caption(c)))
    sections += [
        "<h2>Latency</h2>",
        table(
            LATENCY_HEADER,
            [latency_cells(r) for r in c.latency],
            table_id="latency",
            caption=f"successful requests, per-interval p50/p99: {c.latency_range}",
            row_classes=_row_classes(c.latency),
            text_columns=3,
        ),
    ]
    return document(f"loadlab compare {c.a_path.name} vs {c.b_path.name}", sections)


def _png_caption(c: Comparison) -> str:
    return (
        f"p99 of B over A per operation (median of per-interval p99s) with its {CONFIDENCE:.0%} "
        f"bootstrap interval; the band is the threshold, ±{percent(c.threshold)}"
    )


def compare_markdown(c: Comparison) -> str:
    lines = [f"# loadlab compare: {c.a_path.name} vs {c.b_path.name}", "", f"**{c.headline()}**"]
    lines += ["", *(f"- {line}" for line in _header_lines(c)), "", "## What differs", ""]
    lines += [f"- `{d}`" for d in c.differs] or ["- nothing but the targets' ports"]
    if c.kind == "ramp":
        lines += ["", "## Knees", "", *_md_table(KNEE_HEADER, [knee_cells(r) for r in c.knees])]
    else:
        title = "## Sizes" if c.kind == "sweep" else "## Targets"
        rows = [outcome_cells(r) for r in c.outcomes]
        lines += ["", title, "", *_md_table(OUTCOME_HEADER, rows)]
    rows = [latency_cells(r) for r in c.latency]
    lines += ["", "## Latency", "", *_md_table(LATENCY_HEADER, rows)]
    return "\n".join(lines) + "\n"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    if not rows:
        return ["(none)"]
    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]


def terminal_table(c: Comparison) -> str:
    """Knees or sizes, and only the latency rows that moved (or could not be judged)."""
    if c.kind == "ramp":
        blocks = [_text_table(KNEE_HEADER[:-1], [knee_cells(r)[:-1] for r in c.knees])]
    else:
        blocks = [_text_table(OUTCOME_HEADER, [outcome_cells(r) for r in c.outcomes])]
    moved = [latency_cells(r) for r in c.latency if r.verdict is not Verdict.SAME]
    if moved:
        blocks.append(_text_table(LATENCY_HEADER, moved))
    return "\n\n".join(b for b in blocks if b)


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in (header, *rows)
    )


# --- the picture --------------------------------------------------------------------------------


def p99_ratio_png(rows: Sequence[LatencyRow], threshold: float) -> bytes | None:
    """B/A of each operation's p99 with its interval, on a log axis; None when no row has one."""
    shown = [
        (r, r.ratio, r.low, r.high)
        for r in rows
        if r.quantile == "p99" and r.ratio is not None and r.low is not None and r.high is not None
    ]
    if not shown:
        return None
    fig = Figure(figsize=(RATIO_WIDTH_IN, RATIO_MARGIN_IN + RATIO_ROW_IN * len(shown)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axvspan(1 - threshold, 1 + threshold, color="#e8eaed", zorder=0)
    ax.axvline(1.0, color="#5f6368", linewidth=1, zorder=1)
    for y, (row, ratio, low, high) in enumerate(reversed(shown)):
        errors = [[max(ratio - low, 0.0)], [max(high - ratio, 0.0)]]
        colour = _VERDICT_COLOUR[row.verdict]
        ax.errorbar([ratio], [y], xerr=errors, fmt="o", color=colour, capsize=3, zorder=2)
    labels = [f"{row.scope} {row.op}" for row, *_ in reversed(shown)]
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    values = [v for _, _, low, high in shown for v in (low, high) if v > 0]
    span = max(abs(math.log10(v)) for v in values) if values else 0.0
    limit = 10 ** max(span * 1.15, math.log10(1 + threshold) * 2, 0.1)
    ax.set_xscale("log")
    ax.set_xlim(1 / limit, limit)
    ticks = [t for t in _RATIO_TICKS if 1 / limit <= t <= limit]
    if len(ticks) > 9:
        ticks = [t for t in ticks if t not in (0.8, 1.25)]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("p99 of B / p99 of A (log scale; left of 1 is faster)")
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    fig.tight_layout()
    return png_bytes(fig)
