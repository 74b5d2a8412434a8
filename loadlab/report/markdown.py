"""``summary.md``: the report for a terminal or a pull request, GitHub markdown, no HTML."""

from __future__ import annotations

from collections.abc import Sequence

from loadlab.report.perfdash import profile_name
from loadlab.report.read import RunFolder
from loadlab.report.series import max_lag_ms
from loadlab.report.tables import (
    LATENCY_HEADER,
    SIZE_HEADER,
    generator_line,
    latency_rows,
    size_rows,
    verdict_lines,
)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1
) -> list[str]:
    """A GitHub table; the first ``text_columns`` left-aligned, the rest right (numbers)."""
    align = [":--"] * text_columns + ["--:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(run: RunFolder, files: Sequence[str]) -> str:
    out = [f"# loadlab report: {profile_name(run)}", "", f"{run.kind} run, folder `{run.path}`", ""]
    out += [f"**{_cell(line)}**  " for line, _ in verdict_lines(run)]
    out += ["", "## Per size", ""]
    out += markdown_table(SIZE_HEADER, [r.cells() for r in size_rows(run)])
    out += ["", "## Latency per operation (ms)", ""]
    latency = latency_rows(run)
    if latency:
        out += markdown_table(LATENCY_HEADER, [r.cells() for r in latency], text_columns=3)
    else:
        out.append("Not recorded: the run has no summary.json.")
    out += ["", "## Generator", "", generator_line(run, max_lag_ms(run)), "", "## Files", ""]
    out += [f"- `{f}`" for f in files]
    return "\n".join(out) + "\n"
