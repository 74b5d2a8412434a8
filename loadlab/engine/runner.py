"""Runners: turn a schedule (open loop) or a concurrency (closed loop) into ``target.submit`` calls.

Both runners take an injected ``Clock``, so tests drive them with ``FakeClock`` and a fake target.
They never open or close the target: the caller owns its lifetime (one target serves many steps).

Open loop (wrk2's model): every send has an intended time from the schedule, and the target reports
latency from it, so a stalled server is charged for the sends it delayed (coordinated omission).

Closed loop (``wrk -c`` / ``dnsperf -q``): ``concurrency`` requests are kept in flight; each
completion immediately submits the next one with intended time = now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from loadlab.clock import Clock
from loadlab.engine.mix import OpMix
from loadlab.engine.schedule import Schedule
from loadlab.targets.base import CompletionSink, Outcome, StepFn, Target

MAX_BATCH = 4096
"""Sends dispatched per wake-up at most. Not from a reference: large enough that batching costs
nothing at the ~100k/s a core can send (a batch is ~40 ms of work there), small enough that the
event loop runs the target's I/O and signal handlers every few tens of ms at any rate."""
MAX_LAG_S = 0.5
"""The ``max_lag_ns`` that ``loadlab run`` (and bench) give the open loop, in seconds: a send
more than this late is skipped, not sent in a burst (see ``OpenLoopRunner``)."""


class DispatchObserver(Protocol):
    """What the runner tells the recorder about its own behaviour (the generator's health)."""

    def on_dispatch(self, intended_ns: int, dispatched_ns: int) -> None:
        """One operation handed over at ``dispatched_ns`` (its schedule lag is the difference)."""
        ...

    def on_skipped(self, count: int) -> None:
        """``count`` intended sends given up on because the generator fell too far behind."""
        ...


class RunObserver(DispatchObserver, CompletionSink, Protocol):
    """The recorder as the runners see it: a dispatch observer that is also the completion sink."""


class ClosedStepper(Protocol):
    """An observer that can record a closed loop's steps itself (``Recorder.closed_step``)."""

    def closed_step(
        self, next_op: Callable[[], int], end_ns: int, late: StepFn
    ) -> tuple[StepFn, Callable[[], int]]: ...


class SteppedTarget(Protocol):
    """A target that replaces each completion itself when given a step (``StepFn``); ``None``
    takes the step away (completions go to its sink again)."""

    def set_step(self, step: StepFn | None) -> None: ...


@dataclass(frozen=True)
class OpenLoopStats:
    """What an open-loop run did, counted by the runner itself."""

    planned: int
    """Intended sends the schedule produced before ``end_ns``."""
    dispatched: int
    """Sends handed to ``target.submit``."""
    skipped: int
    """Intended sends dropped: dispatch lag over ``max_lag_ns`` (the generator fell behind)."""
    overflowed: int
    """Sends completed at once as ``Outcome.OVERFLOW`` because the target's backlog was full."""
    max_lag_ns: int
    """Largest dispatch lag (actual minus intended) among the sends attempted."""


@dataclass(frozen=True)
class ClosedLoopStats:
    """What a closed-loop run did."""

    dispatched: int
    """Sends handed to ``target.submit`` (the initial ``concurrency`` plus one per completion)."""
    completed: int
    """Completions seen before the end (the ones after ``end_ns`` still reach the observer)."""


class OpenLoopRunner:
    """Sleeps until the next intended time, then dispatches every send that is due.

    Falling behind: a send whose dispatch lag (now - intended) exceeds ``max_lag_ns`` is skipped
    and reported through ``observer.on_skipped``, not sent late. Sending it late would release a
    burst the schedule never asked for, and the server would be blamed for the queueing that burst
    causes; the skip instead marks the step generator-limited (sent < 99% of planned), which is the
    truth. Sends with a smaller lag go out and carry their lag in ``on_dispatch``.

    Backlog: when ``target.in_flight >= max_backlog`` the send completes at once as
    ``Outcome.OVERFLOW`` through the observer's ``complete``: the server is not keeping up, so it
    counts as an error of the server, not of the generator. ``on_dispatch`` is still called for it
    (the generator did its job on time), so every completion has a matching dispatch.
    """

    def __init__(
        self,
        clock: Clock,
        target: Target,
        schedule: Schedule,
        mix: OpMix,
        observer: RunObserver,
        *,
        end_ns: int,
        max_lag_ns: int,
        max_backlog: int,
    ) -> None:
        if max_lag_ns < 0:
            raise ValueError(f"max_lag_ns must not be negative, got {max_lag_ns}")
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, got {max_backlog}")
        self._clock = clock
        self._target = target
        self._schedule = schedule
        self._mix = mix
        self._observer = observer
        self._end_ns = end_ns
        self._max_lag_ns = max_lag_ns
        self._max_backlog = max_backlog

    async def run(self) -> OpenLoopStats:
        clock, target, mix, observer = self._clock, self._target, self._mix, self._observer
        end_ns, max_lag_ns, max_backlog = self._end_ns, self._max_lag_ns, self._max_backlog
        schedule = self._schedule
        next_ns = schedule.next_ns
        planned = dispatched = skipped = overflowed = max_lag = 0
        t_ns = next_ns()
        while t_ns is not None and t_ns < end_ns:
            # Always await, even when already late: a schedule that is behind must still let the
            # target's I/O run (sleep_until yields once for a past deadline).
            await clock.sleep_until(t_ns)
            # The batch is what was due at wake-up, at most MAX_BATCH sends; sends falling due
            # during it wait for the next wake, so the loop yields to the target's I/O (and to
            # Ctrl-C) at least once per batch, whatever the rate.
            wake_ns = clock.now_ns()
            budget = MAX_BATCH
            skipped_now = 0
            while t_ns is not None and t_ns <= wake_ns and t_ns < end_ns and budget:
                budget -= 1
                planned += 1
                # Read the clock per send: a long batch makes its last sends late, and says so.
                now_ns = clock.now_ns()
                lag_ns = now_ns - t_ns
                if lag_ns > max_lag_ns:
                    # Too late: skip it and, in one go, every later time that is too late too.
                    late = schedule.skip_until(now_ns - max_lag_ns)
                    planned += late
                    skipped_now += 1 + late
                else:
                    if lag_ns > max_lag:
                        max_lag = lag_ns
                    op = mix.next_op()
                    observer.on_dispatch(t_ns, now_ns)
                    if target.in_flight >= max_backlog:
                        overflowed += 1
                        observer.complete(op, Outcome.OVERFLOW, t_ns, now_ns, now_ns)
                    else:
                        dispatched += 1
                        target.submit(op, t_ns)
                t_ns = next_ns()
            if skipped_now:
                skipped += skipped_now
                observer.on_skipped(skipped_now)
        return OpenLoopStats(planned, dispatched, skipped, overflowed, max_lag)


class ClosedLoopRunner:
    """Keeps exactly ``concurrency`` requests in flight until ``end_ns``.

    Open the target with ``runner.sink`` (the runner itself: ``complete`` forwards every
    completion to the observer and then submits the next request), then ``await runner.run()``.
    Requests are not submitted after ``end_ns``; the ones in flight then are the caller's to
    ``drain``.

    The steady state skips the runner when it can: a target with ``set_step`` (the lean HTTP and
    the DNS target) is handed the recorder's ``closed_step`` for the run, and replaces each
    completion on the connection or socket it came from, recorded as ``complete`` and
    ``on_dispatch`` would. Against nginx on one core (``bench/http_layers.py``, an Intel Xeon
    VM), that took the whole closed loop from 172k to 190k requests a second: the runner's two
    calls per request and the target's ``submit`` had cost as much as the recorder.
    """

    def __init__(
        self,
        clock: Clock,
        target: Target,
        mix: OpMix,
        observer: RunObserver,
        *,
        concurrency: int,
        end_ns: int,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._clock = clock
        self._target = target
        self._mix = mix
        self._observer = observer
        self._concurrency = concurrency
        self._end_ns = end_ns
        self._deficit = 0
        self._refilling = False
        self._running = False
        self._dispatched = 0
        self._completed = 0
        self.sink: CompletionSink = self
        """Open the target with this sink: completions go to the observer, then refill."""

    async def run(self) -> ClosedLoopStats:
        self._running = True
        self._deficit = self._concurrency
        steps_taken = self._hand_step()
        try:
            self._refill()
            await self._clock.sleep_until(self._end_ns)
        finally:
            self._running = False
            if steps_taken is not None:
                cast(SteppedTarget, self._target).set_step(None)
        stepped = steps_taken() if steps_taken is not None else 0
        return ClosedLoopStats(self._dispatched + stepped, self._completed + stepped)

    def _hand_step(self) -> Callable[[], int] | None:
        """When the target takes a step (``set_step``) and the observer can make one
        (``closed_step``), hand the target the observer's step: each completion before the end
        is then recorded and replaced without the runner, on the same connection or socket. Its
        count of steps taken, or None when the completions come through ``complete``."""
        if getattr(self._target, "set_step", None) is None:
            return None
        if getattr(self._observer, "closed_step", None) is None:
            return None
        stepper = cast(ClosedStepper, self._observer)
        step, steps_taken = stepper.closed_step(self._mix.next_op, self._end_ns, self._late)
        cast(SteppedTarget, self._target).set_step(step)
        return steps_taken

    def _late(self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int) -> int:
        """The step for a completion at or after the end: the sink's way, nothing in its place."""
        self.complete(op, outcome, intended_ns, sent_ns, done_ns)
        return -1

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        """The ``CompletionSink`` call: record the completion, then submit the next request
        (the way of every completion a target's step does not take)."""
        self._observer.complete(op, outcome, intended_ns, sent_ns, done_ns)
        if not self._running:
            return
        self._completed += 1
        self._deficit += 1
        if not self._refilling:
            self._refill(done_ns)

    def _refill(self, now_ns: int | None = None) -> None:
        """Submit what is missing; ``now_ns``: the time of the completion that called it (the
        next request leaves in the same callback), saving a clock read per request."""
        # A target may complete synchronously inside submit (an overflow, a refused socket):
        # the flag turns that recursion into this loop, and the cap per call hands the rest to
        # the event loop so a target that always fails at once cannot spin forever.
        self._refilling = True
        try:
            budget = self._concurrency
            while self._deficit > 0 and budget > 0 and self._running:
                if now_ns is None:
                    now_ns = self._clock.now_ns()
                if now_ns >= self._end_ns:
                    self._running = False
                    break
                self._deficit -= 1
                budget -= 1
                self._dispatched += 1
                op = self._mix.next_op()
                self._observer.on_dispatch(now_ns, now_ns)
                self._target.submit(op, now_ns)
                now_ns = None
        finally:
            self._refilling = False
        if self._deficit > 0 and self._running:
            asyncio.get_running_loop().call_soon(self._refill)
