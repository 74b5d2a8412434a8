"""The report's PNGs, drawn with matplotlib's object API: a ``Figure`` on an Agg canvas per
image, never ``pyplot``, so no global figure state survives a call (a report run inside a test or
a long ``loadlab run`` leaks nothing) and no display backend is needed.

The same data always gives the same bytes: fixed size and dpi, and no "Software" or date
metadata in the PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loadlab.report.series import Mark, Panel, StepPoint

DPI = 100
"""Dots per inch of every PNG (matplotlib's own default): with ``WIDTH_IN`` a 1,000-pixel image,
shown unscaled in page.py's 1,100-pixel column."""
WIDTH_IN = 10.0
"""Width of every report figure, inches."""
PANEL_HEIGHT_IN = 2.3
"""Height of one stacked timeline panel, inches (not from a reference: chosen by eye)."""
TITLE_HEIGHT_IN = 0.7
"""Room for a timeline figure's title above its panels, inches."""
STEP_FIGURE_HEIGHT_IN = 3.8
"""Height of the two side-by-side knee panels, inches (not from a reference: chosen by eye)."""
_LOG_SPAN = 30.0
"""Latencies spanning more than this ratio get a log axis, so p50 stays readable beside p99.9
(not from a reference: chosen by eye)."""
_PERCENTILES = (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as a PNG at ``DPI``, without "Software" metadata: the same data, the same bytes."""
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _maybe_log(ax: Axes, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if positive and max(positive) / min(positive) > _LOG_SPAN:
        ax.set_yscale("log")


def step_figure(target: str, points: Sequence[StepPoint], knee_per_s: float | None) -> bytes:
    """Two panels over offered load: latency percentiles of each step, and achieved against
    offered with the y = x line; the knee a vertical line on both."""
    fig = Figure(figsize=(WIDTH_IN, STEP_FIGURE_HEIGHT_IN), layout="constrained")
    latency_ax, achieved_ax = fig.subplots(1, 2)
    ordered = sorted(points, key=lambda p: p.offered_per_s)
    offered = [p.offered_per_s for p in ordered]
    all_latency: list[float] = []
    for label, attr in _PERCENTILES:
        ys = [float(getattr(p.latency, attr)) if p.latency.count else math.nan for p in ordered]
        all_latency += ys
        latency_ax.plot(offered, ys, marker="o", markersize=3, label=label)
    _maybe_log(latency_ax, all_latency)
    latency_ax.set_xlabel("offered (requests/s)")
    latency_ax.set_ylabel("latency (ms)")
    latency_ax.set_title(f"{target}: latency per step")
    achieved = _nan([p.achieved_per_s for p in ordered])
    achieved_ax.plot(offered, achieved, marker="o", markersize=3, label="achieved")
    if offered:
        top = max([*offered, *[a for a in achieved if math.isfinite(a)]])
        achieved_ax.plot([0, top], [0, top], color="0.6", linestyle=":", label="achieved = offered")
    failed = [(p.offered_per_s, a) for p, a in zip(ordered, achieved, strict=True) if not p.passed]
    if failed:
        achieved_ax.scatter(*zip(*failed, strict=True), color="C3", zorder=3, label="step failed")
    achieved_ax.set_xlabel("offered (requests/s)")
    achieved_ax.set_ylabel("achieved (OK/s)")
    achieved_ax.set_title(f"{target}: achieved against offered")
    if knee_per_s is not None:
        for ax in (latency_ax, achieved_ax):
            ax.axvline(knee_per_s, color="C3", linestyle="--", label=f"knee {knee_per_s:,.0f}/s")
    for ax in (latency_ax, achieved_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return png_bytes(fig)


def timeline_figure(
    title: str,
    panels: Sequence[Panel],
    *,
    marks: Sequence[Mark] = (),
    warmup_s: float | None = None,
    xlabel: str = "seconds since the start",
) -> bytes:
    """Stacked panels over time sharing the x axis, the warm-up shaded, onsets as vertical
    lines."""
    height_in = TITLE_HEIGHT_IN + PANEL_HEIGHT_IN * max(len(panels), 1)
    fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
    axes = fig.subplots(max(len(panels), 1), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title)
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
        first = i == 0  # the warm-up and the onsets are named once, in the top legend
        values: list[float] = []
        for series in panel.series:
            ys = _nan(series.y)
            values += ys
            # Small markers: a lone measured second between gaps still shows.
            ax.plot(series.x, ys, linewidth=1.2, marker=".", markersize=3, label=series.label)
        if panel.limit is not None:
            ax.axhline(panel.limit, color="0.4", linestyle=":", label=panel.limit_label or "limit")
        if "ms" in panel.ylabel:
            _maybe_log(ax, values)
        if warmup_s:
            ax.axvspan(0, warmup_s, color="0.92", label="warm-up" if first else "_nolegend_")
        for n, mark in enumerate(marks):
            label = mark.label if first else "_nolegend_"
            ax.axvline(mark.at_s, color=f"C{3 + n}", linestyle="--", label=label)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    if not panels:
        axes[0].text(0.5, 0.5, "no data recorded", ha="center", va="center")
    axes[-1].set_xlabel(xlabel)
    return png_bytes(fig)
