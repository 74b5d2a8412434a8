"""Small helpers shared by the sim tests.

- ``run(clock, aw)``: ``asyncio.run`` ``aw`` on an autojumping ``FakeClock``.
- ``req(user, verb, ...)``: the ``RequestAttributes`` of a request.
- ``FREE_COST``: a cost config in which every request is served at once.
- ``MERGE``: headers of a JSON merge patch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from loadlab.clock import FakeClock
from loadlab.sim.overload.cost import RequestAttributes

T = TypeVar("T")

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
