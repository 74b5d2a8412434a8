"""The stepped rate search, as a pure state machine (no I/O, no clock).

docs/knee-method.md, "The method" 2, after Envoy Nighthawk's adaptive controller: grow the offered
rate exponentially until two consecutive steps fail (or the maximum passes), then bisect between the
last pass and the first fail of that pair until they are within ``refine_within`` (5%). If the
very first steps fail, step down by the growth factor until one passes, then bisect. A
generator-limited step ends the search: past it, the generator, not the server, is the limit.
A step in which not one request succeeded ends it too: that is a server that is down or answers
only errors, not a knee (``loadlab.analysis.findings`` says which).

The runner drives it::

    search = RampSearch(plan)
    while (rate := search.next_rate()) is not None:
        search.record(judge_step(run_step(rate), rate, criteria))
    knee = search.knee()
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loadlab.analysis.knee import Knee, find_knee
from loadlab.analysis.steps import StepVerdict


@dataclass(frozen=True)
class RampPlan:
    """The shape of a stepped search."""

    start_per_s: float
    """First offered rate."""
    factor: float
    """Growth factor between steps (> 1)."""
    max_per_s: float
    """Never offer more than this."""
    refine_within: float = 0.05
    """docs/knee-method.md: stop bisecting when (fail - pass) / pass <= 5%."""
    max_steps: int = 30
    """Hard bound on the number of steps, whatever happens."""
    min_per_s: float | None = None
    """Stepping down never goes below this; None: ``start_per_s / 100`` (our choice: two orders
    of magnitude below where the user expected the search to begin)."""

    @property
    def floor_per_s(self) -> float:
        return self.start_per_s / 100 if self.min_per_s is None else self.min_per_s

    def __post_init__(self) -> None:
        if not self.start_per_s > 0:
            raise ValueError(f"start_per_s must be > 0, got {self.start_per_s}")
        if not self.factor > 1:
            raise ValueError(f"factor must be > 1, got {self.factor}")
        if not self.max_per_s >= self.start_per_s:
            raise ValueError(
                f"max_per_s ({self.max_per_s}) must be >= start_per_s ({self.start_per_s})"
            )
        if not self.refine_within > 0:
            raise ValueError(f"refine_within must be > 0, got {self.refine_within}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.min_per_s is not None and not 0 < self.min_per_s <= self.start_per_s:
            raise ValueError(f"min_per_s must be in (0, start_per_s], got {self.min_per_s}")


class SearchPhase(enum.Enum):
    """Where the search is: growing the rate, stepping down below failing first steps,
    bisecting between a pass and a fail, or done."""

    GROW = "grow"
    DESCEND = "descend"
    BISECT = "bisect"
    DONE = "done"


class StopReason(enum.Enum):
    """Why the search ended."""

    REFINED = "refined"
    """Last pass and first fail are within ``refine_within``: the knee is found."""
    MAX_RATE_PASSED = "max_rate_passed"
    """The maximum rate passed: the server's knee is above the plan."""
    GENERATOR_LIMITED = "generator_limited"
    """The generator could not keep the schedule: the limit found is the generator's."""
    MAX_STEPS = "max_steps"
    """The step budget ran out."""
    NO_PASSING_STEP = "no_passing_step"
    """Every step failed, down to the plan's floor: the server fails even at low load."""
    SERVED_NOTHING = "served_nothing"
    """A step sent requests and not one succeeded: the server is down or answers only errors.
    Searching on would measure a dead port (or bisect towards a knee that is not there)."""


class RampSearch:
    """Decides the next offered rate from the verdicts so far."""

    def __init__(self, plan: RampPlan) -> None:
        self.plan = plan
        self.verdicts: list[StepVerdict] = []
        self.phase = SearchPhase.GROW
        self.stop_reason: StopReason | None = None
        self._next: float | None = plan.start_per_s
        self._last_pass: float | None = None
        self._first_fail: float | None = None
        self._consecutive_fails = 0
        self._lo: float = 0.0
        self._hi: float = 0.0

    @property
    def done(self) -> bool:
        return self.phase is SearchPhase.DONE

    def next_rate(self) -> float | None:
        """The rate of the next step (the same until ``record``), or None when done."""
        return None if self.done else self._next

    def record(self, verdict: StepVerdict) -> None:
        """Feed the verdict of the step run at ``next_rate()``."""
        rate = self._next
        if self.done or rate is None:
            raise RuntimeError("the search is done; no step was asked for")
        self.verdicts.append(verdict)
        if verdict.generator_limited:
            self._stop(StopReason.GENERATOR_LIMITED)
            return
        if verdict.served_nothing:
            self._stop(StopReason.SERVED_NOTHING)
            return
        if self.phase is SearchPhase.GROW:
            self._grow(rate, verdict.passed)
        elif self.phase is SearchPhase.DESCEND:
            self._descend(rate, verdict.passed)
        else:
            self._bisect(rate, verdict.passed)
        if not self.done and len(self.verdicts) >= self.plan.max_steps:
            self._stop(StopReason.MAX_STEPS)

    def knee(self) -> Knee | None:
        """The knee of the steps so far (``find_knee``); None if no knee was bracketed."""
        return find_knee(self.verdicts)

    # -- phases -------------------------------------------------------------------------------

    def _grow(self, rate: float, passed: bool) -> None:
        plan = self.plan
        if passed:
            self._last_pass = rate
            self._first_fail = None
            self._consecutive_fails = 0
            if rate >= plan.max_per_s:
                self._stop(StopReason.MAX_RATE_PASSED)
                return
            self._next = min(rate * plan.factor, plan.max_per_s)
            return
        self._consecutive_fails += 1
        if self._first_fail is None:
            self._first_fail = rate
        if self._consecutive_fails < 2:
            # One failing step may be noise: grow once more (or repeat the maximum) to confirm.
            self._next = min(rate * plan.factor, plan.max_per_s)
            return
        if self._last_pass is None:
            self.phase = SearchPhase.DESCEND
            self._step_down(min(self._first_fail, rate))
            return
        self._start_bisect(self._last_pass, self._first_fail)

    def _descend(self, rate: float, passed: bool) -> None:
        if passed:
            self._start_bisect(rate, self._hi)
            return
        self._step_down(rate)

    def _step_down(self, failed_rate: float) -> None:
        self._hi = failed_rate
        if failed_rate <= self.plan.floor_per_s:
            self._stop(StopReason.NO_PASSING_STEP)
            return
        self._next = max(failed_rate / self.plan.factor, self.plan.floor_per_s)

    def _bisect(self, rate: float, passed: bool) -> None:
        if passed:
            self._lo = rate
        else:
            self._hi = rate
        self._bisect_or_finish()

    def _start_bisect(self, lo: float, hi: float) -> None:
        self.phase = SearchPhase.BISECT
        self._lo, self._hi = lo, hi
        self._bisect_or_finish()

    def _bisect_or_finish(self) -> None:
        if (self._hi - self._lo) / self._lo <= self.plan.refine_within:
            self._stop(StopReason.REFINED)
            return
        self._next = (self._lo + self._hi) / 2

    def _stop(self, reason: StopReason) -> None:
        self.phase = SearchPhase.DONE
        self.stop_reason = reason
        self._next = None
