"""Run the sim's controllers as background tasks: list, watch, reconcile, until stopped.

One task per watched resource (pods, services, endpointslices, nodes) feeds the controllers'
copies from the store's watch, as informers do; one task reconciles whenever an event arrived
(never on a timer, so an idle cluster costs nothing); one starts bound pods when their time
comes. A watch the store ends (the API server's simulated restart rebuilds its watch cache, or
the controller fell behind) is resumed from the last version seen after a pause, or relisted
when the store no longer reaches that version, as a reflector does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.controllers.endpointslices import EndpointSliceController
from loadlab.sim.controllers.pods import PodLifecycle
from loadlab.sim.k8s.objects import ENDPOINTSLICES, NODES, PODS, SERVICES, JsonObj, ResourceType
from loadlab.sim.storage.store import Expired, Store

# client-go reflector: a watch that ends is restarted after a back-off starting at 800 ms.
REWATCH_PAUSE_S = 0.8
_CHANGES = frozenset({"ADDED", "MODIFIED", "DELETED"})
WATCHED: tuple[ResourceType, ...] = (NODES, PODS, SERVICES, ENDPOINTSLICES)


class ControlLoops:
    """The scheduler, the kubelets' pod start-up and the EndpointSlice controller of one sim."""

    def __init__(self, store: Store, clock: Clock, *, pod_start_s: float, first_pod_ip: int):
        self._store = store
        self._clock = clock
        self.endpoint_slices = EndpointSliceController(store)
        self.pods = PodLifecycle(store, clock, start_s=pod_start_s, first_ip=first_pod_ip)
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """List everything, reconcile once, then follow the store in background tasks."""
        versions = {rtype: self._relist(rtype) for rtype in WATCHED}
        self._reconcile()
        jobs: list[Coroutine[None, None, None]] = [
            *(self._follow(rtype, rv) for rtype, rv in versions.items()),
            self._reconcile_on_change(),
            self.pods.run_starts(),
        ]
        self._tasks = [asyncio.ensure_future(job) for job in jobs]

    async def stop(self) -> None:
        """Cancel every task and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _relist(self, rtype: ResourceType) -> int:
        """Replace every copy of ``rtype`` with the store's objects; returns their version."""
        listed = self._store.list_objects(rtype, None)
        if rtype is not NODES:
            self.endpoint_slices.replace(rtype, listed.items)
        if rtype in (NODES, PODS):
            self.pods.replace(rtype, listed.items)
        return listed.resource_version

    def _observe(self, rtype: ResourceType, event: str, obj: JsonObj) -> None:
        if rtype is not NODES:
            self.endpoint_slices.observe(rtype, event, obj)
        if rtype in (NODES, PODS):
            self.pods.observe(rtype, event, obj)

    async def _follow(self, rtype: ResourceType, rv: int) -> None:
        while True:
            try:
                watcher = self._store.watch(rtype, None, resource_version=str(rv))
            except Expired:
                rv = self._relist(rtype)
                self._kick.set()
                continue
            try:
                while (event := await watcher.queue.get()) is not None:
                    if event.type in _CHANGES:
                        self._observe(rtype, event.type, event.obj)
                        rv = event.rv
                        self._kick.set()
            finally:
                self._store.unwatch(watcher)
            pause_ns = int(REWATCH_PAUSE_S * NS_PER_S)
            await self._clock.sleep_until(self._clock.now_ns() + pause_ns)

    async def _reconcile_on_change(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            self._reconcile()
            if self.pods.backlog:  # more pods to try: after the loop's other tasks had a turn
                self._kick.set()
            await asyncio.sleep(0)

    def _reconcile(self) -> None:
        self.pods.schedule()
        self.endpoint_slices.sync()
