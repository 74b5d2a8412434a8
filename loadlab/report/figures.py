"""Which figures a results folder gets, each drawn once: written to ``plots/`` and embedded in
report.html from the same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadlab.report.plots import step_figure, timeline_figure
from loadlab.report.read import TIMELINE_FILE, RunFolder, read_timeline, size_dir, size_entry, sizes
from loadlab.report.series import (
    column_prefixes,
    health_panels,
    knee_offered,
    max_lag_ms,
    ramp_points,
    run_timeline_panels,
    size_marks,
    sweep_size_panels,
    sweep_warmup_s,
)

Section = Literal["knee", "timeline", "health"]


@dataclass(frozen=True)
class FigureImage:
    """One PNG and where the page shows it."""

    name: str
    """File name under ``plots/``."""
    png: bytes
    alt: str
    caption: str
    section: Section


def build_figures(run: RunFolder) -> list[FigureImage]:
    """Every figure the folder's files allow: a killed run gets what its timeline and hlogs
    hold, a sweep one timeline per size that left a folder."""
    if run.kind == "sweep":
        return _sweep_figures(run)
    figures: list[FigureImage] = []
    rows = read_timeline(run.path / TIMELINE_FILE)
    if run.kind == "ramp":
        for target in column_prefixes(rows):
            points = ramp_points(run, target)
            if not points:
                continue
            knee = knee_offered(run, target)
            figures.append(
                FigureImage(
                    name=f"knee-{target}.png",
                    png=step_figure(target, points, knee),
                    alt=f"{target}: latency percentiles and achieved rate against offered load",
                    caption=(
                        f"{target}: p50/p90/p99/p99.9 of each step's measuring window (warm-up "
                        "excluded, every outcome, from the hlog) and achieved against offered"
                        + (f"; the knee at {knee:,.0f}/s" if knee is not None else "; no knee")
                    ),
                    section="knee",
                )
            )
    if rows:
        figures.append(
            FigureImage(
                name="timeline.png",
                png=timeline_figure("per second", run_timeline_panels(rows)),
                alt="per-second offered, achieved, errors and p99 of each target",
                caption="Each second of the run: offered, OK and errors per second, and p99.",
                section="timeline",
            )
        )
        figures.append(_health(run, [("run", rows)]))
    return figures


def _sweep_figures(run: RunFolder) -> list[FigureImage]:
    figures: list[FigureImage] = []
    warmup_s = sweep_warmup_s(run)
    health_rows = []
    for n in sizes(run):
        panels = sweep_size_panels(run, n)
        if not panels:
            continue
        marks = size_marks(size_entry(run, n))
        figures.append(
            FigureImage(
                name=f"timeline-size-{n}.png",
                png=timeline_figure(
                    f"{n:,} nodes",
                    panels,
                    marks=marks,
                    warmup_s=warmup_s,
                    xlabel="seconds since the size's start",
                ),
                alt=f"{n:,} nodes: API and DNS per second",
                caption=(
                    f"{n:,} nodes: API OK and errors per second (every API agent kind), API p99, "
                    "DNS lookups (pod-dns 'lookup', by completion second)"
                    + ("; shaded: warm-up" if warmup_s else "")
                    + "".join(f"; {m.label}" for m in marks)
                ),
                section="timeline",
            )
        )
        health_rows.append((f"{n:,} nodes", read_timeline(size_dir(run, n) / TIMELINE_FILE)))
    if health_rows:
        figures.append(_health(run, health_rows))
    return figures


def _health(
    run: RunFolder, rows_by_label: list[tuple[str, list[dict[str, float | None]]]]
) -> FigureImage:
    panels = health_panels(rows_by_label, max_lag_ms(run))
    return FigureImage(
        name="generator.png",
        png=timeline_figure("the generator's own health", panels),
        alt="schedule lag p99 and CPU of the load generator per second",
        caption=(
            "The generator's schedule lag p99 (worst of its targets or kinds) against the "
            "profile's limit, and its CPU: while both stay low the limit measured is the server's."
        ),
        section="health",
    )
