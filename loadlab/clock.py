"""Time, injected: a ``Clock`` protocol, the real monotonic clock, and a fake one for tests.

Shared by the generator and the sim, which otherwise share nothing.

Everything that schedules sends or measures latency asks a ``Clock``; nothing calls
``time.monotonic`` or ``asyncio.sleep`` for a schedule directly. Tests hand in a ``FakeClock`` and
either advance it by hand or let it jump to the next deadline whenever every task is waiting on it
(trio's ``MockClock(autojump_threshold=0)`` is the model), so a 60-second ramp runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
US_PER_MS = 1_000.0
MIN_TIMER_S = 0.001  # libuv timer resolution (uv_now is in milliseconds)


class Clock(Protocol):
    """A source of monotonic time in integer nanoseconds, and a way to wait for a moment."""

    def now_ns(self) -> int:
        """The current time, monotonic, in nanoseconds from an arbitrary origin."""
        ...

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return at (or soon after) ``deadline_ns``; return at once if it has passed."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns`` and the event loop's timers."""

    fast_now_ns = staticmethod(time.monotonic_ns)
    """The same reading as ``now_ns``, as the builtin itself: a hot path that reads the clock
    once per request binds it (``now_ns_of``) and saves a Python frame each time."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, deadline_ns: int) -> None:
        delay_s = (deadline_ns - time.monotonic_ns()) / NS_PER_S
        if delay_s <= 0:
            # Still yield, so a schedule that is behind never starves other tasks.
            await asyncio.sleep(0)
            return
        # uvloop's timers have 1 ms resolution and fire a shorter one at once, so a loop
        # sleeping until the next send 0.3 ms away would spin at 100% CPU; wait at least 1 ms
        # (a send is then up to ~1 ms late, which the schedule lag reports).
        await asyncio.sleep(max(delay_s, MIN_TIMER_S))


def now_ns_of(clock: Clock) -> Callable[[], int]:
    """The cheapest callable that reads ``clock``: its ``fast_now_ns`` when it has one."""
    fast: Callable[[], int] | None = getattr(clock, "fast_now_ns", None)
    return fast if fast is not None else clock.now_ns


class FakeClock:
    """A clock that moves only when told to (``advance``) or, with ``autojump``, by itself.

    With autojump on, ``run(coro)`` runs ``coro`` beside a jumper task: whenever the event loop
    has had ``idle_rounds`` turns with nothing but clock sleepers left, time jumps to the earliest
    deadline. Tests therefore never sleep for real and stay deterministic.
    """

    def __init__(self, start_ns: int = 0, *, idle_rounds: int = 20) -> None:
        # idle_rounds: loop turns with nothing but sleepers before time jumps; 20 lets chains of
        # callbacks (a completion that submits, a sink that records) settle first.
        self._now_ns = start_ns
        self._idle_rounds = idle_rounds
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now_ns

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._seq), fut))
        await fut

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now_ns + int(seconds * NS_PER_S))

    @property
    def next_deadline_ns(self) -> int | None:
        """The earliest deadline anyone is waiting for, or None."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, delta_ns: int) -> None:
        """Move time forward by ``delta_ns`` and wake everyone whose deadline has come."""
        if delta_ns < 0:
            raise ValueError("a clock does not go backwards")
        self.advance_to(self._now_ns + delta_ns)

    def advance_to(self, t_ns: int) -> None:
        self._now_ns = max(self._now_ns, t_ns)
        while self._sleepers and self._sleepers[0][0] <= self._now_ns:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    async def _jumper(self) -> None:
        while True:
            for _ in range(self._idle_rounds):
                await asyncio.sleep(0)
            deadline = self.next_deadline_ns
            if deadline is not None:
                self.advance_to(deadline)

    async def run(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` with autojump: time leaps to the next deadline whenever all are waiting."""
        jumper = asyncio.ensure_future(self._jumper())
        try:
            return await aw
        finally:
            jumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jumper
