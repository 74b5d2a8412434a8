"""A bounded wait for real I/O: poll a condition that no event announces (a loopback round trip
landing, a server's counter moving). Never for a schedule: a test that controls time uses a
``FakeClock`` instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

WAIT_S = 5.0
"""The default bound: a loopback round trip takes well under a millisecond, so a wait this long
has found a bug, not a slow machine."""
POLL_S = 0.005
"""Between looks at the condition: short beside any bound, long enough not to spin a core."""


async def wait_for(
    condition: Callable[[], bool], what: str = "the condition", *, timeout_s: float = WAIT_S
) -> None:
    """Let the event loop work until ``condition()`` holds; AssertionError naming ``what`` if it
    still does not after ``timeout_s`` (bounded in rounds as well as in time)."""
    for _ in range(max(1, round(timeout_s / POLL_S))):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    if not condition():
        raise AssertionError(f"gave up waiting for {what} after {timeout_s:g} s")
