"""The namespace controller's part the sim plays: purge a deleted namespace after a delay.

See ``loadlab.sim.storage.namespaces`` for what is faithful and what is simplified.
"""

from __future__ import annotations

import asyncio
import contextlib

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.storage.store import Store

# Not from a reference: objects deleted per event-loop turn while a namespace is purged, so a
# namespace of 50,000 pods cannot stall the sim's other requests for long.
PURGE_BATCH = 500


class NamespaceReaper:
    """The namespace controller's part the sim plays: one bounded task per terminating
    namespace that waits ``delay_s``, then purges it in batches."""

    def __init__(self, store: Store, clock: Clock, delay_s: float) -> None:
        self._store = store
        self._clock = clock
        self._delay_ns = int(delay_s * NS_PER_S)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def pending(self) -> int:
        """Namespaces still waiting to be purged."""
        return len(self._tasks)

    def schedule(self, name: str) -> None:
        if name in self._tasks:
            return  # already on its way out
        task = asyncio.ensure_future(self._purge(name))
        self._tasks[name] = task
        task.add_done_callback(lambda _: self._tasks.pop(name, None))

    async def _purge(self, name: str) -> None:
        await self._clock.sleep_until(self._clock.now_ns() + self._delay_ns)
        while True:
            if not self._store.purge_namespace(name, PURGE_BATCH):
                return
            await asyncio.sleep(0)  # let other requests run between batches

    async def close(self) -> None:
        """Cancel the purges still waiting (the sim is stopping)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
