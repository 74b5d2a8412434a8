"""Live progress on a terminal (rich); silence when stderr is not one.

The session calls ``interval`` once per interval and ``step`` once per finished step; this module
only formats. It never decides anything.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class IntervalView:
    """What one interval looked like for one target, in display units."""

    target: str
    phase: str
    elapsed_s: float
    offered_per_s: float
    achieved_per_s: float
    errors_per_s: float
    p99_ms: float
    in_flight: int


@dataclass(frozen=True)
class StepView:
    target: str
    offered_per_s: float
    achieved_per_s: float
    p99_ms: float
    error_rate: float
    verdict: str
    """'pass', 'FAIL' or 'generator-limited'."""
    why: str


class ProgressSink(Protocol):
    def start(self, title: str) -> None: ...
    def interval(self, view: IntervalView) -> None: ...
    def step(self, view: StepView) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class NullProgress:
    def start(self, title: str) -> None:
        pass

    def interval(self, view: IntervalView) -> None:
        pass

    def step(self, view: StepView) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


_COLUMNS = ("target", "phase", "t", "offered/s", "achieved/s", "errors/s", "p99 ms", "result")
_LEFT = ("target", "phase", "result")


@dataclass
class LiveProgress:
    """A rich Live panel: the latest interval per target, and the steps so far."""

    console: Console = field(default_factory=lambda: Console(stderr=True))
    _live: Live | None = None
    _title: str = ""
    _latest: dict[str, IntervalView] = field(default_factory=dict)
    _steps: list[StepView] = field(default_factory=list)
    _notes: list[str] = field(default_factory=list)

    def start(self, title: str) -> None:
        self._title = title
        self._notes.clear()
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.start()

    def interval(self, view: IntervalView) -> None:
        self._latest[view.target] = view
        self._refresh()

    def step(self, view: StepView) -> None:
        self._steps.append(view)
        self._refresh()

    def note(self, text: str) -> None:
        """Something that happened (the API saturated, DNS failed): kept on screen."""
        self._notes.append(text)
        self._refresh()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Table:
        table = Table(title=self._title, title_justify="left", expand=False)
        for col in _COLUMNS:
            table.add_column(col, justify="left" if col in _LEFT else "right")
        for step in self._steps[-12:]:
            style = {"pass": "green", "FAIL": "red"}.get(step.verdict, "yellow")
            table.add_row(
                step.target,
                "step",
                "",
                f"{step.offered_per_s:,.0f}",
                f"{step.achieved_per_s:,.0f}",
                f"{step.error_rate:.2%}",
                f"{step.p99_ms:,.1f}",
                Text(
                    step.verdict if step.verdict == "pass" else f"{step.verdict} {step.why}", style
                ),
            )
        for view in self._latest.values():
            table.add_row(
                view.target,
                view.phase,
                f"{view.elapsed_s:,.0f}s",
                f"{view.offered_per_s:,.0f}",
                f"{view.achieved_per_s:,.0f}",
                f"{view.errors_per_s:,.0f}",
                f"{view.p99_ms:,.1f}",
                Text(f"in flight {view.in_flight}", style="dim") if view.in_flight else "",
            )
        for note in self._notes[-6:]:
            table.add_row("", "", "", "", "", "", "", Text(note, style="bold red"))
        return table


def make_progress(quiet: bool) -> ProgressSink:
    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return LiveProgress()
