"""The overload model the sim API server calls: estimate, admit, serve, and crash on OOM.

Usage by the server, per request::

    est = model.estimate(attrs, objects_scanned=..., response_bytes=..., from_cache=...,
                         watchers=...)
    try:
        async with model.admit(attrs, est):   # may raise Rejected (429) or OutOfMemory (crash)
            await model.serve(est)            # the service time, on the injected clock
            ... do the store operation, respond ...
    except Rejected as r: 429 with Retry-After: r.retry_after_s

With APF on (default) admission is ``apf.FairQueueing``; off, it is the max-inflight limits
(read-only 400, mutating 200; long-running requests are not counted, as in kube-apiserver).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.k8s.objects import RESOURCE_TYPES
from loadlab.sim.overload.apf import FairQueueing, Rejected, Ticket
from loadlab.sim.overload.cost import RequestAttributes, WorkEstimate, estimate_work
from loadlab.sim.overload.flowschema import flow_schema_of
from loadlab.sim.overload.memory import MemoryAccount, OutOfMemory, Reservation
from loadlab.sim.overload.parameters import OverloadConfig
from loadlab.sim.promtext import REQUEST_DURATION_BUCKETS_S, PromRegistry

# etcd3 store operations (k8s.io/apiserver pkg/storage/etcd3/store.go): a patch or an update is
# a GuaranteedUpdate, recorded as "update".
_ETCD_OPERATIONS = {
    "get": "get",
    "list": "list",
    "create": "create",
    "update": "update",
    "patch": "update",
    "delete": "delete",
}

# The etcd metrics' ``type`` label of a request's resource (``ResourceType.group_resource``).
_GROUP_RESOURCE = {rt.plural: rt.group_resource for rt in RESOURCE_TYPES}


def _request_task() -> asyncio.Task[Any] | None:
    """The task serving the current request; None outside an event loop (unit tests)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


__all__ = [
    "OutOfMemory",
    "OverloadModel",
    "Rejected",
    "RequestAttributes",
    "WorkEstimate",
]


class _MaxInflight:
    """Without APF: fixed limits, immediate 429 beyond (docs/control-plane-model.md)."""

    def __init__(self, config: OverloadConfig) -> None:
        self._limits = {
            "readOnly": config.max_requests_inflight,
            "mutating": config.max_mutating_inflight,
        }
        self._retry_after_s = config.no_apf_retry_after_s
        self.in_flight = {"readOnly": 0, "mutating": 0}

    def acquire(self, kind: str) -> None:
        if self.in_flight[kind] >= self._limits[kind]:
            raise Rejected(self._retry_after_s, "concurrency-limit", "")
        self.in_flight[kind] += 1

    def release(self, kind: str) -> None:
        self.in_flight[kind] = max(0, self.in_flight[kind] - 1)

    def reset(self) -> None:
        self.in_flight = {"readOnly": 0, "mutating": 0}


class _Admission:
    """What one admitted request holds; released once (after serve() for a watch)."""

    def __init__(self, kind: str, ticket: Ticket | None, counted: bool, generation: int) -> None:
        self.kind = kind
        self.ticket = ticket
        self.counted = counted  # counted against max-inflight (APF off, not long-running)
        self.generation = generation
        self.memory: Reservation | None = None
        self.released = False


class OverloadModel:
    """Admission, service time and memory of the sim API server (see module docstring)."""

    def __init__(self, config: OverloadConfig, clock: Clock, metrics: PromRegistry) -> None:
        self.config = config
        self._clock = clock
        self.metrics = metrics
        self._apf = FairQueueing(config, clock, metrics)
        self._max_inflight = _MaxInflight(config)
        self.memory = MemoryAccount(config.memory_limit_bytes)
        self._generation = 0
        self._by_task: dict[asyncio.Task[Any], _Admission] = {}
        self._inflight = metrics.gauge(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per "
            "request kind in last second.",
            ("request_kind",),
        )
        self._memory_gauge = metrics.gauge(
            "loadlab_sim_memory_bytes",
            "Memory the sim API server holds: baseline plus in-flight LIST responses.",
        )
        self._restarts = metrics.counter(
            "loadlab_sim_restarts_total", "Times the sim API server crashed (out of memory)."
        )
        self.event_loop_lag = metrics.gauge(
            "loadlab_sim_event_loop_lag_seconds",
            "How late the sim's event loop runs a timer (set by the server).",
        )
        self._etcd = metrics.histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            ("operation", "type"),
            REQUEST_DURATION_BUCKETS_S,
        )
        self._in_flight_requests = {"readOnly": 0, "mutating": 0}
        # Per request task: its APF queue wait (for the SLI histogram) and, when it reads or
        # writes etcd rather than the watch cache, the (operation, type) of that etcd request.
        # Weak keys: a request that ends without being observed (a crash) leaves nothing behind.
        self._queue_wait_ns: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self._etcd_request: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[str, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._publish()

    # -- the contract --------------------------------------------------------------------------

    def classify(self, attrs: RequestAttributes) -> tuple[str, str]:
        """(priority level, flow id)."""
        return self._apf.classify(attrs)

    def estimate(
        self,
        attrs: RequestAttributes,
        *,
        objects_scanned: int,
        response_bytes: int,
        from_cache: bool,
        watchers: int,
    ) -> WorkEstimate:
        """Seats, hold time and memory of a request, before it runs.

        ``objects_scanned`` is what APF counts (see ``cost.count_list_objects``); objects
        returned cost nothing extra: docs/control-plane-model.md costs each one scanned.
        The estimate carries the request's priority level and flow for ``admit``.
        """
        priority = self.classify(attrs)
        level = self._apf.levels[priority[0]]
        est = estimate_work(
            attrs,
            objects_scanned=objects_scanned,
            response_bytes=response_bytes,
            from_cache=from_cache,
            watchers=watchers,
            level_nominal_seats=level.nominal_seats,
            cfg=self.config.cost,
            response_memory_factor=self.config.response_memory_factor,
        )
        task = _request_task()
        operation = _ETCD_OPERATIONS.get(attrs.verb)
        if task is not None and operation is not None and not from_cache:
            etcd_type = _GROUP_RESOURCE.get(attrs.resource, attrs.resource)
            self._etcd_request[task] = (operation, etcd_type)
        return dataclasses.replace(est, priority=priority)

    def admit(
        self, attrs: RequestAttributes, estimate: WorkEstimate
    ) -> AbstractAsyncContextManager[None]:
        """``async with``: wait for seats (or raise Rejected), reserve memory (or raise
        OutOfMemory), and on exit release both and dispatch waiting requests."""
        return self._admit(attrs, estimate)

    async def serve(self, estimate: WorkEstimate) -> None:
        """Spend the service time by awaiting the clock; a watch then frees its seat."""
        await self._clock.sleep_until(self._clock.now_ns() + int(estimate.hold_s * NS_PER_S))
        task = asyncio.current_task()
        etcd = self._etcd_request.pop(task, None) if task is not None else None
        if etcd is not None:  # the model's service time is the sim's etcd round trip
            self._etcd.observe(estimate.hold_s, *etcd)
        admission = self._by_task.get(task) if task is not None else None
        if admission is not None and admission.ticket is not None and admission.kind == "watch":
            self._apf.release(admission.ticket)  # real APF: a watch's seat ends at init
            admission.ticket = None

    def observe_request(
        self,
        verb: str,
        resource: str,
        code: int | str,
        seconds: float,
        **labels: str,
    ) -> None:
        """apiserver_request_total, _duration_seconds and _sli_duration_seconds (the server
        calls this from the request's task, so the APF queue wait it had is left out of the
        SLI). ``labels``: group, version, subresource, scope, dry_run."""
        task = _request_task()
        waited_ns = self._queue_wait_ns.pop(task, 0) if task is not None else 0
        if task is not None:
            self._etcd_request.pop(task, None)
        self.metrics.observe_request(
            verb, resource, code, seconds, queue_wait_s=waited_ns / NS_PER_S, **labels
        )

    def set_baseline_memory(self, nbytes: int) -> None:
        """Memory for the stored objects (the server's estimate); counted against the limit."""
        self.memory.set_baseline(nbytes)
        self._publish()

    def reset(self) -> None:
        """After a simulated restart: queues emptied (waiters get Rejected), seats and memory
        freed; counters kept."""
        self._generation += 1
        self._apf.reset(self.config.retry_after_min_s)
        self._max_inflight.reset()
        self.memory.reset()
        self._by_task.clear()
        self._queue_wait_ns.clear()
        self._etcd_request.clear()
        self._in_flight_requests = {"readOnly": 0, "mutating": 0}
        self._publish()

    def snapshot(self) -> dict[str, Any]:
        """In-flight requests, per-level seats and queue lengths, memory (tests / debugging)."""
        return {
            "apf_enabled": self.config.apf_enabled,
            "in_flight": dict(self._in_flight_requests),
            "levels": {
                name: {
                    "executing_seats": level.executing_seats,
                    "executing_requests": level.executing_requests,
                    "queued": level.queued,
                    "nominal_seats": level.nominal_seats,
                    "retry_after_s": level.retry_after.retry_after_s,
                }
                for name, level in self._apf.levels.items()
            },
            "memory_in_use_bytes": self.memory.in_use_bytes,
            "memory_in_flight_bytes": self.memory.in_flight_bytes,
            "memory_limit_bytes": self.memory.limit_bytes,
            "restarts": int(self._restarts.get()),
        }

    # -- internals -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _admit(self, attrs: RequestAttributes, estimate: WorkEstimate) -> AsyncIterator[None]:
        admission = await self._acquire(attrs, estimate)
        task = asyncio.current_task()
        try:
            try:
                admission.memory = self.memory.reserve(estimate.memory_bytes)
            except OutOfMemory:
                self._restarts.inc()
                raise
            finally:
                self._publish()
            if task is not None:
                self._by_task[task] = admission
            yield
        finally:
            if task is not None:
                self._by_task.pop(task, None)
            self._release(admission)

    async def _acquire(self, attrs: RequestAttributes, estimate: WorkEstimate) -> _Admission:
        kind = "mutating" if attrs.is_mutating else "readOnly"
        watch = attrs.long_running or attrs.verb == "watch"
        if self.config.apf_enabled:
            level, flow = estimate.priority or self.classify(attrs)
            queued_ns = self._clock.now_ns()
            task = asyncio.current_task()
            try:
                schema = flow_schema_of(attrs, level)
                ticket = await self._apf.acquire(level, flow, estimate.seats, schema)
            finally:
                if task is not None:
                    self._queue_wait_ns[task] = self._clock.now_ns() - queued_ns
            admission = _Admission("watch" if watch else kind, ticket, False, self._generation)
        else:
            if not watch:  # kube-apiserver: long-running requests bypass max-inflight
                self._max_inflight.acquire(kind)
            admission = _Admission("watch" if watch else kind, None, not watch, self._generation)
        if not watch:
            self._in_flight_requests[kind] += 1
        self._publish()
        return admission

    def _release(self, admission: _Admission) -> None:
        if admission.released or admission.generation != self._generation:
            return
        admission.released = True
        if admission.memory is not None:
            self.memory.release(admission.memory)
        if admission.ticket is not None:
            self._apf.release(admission.ticket)
        if admission.kind != "watch":
            self._in_flight_requests[admission.kind] -= 1
            if admission.counted:
                self._max_inflight.release(admission.kind)
        self._publish()

    def _publish(self) -> None:
        for kind, n in self._in_flight_requests.items():
            self._inflight.set(n, kind)
        self._memory_gauge.set(self.memory.in_use_bytes)
