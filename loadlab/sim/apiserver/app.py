"""The simulated kube-apiserver: an aiohttp server in front of the store and the overload model.

It routes every request (discovery, health, /metrics, resources), enforces the request timeout
(60 s -> 504), and owns the lifecycle: when the overload model says the server ran out of memory
it "crashes" — drops every connection including watch streams, refuses connections for
``overload.restart_s``, then listens again on the same port with a reset model and a rebuilt
watch cache, so every client's old resourceVersion gets 410 and the relist storm follows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

from aiohttp import web

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.apiserver import discovery
from loadlab.sim.apiserver.routing import DiscoveryPath, RequestInfo, RouteError, resolve
from loadlab.sim.apiserver.verbs import ResourceVerbs, json_response, status_response
from loadlab.sim.config import SimConfig
from loadlab.sim.overload.cost import RequestAttributes
from loadlab.sim.overload.model import OutOfMemory, OverloadModel, Rejected
from loadlab.sim.promtext import CONTENT_TYPE, PromRegistry
from loadlab.sim.storage.store import Store
from loadlab.sim.storage.watch import bookmark_event, encode_json

_METRIC_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}
_HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
# Not from a reference: stop() has already ended every watch, so requests still running get 1 s
# to finish before aiohttp drops their connections (its own default waits 60 s).
SHUTDOWN_GRACE_S = 1.0


def attributes_of(request: web.BaseRequest, info: RequestInfo) -> RequestAttributes:
    """Who is asking: the bearer token is the user name; impersonation headers override it."""
    user = "system:anonymous"
    groups: list[str] = []
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    if token:
        user = token
        groups.append("system:authenticated")
        if user.startswith("system:node:"):
            groups.append("system:nodes")
    else:
        groups.append("system:unauthenticated")
    impersonated = request.headers.get("Impersonate-User")
    if impersonated:
        user = impersonated
        groups = ["system:authenticated"]
    groups.extend(request.headers.getall("Impersonate-Group", []))
    return RequestAttributes(
        user=user,
        groups=tuple(groups),
        verb=info.verb,
        resource=info.rtype.plural,
        subresource=info.subresource,
        namespace=info.namespace,
        name=info.name,
        long_running=info.verb == "watch",
    )


class SimApiServer:
    """One simulated API server process: start(), stop(), and a crash/restart cycle on OOM."""

    def __init__(
        self,
        config: SimConfig,
        store: Store,
        *,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = PromRegistry()
        self.model = OverloadModel(config.overload, clock, self.registry)
        self._clock = clock
        self._verbs = ResourceVerbs(store, self.model, config.api, clock)
        self._active: set[asyncio.Task[object]] = set()
        self._web: web.Server | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._host = config.host
        self._port = 0
        self._housekeeping: asyncio.Task[None] | None = None
        self._crash_task: asyncio.Task[None] | None = None
        self.restarts = 0
        """How many times this server crashed (out of memory) and came back."""
        self.listening = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; ``port`` tells which)."""
        self._host = host if host is not None else self.config.host
        self._web = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(self._web, shutdown_timeout=SHUTDOWN_GRACE_S)
        await self._runner.setup()
        await self._listen(self.config.api_port if port is None else port)
        self._port = int(self._runner.addresses[0][1])
        self.model.set_baseline_memory(self.store.approx_total_bytes())
        self._housekeeping = asyncio.ensure_future(self._housekeep())

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self._host, port, reuse_address=True)
        await self._site.start()
        self.listening = True

    async def stop(self) -> None:
        """End every watch, close every connection, stop listening."""
        for task in (self._housekeeping, self._crash_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for watcher in list(self.store.watchers()):
            watcher.close()
        self.listening = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def crash(self) -> None:
        """Simulate the API server dying (what an OOM does); it restarts after restart_s."""
        if self._crash_task is None or self._crash_task.done():
            self._crash_task = asyncio.ensure_future(self._crash_and_restart())
        self._drop_connections()

    def _drop_connections(self) -> None:
        if self._web is not None:
            for handler in self._web.connections:
                if handler.transport is not None:
                    handler.transport.abort()
        current = asyncio.current_task()
        for task in list(self._active):
            if task is not current:
                task.cancel()

    async def _crash_and_restart(self) -> None:
        self.restarts += 1
        self.listening = False
        if self._site is not None:
            site, self._site = self._site, None
            await site.stop()  # connections are refused from here on
        self._drop_connections()
        down_until_ns = self._clock.now_ns() + int(self.config.overload.restart_s * NS_PER_S)
        await self._clock.sleep_until(down_until_ns)
        self.model.reset()
        self.store.rebuild_watch_cache()
        await self._listen(self._port)

    async def _housekeep(self) -> None:
        """Every interval: measure event-loop lag, end timed-out watches, send bookmarks."""
        interval_ns = int(self.config.api.housekeeping_interval_s * NS_PER_S)
        while True:
            target_ns = self._clock.now_ns() + interval_ns
            await self._clock.sleep_until(target_ns)
            now_ns = self._clock.now_ns()
            self.model.event_loop_lag.set((now_ns - target_ns) / NS_PER_S)
            rv = self.store.resource_version
            for watcher in list(self.store.watchers()):
                if watcher.deadline_ns is not None and now_ns >= watcher.deadline_ns:
                    watcher.close()
                elif watcher.bookmark_every_ns and now_ns >= watcher.next_bookmark_ns:
                    watcher.offer(bookmark_event(watcher.rtype, rv))
                    watcher.next_bookmark_ns = now_ns + watcher.bookmark_every_ns
            self.model.set_baseline_memory(self.store.approx_total_bytes())

    # -- requests ----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            return await self._dispatch(request)
        finally:
            if task is not None:
                self._active.discard(task)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            target = resolve(request.method, request.path, request.query)
        except RouteError as exc:
            return status_response(exc.code, exc.reason, str(exc))
        if target is None:
            return self._non_resource(request)
        if isinstance(target, DiscoveryPath):
            return self._discovery(target)
        return await self._resource(request, target)

    async def _resource(self, request: web.BaseRequest, info: RequestInfo) -> web.StreamResponse:
        attrs = attributes_of(request, info)
        started_ns = self._clock.now_ns()
        code = 500
        try:
            if info.verb == "watch":
                resp = await self._verbs.watch(request, info, attrs)
            else:
                resp = await self._with_timeout(self._verbs.unary(request, info, attrs))
            code = resp.status
            return resp
        except Rejected as exc:
            code = 429
            return status_response(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                headers={"Retry-After": str(exc.retry_after_s)},
            )
        except OutOfMemory:
            code = 0
            self.crash()
            raise asyncio.CancelledError from None  # the process "died": no answer at all
        finally:
            if code:
                seconds = (self._clock.now_ns() - started_ns) / NS_PER_S
                verb = _METRIC_VERBS.get(info.verb, info.verb.upper())
                self.model.observe_request(verb, info.rtype.plural, code, seconds)

    async def _with_timeout(self, work: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        """--request-timeout 60 s -> 504 (docs/control-plane-model.md), on the injected clock."""
        task = asyncio.current_task()
        assert task is not None
        fired = False

        async def watchdog() -> None:
            nonlocal fired
            timeout_ns = int(self.config.overload.request_timeout_s * NS_PER_S)
            await self._clock.sleep_until(self._clock.now_ns() + timeout_ns)
            fired = True
            task.cancel()

        dog = asyncio.ensure_future(watchdog())
        try:
            return await work
        except asyncio.CancelledError:
            if fired and task.uncancel() == 0:
                return status_response(
                    504, "Timeout", "Timeout: request did not complete within the allotted timeout"
                )
            raise
        finally:
            dog.cancel()

    def _non_resource(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in _HEALTH_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(encode_json(discovery.version_info()))
        if path == "/metrics":
            return web.Response(
                body=self.registry.render().encode(),
                headers={"Content-Type": CONTENT_TYPE},
            )
        if path == "/":
            paths = [
                "/api",
                "/api/v1",
                "/apis",
                "/healthz",
                "/livez",
                "/metrics",
                "/readyz",
                "/version",
            ]
            return json_response(encode_json({"paths": paths}))
        return status_response(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )

    def _discovery(self, target: DiscoveryPath) -> web.StreamResponse:
        if target.legacy and target.version is None:
            body = discovery.api_versions(f"{self._host}:{self._port}")
        elif target.group is None:
            body = discovery.api_group_list()
        elif target.version is None:
            found = discovery.api_group(target.group)
            if found is None:
                return status_response(404, "NotFound", f"group {target.group} is not served")
            body = found
        else:
            resources = discovery.api_resource_list(target.group, target.version)
            if resources is None:
                return status_response(
                    404, "NotFound", "the server could not find the requested resource"
                )
            body = resources
        return json_response(encode_json(body))
