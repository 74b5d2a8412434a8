"""Test doubles for the engine: a recorder that keeps every call, fake servers in fake time (a
slot-limited one, one failing at once, one scripted over time), no sockets."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from loadlab.clock import NS_PER_MS, NS_PER_S, Clock, FakeClock
from loadlab.targets.base import CompletionSink, Outcome, StepFn, wait_until_idle


@dataclass(frozen=True)
class Completion:
    op: int
    outcome: Outcome
    intended_ns: int
    sent_ns: int
    done_ns: int


@dataclass
class FakeRecorder:
    """Records every call the runner and the target make (a RunObserver)."""

    dispatches: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)

    def on_dispatch(self, intended_ns: int, dispatched_ns: int) -> None:
        self.dispatches.append((intended_ns, dispatched_ns))

    def on_skipped(self, count: int) -> None:
        self.skipped.append(count)

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        self.completions.append(Completion(op, outcome, intended_ns, sent_ns, done_ns))

    def closed_step(
        self, next_op: Callable[[], int], end_ns: int, late: StepFn
    ) -> tuple[StepFn, Callable[[], int]]:
        """As ``Recorder.closed_step``: before ``end_ns``, the completion, an on-time dispatch
        and the next op; from it on, ``late``."""
        taken = 0

        def step(op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int) -> int:
            nonlocal taken
            if done_ns >= end_ns:
                return late(op, outcome, intended_ns, sent_ns, done_ns)
            self.complete(op, outcome, intended_ns, sent_ns, done_ns)
            self.on_dispatch(done_ns, done_ns)
            taken += 1
            return next_op()

        return step, lambda: taken


class SlotServerTarget:
    """A fake server with ``slots`` workers, each holding a request for ``service_ns``.

    Requests beyond the slots wait in a FIFO queue (they count as in flight). ``send_cost_ns``
    advances a FakeClock inside ``submit``, imitating a generator that blocks while sending.
    """

    name: str = "fake"
    op_names: tuple[str, ...] = ("a", "b")
    fd_exhausted: bool = False
    stray: int = 0

    def __init__(
        self,
        clock: FakeClock,
        *,
        slots: int,
        service_ns: int,
        send_cost_ns: int = 0,
    ) -> None:
        self._clock = clock
        self._slots = slots
        self._service_ns = service_ns
        self._send_cost_ns = send_cost_ns
        self._queue: deque[tuple[int, int, int]] = deque()
        self._serving: list[tuple[int, int, int]] = []
        self._active = 0
        self._in_flight = 0
        self._sink: CompletionSink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_in_flight = 0

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink

    def submit(self, op: int, intended_ns: int) -> None:
        if self._send_cost_ns:
            self._clock.advance(self._send_cost_ns)
        self._queue.append((op, intended_ns, self._clock.now_ns()))
        self._in_flight += 1
        if self._active < self._slots:
            self._active += 1
            task = asyncio.ensure_future(self._serve())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def _serve(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            op, intended_ns, sent_ns = item
            self._serving.append(item)
            await self._clock.sleep_until(self._clock.now_ns() + self._service_ns)
            self._serving.remove(item)
            self._in_flight -= 1
            self._done(op, intended_ns, sent_ns, self._clock.now_ns())
        self._active -= 1

    def _done(self, op: int, intended_ns: int, sent_ns: int, done_ns: int) -> None:
        assert self._sink is not None
        self._sink.complete(op, Outcome.OK, intended_ns, sent_ns, done_ns)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        return [(op, intended_ns) for op, intended_ns, _ in [*self._serving, *self._queue]]

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self._clock, self, deadline_ns)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class SteppedSlotServerTarget(SlotServerTarget):
    """A ``SlotServerTarget`` that takes a closed loop's step (``set_step``), as the lean HTTP
    target does: with a step and nothing queued, a completion's replacement is served at once
    by the same worker, without ``submit``."""

    def __init__(self, clock: FakeClock, *, slots: int, service_ns: int) -> None:
        super().__init__(clock, slots=slots, service_ns=service_ns)
        self.step: StepFn | None = None
        self.steps = 0
        """Replacements the step named."""

    def set_step(self, step: StepFn | None) -> None:
        self.step = step

    def _done(self, op: int, intended_ns: int, sent_ns: int, done_ns: int) -> None:
        if self.step is None or self._queue:
            super()._done(op, intended_ns, sent_ns, done_ns)
            return
        next_op = self.step(op, Outcome.OK, intended_ns, sent_ns, done_ns)
        if next_op >= 0:
            self.steps += 1
            self._queue.appendleft((next_op, done_ns, done_ns))  # this worker serves it next
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)


class FailAtOnceTarget:
    """A target that completes every request synchronously inside submit (a refused socket)."""

    name: str = "fail"
    op_names: tuple[str, ...] = ("a",)
    fd_exhausted: bool = False
    stray: int = 0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sink: CompletionSink | None = None
        self.submits = 0

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink

    def submit(self, op: int, intended_ns: int) -> None:
        assert self._sink is not None
        self.submits += 1
        now = self._clock.now_ns()
        self._sink.complete(op, Outcome.CONN_ERROR, intended_ns, now, now)

    @property
    def in_flight(self) -> int:
        return 0

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        return []  # every request completes inside submit

    async def drain(self, deadline_ns: int) -> None:
        return None

    async def close(self) -> None:
        return None


SILENT = None
"""The outcome of a ``ScriptedServer`` that never answers."""

Behaviour = Callable[[float], Outcome | None]
"""Seconds since the server's start -> how it answers a request arriving then (None: silence)."""


class ScriptedServer:
    """A fake server with ``slots`` workers of ``service_ms`` each; what a request gets depends
    on when it arrives (``behaviour``, given seconds since ``start_ns``): 500s, 429s, resets, or
    ``SILENT`` (the request holds its slot until the target is closed). The fake-time twin of
    ``loadlab.testing.hostile``."""

    name = "api"
    op_names: tuple[str, ...] = ("get",)
    fd_exhausted = False
    stray = 0

    def __init__(
        self,
        clock: FakeClock,
        behaviour: Behaviour,
        *,
        start_ns: int = 0,
        slots: int = 4,
        service_ms: int = 20,
    ) -> None:
        self._clock = clock
        self._start_ns = start_ns
        self._behaviour = behaviour
        self._slots = slots
        self._service_ns = service_ms * NS_PER_MS
        self._queue: deque[tuple[int, int, int]] = deque()
        self._serving: list[tuple[int, int, int]] = []
        self._active = 0
        self._sink: CompletionSink | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink

    def submit(self, op: int, intended_ns: int) -> None:
        self._queue.append((op, intended_ns, self._clock.now_ns()))
        if self._active < self._slots:
            self._active += 1
            task = asyncio.ensure_future(self._serve())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        assert self._sink is not None
        while self._queue:
            item = self._queue.popleft()
            op, intended_ns, sent_ns = item
            outcome = self._behaviour((self._clock.now_ns() - self._start_ns) / NS_PER_S)
            self._serving.append(item)
            if outcome is SILENT:
                await asyncio.Event().wait()  # held until the target is closed
            await self._clock.sleep_until(self._clock.now_ns() + self._service_ns)
            self._serving.remove(item)
            assert outcome is not None
            self._sink.complete(op, outcome, intended_ns, sent_ns, self._clock.now_ns())
        self._active -= 1

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._serving)

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        return [(op, intended) for op, intended, _ in [*self._serving, *self._queue]]

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self._clock, self, deadline_ns)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
