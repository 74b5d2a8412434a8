"""Small helpers shared by the sim tests.

- ``until(cond)``: let the event loop work until ``cond()`` holds (bounded).
- ``run(clock, aw)``: ``asyncio.run`` ``aw`` on an autojumping ``FakeClock``.
- ``req(user, verb, ...)``: the ``RequestAttributes`` of a request.
- ``FREE_COST``: a cost config in which every request is served at once.
- ``MERGE``: headers of a JSON merge patch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loadlab.clock import FakeClock
from loadlab.sim.overload.cost import RequestAttributes

T = TypeVar("T")

WAIT_S = 5.0  # bound on every wait for a condition
_POLL_S = 0.005

MERGE = {"Content-Type": "application/merge-patch+json"}
FREE_COST: dict[str, float] = {
    "get_hold_s": 0,
    "cache_object_s": 0,
    "etcd_object_s": 0,
    "etcd_commit_s": 0,
    "etcd_get_s": 0,
    "watcher_hold_s": 0,
}
"""``overload.cost`` overrides that make every request's service time zero."""


async def until(cond: Callable[[], bool], *, timeout_s: float = WAIT_S) -> None:
    """Let the event loop work until ``cond()`` holds, for a condition no event announces.

    Bounded in rounds (each a short real sleep: it waits on I/O, never on a schedule).
    """
    for _ in range(int(timeout_s / _POLL_S)):
        if cond():
            return
        await asyncio.sleep(_POLL_S)
    if not cond():
        raise AssertionError("condition never became true")


def run(clock: FakeClock, aw: Awaitable[T]) -> T:
    """``asyncio.run`` ``aw`` with ``clock`` jumping to the next deadline whenever all wait."""

    async def main() -> T:
        return await clock.run(aw)

    return asyncio.run(main())


def req(
    user: str,
    verb: str = "get",
    resource: str = "pods",
    *,
    namespace: str | None = None,
    groups: tuple[str, ...] = (),
    long_running: bool = False,
) -> RequestAttributes:
    """A request of ``user`` (no subresource, no name)."""
    return RequestAttributes(
        user=user,
        groups=groups,
        verb=verb,
        resource=resource,
        subresource=None,
        namespace=namespace,
        name=None,
        long_running=long_running,
    )
