"""The informer: client-go reflector rules, on a real HTTP fake API on loopback and a FakeClock.

``FakeApi`` (a tiny Kubernetes API on 127.0.0.1 with aiohttp.web: LIST with pages, WATCH streams,
410 Gone, refusals) is also used by test_cluster_dns.py until the real sim API is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web

from loadlab.clock import NS_PER_S, FakeClock, MonotonicClock
from loadlab.sim.k8s_watch import (
    ApiError,
    Backoff,
    BackoffPolicy,
    HttpApiSource,
    Informer,
    ObjectList,
    WatchEvent,
)

Obj = dict[str, Any]
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
FAST_BACKOFF = BackoffPolicy(initial_s=0.01, cap_s=0.05)  # real-time tests: keep waits tiny
WAIT_S = 5.0  # bound on every real-time wait in these tests


class FakeApi:
    """A minimal Kubernetes API over real HTTP: LIST (paged) and WATCH of a few collections."""

    def __init__(self, page_size: int = 500) -> None:
        self.collections: dict[str, dict[tuple[str, str], Obj]] = {SERVICES: {}, SLICES: {}}
        self.rv = 1
        self.page_size = page_size
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.refuse_watches = 0
        """Answer this many next watches with 429 (no Retry-After)."""
        self.throttle_lists = 0
        """Answer this many next LISTs with 429 and Retry-After: 0."""
        self.gone_next_watch = False
        """Answer the next watch with an ERROR event carrying a 410 Status."""
        self._watchers: dict[str, list[asyncio.Queue[Obj | None]]] = {}
        self._log: list[tuple[int, str, Obj]] = []  # (rv, path, event): replayed to late watches
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

    def put(self, path: str, obj: Obj) -> None:
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

    def _notify(self, path: str, event: Obj) -> None:
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
        meta: Obj = {"resourceVersion": str(self.rv)}
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
        queue: asyncio.Queue[Obj | None] = asyncio.Queue()
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


class RecordingHandler:
    """Keeps the informer's view of the collection and wakes waiters on every change."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.calls: list[str] = []
        self._changed = asyncio.Event()

    def on_replace(self, items: Sequence[Obj]) -> None:
        self.objects = {obj["metadata"]["name"]: obj for obj in items}
        self.calls.append("replace")
        self._changed.set()

    def on_event(self, event_type: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if event_type == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self.calls.append(event_type)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def svc(name: str, ip: str = "192.0.2.10") -> Obj:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip}}


async def poll(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for a condition that no event announces, yielding to the loop."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110 - the informer's counters announce nothing
            await asyncio.sleep(0.005)


def run_with_api(body: Callable[[FakeApi], Awaitable[None]], api: FakeApi | None = None) -> None:
    async def main() -> None:
        fake = api or FakeApi()
        await fake.start()
        try:
            await body(fake)
        finally:
            await fake.stop()

    asyncio.run(main())


@contextlib.asynccontextmanager
async def running(informer: Informer, source: HttpApiSource) -> AsyncIterator[None]:
    task = asyncio.create_task(informer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


@pytest.mark.realtime
def test_informer_lists_from_the_watch_cache_then_streams_changes() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("kubernetes"))
        source = HttpApiSource(api.url, token="t0ken")
        handler = RecordingHandler()
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock())
        async with running(informer, source):
            async with asyncio.timeout(WAIT_S):
                await informer.wait_synced()
            assert set(handler.objects) == {"kubernetes"}
            await poll(lambda: informer.watches == 1)
            api.put(SERVICES, svc("web"))
            api.delete(SERVICES, "default", "kubernetes")
            await handler.until(lambda: set(handler.objects) == {"web"})
        assert handler.calls == ["replace", "ADDED", "DELETED"]
        assert api.requests[0] == (SERVICES, {"resourceVersion": "0", "limit": "500"})
        watch_params = api.requests[1][1]
        assert watch_params["allowWatchBookmarks"] == "true"
        assert 300 <= int(watch_params["timeoutSeconds"]) < 600
        assert informer.resource_version == str(api.rv)

    run_with_api(body)


@pytest.mark.realtime
def test_list_follows_continue_tokens_across_pages() -> None:
    async def body(api: FakeApi) -> None:
        for i in range(1201):
            api.put(SERVICES, svc(f"s{i}"))
        source = HttpApiSource(api.url)
        try:
            listed = await source.list(SERVICES, resource_version="0")
        finally:
            await source.close()
        assert len(listed.items) == 1201
        assert listed.resource_version == str(api.rv)
        assert [p.get("continue") for _, p in api.requests] == [None, "500", "1000"]

    run_with_api(body)


@pytest.mark.realtime
def test_throttled_list_is_retried_after_retry_after_without_the_informer_failing() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        api.throttle_lists = 3
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock())
        async with running(informer, source):
            async with asyncio.timeout(WAIT_S):
                await informer.wait_synced()
        assert informer.failures == 0
        assert set(handler.objects) == {"a"}
        assert sum(1 for _, p in api.requests if "watch" not in p) == 4

    run_with_api(body)


@pytest.mark.realtime
def test_gone_error_event_relists_with_a_consistent_read() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        api.gone_next_watch = True
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await poll(lambda: informer.lists == 2 and informer.watches == 2)
        lists = [p for _, p in api.requests if "watch" not in p]
        assert [p["resourceVersion"] for p in lists] == ["0", ""]
        assert handler.calls == ["replace", "replace"]

    run_with_api(body)


@pytest.mark.realtime
def test_refused_watch_backs_off_and_rewatches_without_relisting() -> None:
    async def body(api: FakeApi) -> None:
        api.refuse_watches = 3
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await poll(lambda: informer.watches == 1)
            assert informer.broken_since_ns is None
        assert informer.lists == 1
        assert informer.failures == 3
        assert [p.get("watch") for _, p in api.requests] == [None, "1", "1", "1", "1"]

    run_with_api(body)


@pytest.mark.realtime
def test_api_going_away_marks_the_watch_broken_until_it_returns() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await poll(lambda: informer.watches == 1)
            await api.stop()
            await poll(lambda: informer.broken_since_ns is not None)
            assert informer.synced  # a broken watch does not unsync: the cache is kept
            assert set(handler.objects) == {"a"}
            await api.start()  # same port
            api.put(SERVICES, svc("b"))
            await poll(lambda: informer.broken_since_ns is None and informer.watches >= 2)
            await handler.until(lambda: "b" in handler.objects)
        assert informer.lists == 1  # came back by re-watching, not relisting

    run_with_api(body)


class ScriptedSource:
    """An ApiSource that never answers: every LIST fails as if the API were down."""

    def __init__(self) -> None:
        self.attempts_ns: list[int] = []
        self.clock: FakeClock | None = None

    async def list(self, path: str, *, resource_version: str) -> ObjectList:
        assert self.clock is not None
        self.attempts_ns.append(self.clock.now_ns())
        raise ApiError(None, "connection refused")

    def watch(
        self, path: str, *, resource_version: str, timeout_s: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        raise AssertionError("never gets that far")


def test_unreachable_api_is_retried_with_reflector_backoff_and_reported_broken() -> None:
    clock = FakeClock(start_ns=7 * NS_PER_S)
    source = ScriptedSource()
    source.clock = clock
    informer = Informer(source, SERVICES, RecordingHandler(), clock=clock, rng=random.Random(1))

    async def main() -> None:
        task = asyncio.create_task(informer.run())
        await clock.sleep_until(clock.now_ns() + 120 * NS_PER_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(clock.run(main()))

    gaps_s = [
        (b - a) / NS_PER_S for a, b in zip(source.attempts_ns, source.attempts_ns[1:], strict=False)
    ]
    bases_s = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0]
    for gap_s, base_s in zip(gaps_s, bases_s, strict=False):
        assert base_s <= gap_s < 2 * base_s
    assert len(gaps_s) >= 5
    assert informer.broken_since_ns == 7 * NS_PER_S
    assert not informer.synced


@pytest.mark.parametrize(
    ("quiet_s", "expected_base_s"),
    [
        pytest.param(119.0, 3.2, id="within-2-min-keeps-doubling"),
        pytest.param(121.0, 0.8, id="reset"),
    ],
)
def test_backoff_resets_after_two_minutes_without_failures(
    quiet_s: float, expected_base_s: float
) -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), random.Random(0))
    assert backoff.next_delay_s(0) == 0.8
    assert backoff.next_delay_s(1 * NS_PER_S) == 1.6

    delay_s = backoff.next_delay_s(int((1 + quiet_s) * NS_PER_S))

    assert delay_s == pytest.approx(expected_base_s)


def test_backoff_is_capped_at_thirty_seconds() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), random.Random(0))
    delays_s = [backoff.next_delay_s(i * NS_PER_S) for i in range(12)]
    assert delays_s[-1] == 30.0
    assert max(delays_s) == 30.0
