"""``report.html``: one self-contained page per results folder, built with ``page``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from loadlab.report.figures import FigureImage, Section
from loadlab.report.page import document, esc, image, table, verdict
from loadlab.report.perfdash import profile_name
from loadlab.report.read import RunFolder
from loadlab.report.series import max_lag_ms
from loadlab.report.tables import (
    LATENCY_HEADER,
    SIZE_HEADER,
    generator_line,
    latency_rows,
    machine_rows,
    size_rows,
    verdict_lines,
)

_VERDICT_CLASS = {"passed": "pass", "failed": "fail"}
_SECTIONS: tuple[tuple[Section, str], ...] = (
    ("knee", "Latency and throughput against offered load"),
    ("timeline", "Second by second"),
)


def _run_facts(run: RunFolder) -> str:
    summary = run.summary or {}
    facts = [f"folder {run.path}", f"{run.kind} run"]
    if summary.get("run_id"):
        facts.append(f"run {summary['run_id']}")
    if summary.get("started_at"):
        facts.append(f"started {summary['started_at']}")
    if isinstance(summary.get("duration_s"), int | float):
        facts.append(f"{summary['duration_s']:,.0f} s")
    return f"<p>{esc(' · '.join(facts))}</p>"


def _figures(figures: Sequence[FigureImage], section: Section) -> list[str]:
    return [image(f.png, f.alt, f.caption) for f in figures if f.section == section]


def render_html(run: RunFolder, figures: Sequence[FigureImage], files: Sequence[str]) -> str:
    """The page: verdict, per-size table, figures, generator health, per-op latency, machine,
    profile as run, and the files beside it."""
    name = profile_name(run)
    parts = [f"<h1>loadlab report: {esc(name)}</h1>", _run_facts(run)]
    parts += [verdict(line, passed) for line, passed in verdict_lines(run)]

    rows = size_rows(run)
    parts.append("<h2>Per size</h2>")
    parts.append(
        table(
            SIZE_HEADER,
            [r.cells() for r in rows],
            table_id="sizes",
            row_classes=[_VERDICT_CLASS.get(r.verdict, "") for r in rows],
            text_columns=1,
        )
    )
    parts.append(
        "<p>DNS onset: how long the DNS caches hid the API's saturation (DNS failure minus API "
        "saturation). Knee: the highest offered load every step below which passed.</p>"
    )
    for section, heading in _SECTIONS:
        shown = _figures(figures, section)
        if shown:
            parts.append(f"<h2>{esc(heading)}</h2>")
            parts += shown

    parts.append("<h2>The generator's own health</h2>")
    parts.append(f"<p>{esc(generator_line(run, max_lag_ms(run)))}</p>")
    parts += _figures(figures, "health")

    parts.append("<h2>Latency per operation (ms)</h2>")
    latency = latency_rows(run)
    if latency:
        parts.append(
            table(
                LATENCY_HEADER,
                [r.cells() for r in latency],
                caption="corrected for coordinated omission; every outcome counted",
                text_columns=3,
            )
        )
    else:
        parts.append("<p>Not recorded: the run has no summary.json.</p>")

    parts.append("<h2>Machine</h2>")
    machine = machine_rows(run)
    if machine:
        parts.append(table(("field", "value"), machine, text_columns=2))
    else:
        parts.append("<p>not recorded</p>")

    parts.append("<h2>Profile as run</h2>")
    if run.profile:
        parts.append(f"<pre>{esc(json.dumps(run.profile, indent=2))}</pre>")
    else:
        parts.append("<p>not recorded in this folder (no profile.resolved.json)</p>")

    parts.append("<h2>Files</h2>")
    parts.append("<ul>" + "".join(f"<li>{esc(f)}</li>" for f in files) + "</ul>")
    return document(f"loadlab report: {name}", parts)
