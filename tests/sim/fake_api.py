"""A tiny Kubernetes API on 127.0.0.1 (aiohttp.web) for informer and cluster DNS tests.

``FakeApi`` serves LIST with pages and WATCH streams of Services and EndpointSlices, and can
refuse, throttle or answer 410 Gone on demand; ``run_with_fake_api(body)`` runs a test body
against a started one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from loadlab.sim.k8s.objects import JsonObj

SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"


class FakeApi:
    """A minimal Kubernetes API over real HTTP: LIST (paged) and WATCH of a few collections."""

    def __init__(self, page_size: int = 500) -> None:
        self.collections: dict[str, dict[tuple[str, str], JsonObj]] = {SERVICES: {}, SLICES: {}}
        self.rv = 1
        self.page_size = page_size
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.refuse_watches = 0
        """Answer this many next watches with 429 (no Retry-After)."""
        self.throttle_lists = 0
        """Answer this many next LISTs with 429 and Retry-After: 0."""
        self.gone_next_watch = False
        """Answer the next watch with an ERROR event carrying a 410 Status."""
        self._watchers: dict[str, list[asyncio.Queue[JsonObj | None]]] = {}
        self._log: list[
            tuple[int, str, JsonObj]
        ] = []  # (rv, path, event): replayed to late watches
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        for path in self.collections:
            app.router.add_get(path, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Go away: end every watch stream and stop listening (the port then refuses)."""
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def put(self, path: str, obj: JsonObj) -> None:
        self.rv += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.rv)
        key = (str(meta.get("namespace", "default")), str(meta["name"]))
        kind = "MODIFIED" if key in self.collections[path] else "ADDED"
        self.collections[path][key] = obj
        self._notify(path, {"type": kind, "object": obj})

    def delete(self, path: str, namespace: str, name: str) -> None:
        self.rv += 1
        obj = self.collections[path].pop((namespace, name))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._notify(path, {"type": "DELETED", "object": obj})

    def _notify(self, path: str, event: JsonObj) -> None:
        self._log.append((self.rv, path, event))
        for queue in self._watchers.get(path, []):
            queue.put_nowait(event)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        params = dict(request.query)
        self.requests.append((path, params))
        if params.get("watch") in ("1", "true"):
            return await self._watch(request, path)
        if self.throttle_lists > 0:
            self.throttle_lists -= 1
            return web.Response(status=429, headers={"Retry-After": "0"})
        items = sorted(self.collections[path].items())
        start = int(params.get("continue") or 0)
        limit = int(params.get("limit") or 0) or len(items)
        page = [obj for _, obj in items[start : start + limit]]
        meta: JsonObj = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return web.json_response({"kind": "List", "metadata": meta, "items": page})

    async def _watch(self, request: web.Request, path: str) -> web.StreamResponse:
        if self.refuse_watches > 0:
            self.refuse_watches -= 1
            return web.Response(status=429)
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        if self.gone_next_watch:
            self.gone_next_watch = False
            status = {"kind": "Status", "code": 410, "reason": "Expired"}
            await resp.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return resp
        queue: asyncio.Queue[JsonObj | None] = asyncio.Queue()
        since = int(request.query.get("resourceVersion") or 0)
        for rv, event_path, event in self._log:
            if rv > since and event_path == path:
                queue.put_nowait(event)
        self._watchers.setdefault(path, []).append(queue)
        bookmark = {"metadata": {"resourceVersion": str(self.rv)}}
        queue.put_nowait({"type": "BOOKMARK", "object": bookmark})
        try:
            while (pending := await queue.get()) is not None:
                await resp.write(json.dumps(pending).encode() + b"\n")
        finally:
            self._watchers[path].remove(queue)
        return resp


def run_with_fake_api(
    body: Callable[[FakeApi], Awaitable[None]], api: FakeApi | None = None
) -> None:
    """``asyncio.run`` ``body`` against ``api`` (a new ``FakeApi`` if None), started and stopped."""

    async def main() -> None:
        fake = api or FakeApi()
        await fake.start()
        try:
            await body(fake)
        finally:
            await fake.stop()

    asyncio.run(main())
