"""A small informer: LIST then WATCH one resource of a Kubernetes API, as client-go's reflector.

The wire is a seam (``ApiSource``): ``HttpApiSource`` speaks real Kubernetes HTTP with aiohttp;
tests may hand in a scripted source. The ``Informer`` owns the reflector's rules
(docs/control-plane-model.md, "Reflector" and "REST client retries"):

- initial LIST with resourceVersion=0 (the watch cache), in pages of 500;
- then WATCH from the list's resourceVersion with bookmarks and a timeout drawn in [5, 10) min;
  a watch that ends cleanly is reopened at once;
- errors back off 0.8 s doubling to 30 s, each wait drawn in [d, 2d), reset after 2 min without
  a backoff; a failed or cut watch is reopened from the last resourceVersion without relisting;
- 410 Gone (as HTTP status or as an ERROR event) relists with resourceVersion="" (consistent read);
- a 429/5xx with Retry-After is retried by the HTTP source after that wait, up to 10 times, before
  the informer sees an error (client-go's rest client).

It tracks whether it has synced (first LIST delivered) and since when the API has been unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.sim.k8s.objects import JsonObj

HTTP_GONE = 410
LIST_PAGE_SIZE = 500  # client-go reflector: initial LIST pages of 500
MIN_WATCH_TIMEOUT_S = 300.0  # client-go reflector: watch timeout random in [5, 10) min
LIST_TIMEOUT_S = 60.0  # kube-apiserver --request-timeout 60s bounds a LIST anyway
CONNECT_TIMEOUT_S = 30.0  # client-go's dialer: 30 s connect timeout
RETRY_AFTER_ATTEMPTS = 10  # client-go: 429/5xx with Retry-After: wait that long, retry 10 times


@dataclass(frozen=True)
class ObjectList:
    """The result of a LIST: every object, and the resourceVersion to watch from."""

    items: tuple[JsonObj, ...]
    resource_version: str


@dataclass(frozen=True)
class StreamEvent:
    """One line of a watch stream."""

    type: str
    """ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""
    object: JsonObj


class ApiError(Exception):
    """A request to the API failed: ``status`` is the HTTP code, or None if it never answered."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiSource(Protocol):
    """Where an informer gets objects from (the seam tests may replace)."""

    async def list(self, path: str, *, resource_version: str) -> ObjectList:
        """LIST every object at ``path``; raise ``ApiError`` on failure."""
        ...

    def watch(
        self, path: str, *, resource_version: str, timeout_s: int
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """Open a WATCH: entering raises ``ApiError`` if refused; iterating yields events and
        raises ``ApiError`` if the stream is cut; a clean end of the stream ends the iteration."""
        ...


class HttpApiSource:
    """``ApiSource`` over real Kubernetes HTTP (JSON lists, newline-delimited watch events)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        clock: Clock | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        """Whom to trust for an https:// API (None: the system's CAs)."""
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=timeout, connector=connector
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(
        self, verb: str, path: str, params: dict[str, str], **kw: Any
    ) -> aiohttp.ClientResponse:
        """GET with client-go's rule: a 429/5xx carrying Retry-After is retried after that wait."""
        for attempt in range(RETRY_AFTER_ATTEMPTS + 1):
            try:
                resp = await self._client().get(self._base_url + path, params=params, **kw)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ApiError(None, f"{verb} {path}: {exc!r}") from exc
            if resp.status == 200:
                return resp
            resp.release()
            retry_after = resp.headers.get("Retry-After", "")
            retryable = resp.status == 429 or resp.status >= 500
            if not retryable or not retry_after.isdigit() or attempt == RETRY_AFTER_ATTEMPTS:
                raise ApiError(resp.status, f"{verb} {path}: HTTP {resp.status}")
            await self._clock.sleep_until(self._clock.now_ns() + int(retry_after) * NS_PER_S)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def list(self, path: str, *, resource_version: str) -> ObjectList:
        items: list[JsonObj] = []
        params = {"resourceVersion": resource_version, "limit": str(LIST_PAGE_SIZE)}
        timeout = aiohttp.ClientTimeout(total=LIST_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
        while True:
            resp = await self._get("LIST", path, params, timeout=timeout)
            try:
                body = await resp.json(content_type=None)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                raise ApiError(None, f"LIST {path}: {exc!r}") from exc
            finally:
                resp.release()
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return ObjectList(tuple(items), str(meta.get("resourceVersion") or ""))
            params = {"continue": str(token), "limit": str(LIST_PAGE_SIZE)}

    @contextlib.asynccontextmanager
    async def watch(
        self, path: str, *, resource_version: str, timeout_s: int
    ) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        resp = await self._get("WATCH", path, params)
        events = _events(resp, path)
        try:
            yield events
        finally:
            await events.aclose()
            resp.release()


async def _events(resp: aiohttp.ClientResponse, path: str) -> AsyncGenerator[StreamEvent, None]:
    # Split on newlines by hand: aiohttp's readline caps line length, objects need not fit. Each
    # chunk is searched once and the lines it completes are cut off together, so a big object
    # in many chunks, or many events in one chunk, costs its size, not its size squared.
    buffer = bytearray()
    try:
        async for chunk in resp.content.iter_any():
            searched = len(buffer)
            buffer += chunk
            last = buffer.rfind(b"\n", searched)
            if last < 0:
                continue
            complete = bytes(buffer[:last])
            del buffer[: last + 1]
            for line in complete.split(b"\n"):
                if line.strip():
                    raw = json.loads(line)
                    yield StreamEvent(str(raw.get("type")), raw.get("object") or {})
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise ApiError(None, f"WATCH {path} cut: {exc!r}") from exc


class InformerHandler(Protocol):
    """Receives what an informer learns; called on the event loop, must not block."""

    def on_replace(self, items: Sequence[JsonObj]) -> None:
        """A LIST arrived: these are now all the objects."""
        ...

    def on_event(self, event_type: str, obj: JsonObj) -> None:
        """ADDED, MODIFIED or DELETED ``obj``."""
        ...


@dataclass(frozen=True)
class BackoffPolicy:
    """client-go reflector backoff (docs/control-plane-model.md, "Reflector")."""

    initial_s: float = 0.8  # 800 ms ...
    cap_s: float = 30.0  # ... doubling to 30 s
    reset_after_s: float = 120.0  # reset after 2 min healthy
    jitter: float = 1.0  # each wait in [d, 2d)


class Backoff:
    """Exponential backoff with jitter and reset, as client-go's exponentialBackoffManager."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._next_s = policy.initial_s
        self._last_ns: int | None = None

    def next_delay_s(self, now_ns: int) -> float:
        """How long to wait before the next try, given that one just failed at ``now_ns``."""
        policy = self._policy
        if self._last_ns is not None and now_ns - self._last_ns > policy.reset_after_s * NS_PER_S:
            self._next_s = policy.initial_s
        self._last_ns = now_ns
        base_s = self._next_s
        self._next_s = min(base_s * 2, policy.cap_s)
        return base_s * (1 + policy.jitter * self._rng.random())


class _Relist(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Informer:
    """LIST then WATCH ``path`` forever (until cancelled), feeding ``handler``.

    ``on_health_change`` is called whenever ``broken_since_ns`` switches between None and a time.
    """

    def __init__(
        self,
        source: ApiSource,
        path: str,
        handler: InformerHandler,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        backoff: BackoffPolicy | None = None,
        on_health_change: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._path = path
        self._handler = handler
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = Backoff(backoff or BackoffPolicy(), self._rng)
        self._synced = asyncio.Event()
        self._on_health_change = on_health_change
        self.resource_version = ""
        """The last resourceVersion seen (list, event or bookmark)."""
        self.broken_since_ns: int | None = None
        """When the API stopped answering (first failure since the last success), or None."""
        self.lists = 0
        """LISTs delivered (1 after the first sync; more after 410 Gone)."""
        self.watches = 0
        """Watches opened."""
        self.failures = 0
        """Failed LISTs and watches (each one backed off)."""

    @property
    def synced(self) -> bool:
        """True once the first LIST has been delivered (and for ever after, as client-go)."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def run(self) -> None:
        list_rv = "0"  # first LIST from the watch cache
        while True:
            try:
                listed = await self._source.list(self._path, resource_version=list_rv)
            except ApiError:
                await self._fail()
                continue
            self._healthy()
            self.lists += 1
            self.resource_version = listed.resource_version
            self._handler.on_replace(listed.items)
            self._synced.set()
            try:
                await self._watch_until_gone()
            except _Relist:
                list_rv = ""  # 410 Gone: a consistent read, as the reflector does
                await self._fail()

    async def _watch_until_gone(self) -> None:
        while True:
            timeout_s = int(MIN_WATCH_TIMEOUT_S * (1 + self._rng.random()))
            try:
                async with self._source.watch(
                    self._path, resource_version=self.resource_version, timeout_s=timeout_s
                ) as events:
                    self.watches += 1
                    self._healthy()
                    async for event in events:
                        self._apply(event)
            except ApiError as exc:
                if exc.status == HTTP_GONE:
                    raise _Relist from exc
                await self._fail()

    def _apply(self, event: StreamEvent) -> None:
        if event.type == "ERROR":
            code = event.object.get("code")
            if code == HTTP_GONE:
                raise _Relist
            raise ApiError(code if isinstance(code, int) else None, str(event.object))
        rv = (event.object.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if event.type in ("ADDED", "MODIFIED", "DELETED"):
            self._handler.on_event(event.type, event.object)

    def _healthy(self) -> None:
        if self.broken_since_ns is not None:
            self.broken_since_ns = None
            if self._on_health_change is not None:
                self._on_health_change()

    async def _fail(self) -> None:
        """A LIST or watch failed: count it, note since when the API is broken, back off."""
        now_ns = self._clock.now_ns()
        self.failures += 1
        if self.broken_since_ns is None:
            self.broken_since_ns = now_ns
            if self._on_health_change is not None:
                self._on_health_change()
        delay_s = self._backoff.next_delay_s(now_ns)
        await self._clock.sleep_until(now_ns + int(delay_s * NS_PER_S))
