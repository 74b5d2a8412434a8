"""The simulated kube-apiserver: an aiohttp server in front of the store and the overload model.

It routes every request (discovery, health, /metrics, resources), enforces the request timeout
(60 s -> 504), and owns the lifecycle: when the overload model says the server ran out of memory
it "crashes" — drops every connection including watch streams, refuses connections for
``overload.restart_s``, then listens again on the same port with a reset model and a rebuilt
watch cache, so every client's old resourceVersion gets 410 and the relist storm follows.

Optionally it serves HTTPS and asks for bearer tokens (``authn``), and it can be degraded on
demand: every API request waits ``degrade.extra_latency_s`` more and /readyz fails, so a test
can watch a client notice an API server that got slow mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import Awaitable

from aiohttp import web

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.apiserver import discovery, openapi
from loadlab.sim.apiserver.authn import (
    SELF_SUBJECT_REVIEW_PATH,
    BearerTokens,
    Identity,
    identity_of,
    is_open_path,
    self_subject_review,
    unauthorized,
)
from loadlab.sim.apiserver.instrument import RequestLabels, ServerGauges, request_labels
from loadlab.sim.apiserver.routing import DiscoveryPath, RequestInfo, RouteError, resolve
from loadlab.sim.apiserver.verbs import ResourceVerbs, json_response, status_response
from loadlab.sim.config import SimConfig
from loadlab.sim.overload.cost import RequestAttributes
from loadlab.sim.overload.model import OutOfMemory, OverloadModel, Rejected
from loadlab.sim.promtext import CONTENT_TYPE, METRICS_PATH, PromRegistry
from loadlab.sim.storage.store import Store
from loadlab.sim.storage.watch import bookmark_event, encode_json

DEGRADED_CHECK = "loadlab-degraded"
"""The readiness check that fails while the server is degraded (``/readyz`` lists it)."""
_READY_PATHS = frozenset({"/readyz", f"/readyz/{DEGRADED_CHECK}"})
# Not from a reference: stop() has already ended every watch, so requests still running get 1 s
# to finish before aiohttp drops their connections (its own default waits 60 s).
SHUTDOWN_GRACE_S = 1.0


def attributes_of(identity: Identity, info: RequestInfo) -> RequestAttributes:
    """What APF, the cost model and the verbs know of a request: who, and what it asks."""
    return RequestAttributes(
        user=identity.user,
        groups=identity.groups,
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
        tokens: BearerTokens | None = None,
        ssl_context: ssl.SSLContext | None = None,
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
        self.tokens = tokens
        """The token table; None trusts the bearer token as the user name (``authn``)."""
        self._ssl = ssl_context
        self.degraded = False
        """While set, API requests wait ``degrade.extra_latency_s`` more and /readyz fails."""
        self._openapi_since = datetime.datetime.now(datetime.UTC)
        """When the OpenAPI documents were made: their Last-Modified."""
        self._gauges = ServerGauges(self.registry)
        self._auth_attempts = self.registry.counter(
            "authentication_attempts", "Counter of authenticated attempts.", ("result",)
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "http" if self._ssl is None else "https"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

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
        self._site = web.TCPSite(
            self._runner, self._host, port, ssl_context=self._ssl, reuse_address=True
        )
        await self._site.start()
        self.listening = True

    async def stop(self) -> None:
        """End every watch, close every connection, stop listening."""
        for task in (self._housekeeping, self._crash_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._verbs.reaper.close()
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
        started_ns = self._clock.now_ns()
        identity = identity_of(request, self.tokens)
        if self.tokens is not None:
            self._auth_attempts.inc("success" if identity is not None else "failure")
        if identity is None:
            self._observe_unauthorized(request, started_ns)
            return unauthorized()
        if self.degraded and not is_open_path(request.path) and request.path != METRICS_PATH:
            extra_ns = int(self.config.degrade.extra_latency_s * NS_PER_S)
            await self._clock.sleep_until(started_ns + extra_ns)
        if request.path == SELF_SUBJECT_REVIEW_PATH:
            if request.method != "POST":
                return status_response(405, "MethodNotAllowed", "only create is supported")
            return self_subject_review(identity)
        if openapi.is_openapi_path(request.path):
            return openapi.respond(request, self._openapi_since)
        try:
            target = resolve(request.method, request.path, request.query)
        except RouteError as exc:
            return status_response(exc.code, exc.reason, str(exc))
        if target is None:
            return self._non_resource(request)
        if isinstance(target, DiscoveryPath):
            return self._discovery(target)
        return await self._resource(target, attributes_of(identity, target), request, started_ns)

    def _observe_unauthorized(self, request: web.BaseRequest, started_ns: int) -> None:
        """Count a 401 in apiserver_request_total, labelled as far as the path tells."""
        labels = RequestLabels(verb=request.method, resource="")
        with contextlib.suppress(RouteError):
            target = resolve(request.method, request.path, request.query)
            if isinstance(target, RequestInfo):
                labels = self._labels(target, request)
        seconds = (self._clock.now_ns() - started_ns) / NS_PER_S
        self.model.observe_request(labels.verb, labels.resource, 401, seconds, **labels.extra())

    @staticmethod
    def _labels(info: RequestInfo, request: web.BaseRequest) -> RequestLabels:
        return request_labels(info, request.headers, request.query.getall("dryRun", []))

    async def _resource(
        self, info: RequestInfo, attrs: RequestAttributes, request: web.BaseRequest, started_ns: int
    ) -> web.StreamResponse:
        code = 500
        labels = self._labels(info, request)
        watch = info.verb == "watch"
        if watch:
            self._gauges.long_running(labels, +1)
        try:
            if watch:
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
        except asyncio.CancelledError:
            if watch and self.listening:
                # The client closed its watch: a stream that began answered 200 (the code
                # kube-apiserver records), one still waiting to begin is not counted.
                code = 200 if request.writer.output_size > 0 else 0
            raise
        finally:
            if watch:
                self._gauges.long_running(labels, -1)
            if code:
                seconds = (self._clock.now_ns() - started_ns) / NS_PER_S
                self.model.observe_request(
                    labels.verb, labels.resource, code, seconds, **labels.extra()
                )

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
        if self.degraded and path in _READY_PATHS:
            # kube-apiserver lists the failing check, and withholds why to an unverbose caller.
            body = f"[+]ping ok\n[-]{DEGRADED_CHECK} failed: reason withheld\nreadyz check failed\n"
            return web.Response(status=500, text=body, content_type="text/plain")
        if path == "/version":
            return json_response(encode_json(discovery.version_info()))
        if is_open_path(path):
            return web.Response(text="ok", content_type="text/plain")
        if path == METRICS_PATH:
            self._gauges.refresh(self.store)
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
                METRICS_PATH,
                openapi.V2_PATH,
                openapi.V3_PATH,
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
