"""The HTTP target: a mix of operations sent to one base URL over aiohttp, on a lean path.

Shape: ``connections`` worker coroutines share one ``ClientSession`` (its connector capped at the
same number, so each worker in effect owns a keep-alive connection) and pull ``(op, intended)``
pairs from one deque. ``submit`` appends and wakes an idle worker: no task or closure per request.
The deque is the client-side backlog; ``in_flight`` is queued plus active. URLs, bodies and headers
are rendered once, up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.errors import TargetMisbehaving, TargetUnreachable
from loadlab.targets.base import CompletionSink, Outcome, wait_until_idle

DEFAULT_TIMEOUT_S = 10.0
"""For direct use (tests, benches): a dead server ends a test in seconds. Runs from a profile pass
``api.timeout_s``, 60 s by default like kube-apiserver's --request-timeout, so the client does not
give up before the server would."""
DEFAULT_MAX_RETRY_AFTER_S = 10.0
"""A chosen cap, not a Kubernetes number: APF's Retry-After starts at 1 s and may grow to 32 s
(reference/control-plane-model.md); a connection held longer than this would sit out most of a
load step instead of measuring it."""


@dataclass(frozen=True)
class HttpOperation:
    """One kind of request in the mix."""

    name: str
    """Metric key, e.g. ``get-lease``."""
    method: str
    path: str
    """Appended to the base URL; ``{i}`` is replaced when ``spread`` > 1."""
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    weight: float = 1.0
    spread: int = 1
    """When > 1, ``{i}`` in path and body takes the values 0..spread-1, round-robin."""


@dataclass(frozen=True)
class _Rendered:
    method: str
    urls: tuple[URL, ...]
    bodies: tuple[bytes | None, ...]
    headers: Mapping[str, str]


def _render(base_url: str, op: HttpOperation, bearer_token: str | None) -> _Rendered:
    if op.spread < 1:
        raise ValueError(f"operation {op.name}: spread must be at least 1, got {op.spread}")
    base = base_url.rstrip("/")
    urls: list[URL] = []
    bodies: list[bytes | None] = []
    for i in range(op.spread):
        path = op.path.replace("{i}", str(i)) if op.spread > 1 else op.path
        urls.append(URL(base + path, encoded=True))
        body = op.body
        if body is not None and op.spread > 1:
            body = body.replace(b"{i}", str(i).encode())
        bodies.append(body)
    headers = {"Accept": "application/json"}
    if op.body is not None:
        headers["Content-Type"] = "application/json"
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    headers.update(op.headers)
    return _Rendered(op.method.upper(), tuple(urls), tuple(bodies), headers)


def outcome_of_status(status: int) -> Outcome:
    """2xx OK, 429 THROTTLED, other 4xx CLIENT_ERROR, 5xx SERVER_ERROR.

    1xx/3xx (redirects are not followed) count as CLIENT_ERROR: the mix asked for the wrong thing.
    """
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.THROTTLED
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.CLIENT_ERROR


def retry_after_s(value: str | None) -> float | None:
    """Delta-seconds of a ``Retry-After`` header (the API server sends integers); else None."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: not sent by the API server, not worth parsing here
    return seconds if seconds >= 0 else None


def retry_hold_ns(retry_after: str | None, max_hold_ns: int) -> int:
    """How long a connection waits after a 429 with this ``Retry-After``: its delta-seconds,
    capped at ``max_hold_ns``; 0 when the header is absent, zero or unreadable."""
    seconds = retry_after_s(retry_after)
    if not seconds:
        return 0
    return min(int(seconds * NS_PER_S), max_hold_ns)


class HttpTarget:
    """Sends ``operations`` to ``base_url`` through ``connections`` keep-alive workers."""

    def __init__(
        self,
        base_url: str,
        operations: Sequence[HttpOperation],
        *,
        connections: int = 64,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        honour_retry_after: bool = False,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        bearer_token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        name: str = "api",
    ) -> None:
        if not operations:
            raise ValueError("an HTTP target needs at least one operation")
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections}")
        self.name = name
        self.op_names: tuple[str, ...] = tuple(op.name for op in operations)
        self.weights: tuple[float, ...] = tuple(op.weight for op in operations)
        self.base_url = base_url
        self._ops = tuple(_render(base_url, op, bearer_token) for op in operations)
        self._next_variant = [0] * len(operations)
        self._connections = connections
        self._timeout_s = timeout_s
        self._honour_retry_after = honour_retry_after
        self._max_retry_after_ns = int(max_retry_after_s * NS_PER_S)
        self._ssl_context = ssl_context
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._queue: deque[tuple[int, int]] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._active = 0
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._sink: CompletionSink | None = None

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            limit_per_host=0,
            ssl=self._ssl_context if self._ssl_context is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            raise_for_status=False,
        )
        self._workers = [
            asyncio.ensure_future(self._work(self._session, sink)) for _ in range(self._connections)
        ]

    def submit(self, op: int, intended_ns: int) -> None:
        self._queue.append((op, intended_ns))
        idle = self._idle
        while idle:
            waiter = idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                return

    @property
    def in_flight(self) -> int:
        return len(self._queue) + self._active

    async def _work(self, session: aiohttp.ClientSession, sink: CompletionSink) -> None:
        clock, queue, loop = self._clock, self._queue, asyncio.get_running_loop()
        while True:
            if not queue:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            op, intended_ns = queue.popleft()
            self._active += 1
            sent_ns = clock.now_ns()
            try:
                outcome, hold_ns = await self._send(session, op)
            except asyncio.CancelledError:
                self._active -= 1
                sink.complete(op, Outcome.TIMEOUT, intended_ns, sent_ns, clock.now_ns())
                raise
            self._active -= 1
            done_ns = clock.now_ns()
            sink.complete(op, outcome, intended_ns, sent_ns, done_ns)
            if hold_ns:
                # Honour Retry-After: this connection waits before its next request.
                await clock.sleep_until(done_ns + hold_ns)

    async def _send(self, session: aiohttp.ClientSession, op: int) -> tuple[Outcome, int]:
        rendered = self._ops[op]
        variant = self._next_variant[op]
        self._next_variant[op] = variant + 1 if variant + 1 < len(rendered.urls) else 0
        try:
            async with session.request(
                rendered.method,
                rendered.urls[variant],
                data=rendered.bodies[variant],
                headers=rendered.headers,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After") if status == 429 else None
        except TimeoutError:
            return Outcome.TIMEOUT, 0
        except aiohttp.ClientResponseError:
            return Outcome.MALFORMED, 0  # not HTTP: bad status line, bad headers
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
            return Outcome.CONN_ERROR, 0
        except Exception:
            # Anything else aiohttp raises on a strange answer must not kill this worker (its
            # connection would be lost to the pool for the rest of the run).
            return Outcome.MALFORMED, 0
        hold_ns = 0
        if self._honour_retry_after and status == 429:
            hold_ns = retry_hold_ns(retry_after, self._max_retry_after_ns)
        return outcome_of_status(status), hold_ns

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self._clock, self, deadline_ns)
        self._expire_queue()

    def _expire_queue(self) -> None:
        if self._sink is None:
            return
        now_ns = self._clock.now_ns()
        while self._queue:
            op, intended_ns = self._queue.popleft()
            self._sink.complete(op, Outcome.TIMEOUT, intended_ns, now_ns, now_ns)

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        self._expire_queue()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def probe_http(base_url: str, timeout_s: float) -> None:
    """One GET of ``base_url``: any HTTP status passes; no answer or a non-HTTP answer raises."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as s,
            s.get(base_url, allow_redirects=False) as resp,
        ):
            await resp.read()
    except TimeoutError:
        raise TargetUnreachable(
            f"{base_url} did not answer within {timeout_s:g} s: check --api and the server's load"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise TargetUnreachable(
            f"nothing answers at {base_url} ({exc.os_error.strerror or exc}): "
            "check --api and that the server is running"
        ) from None
    except (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError) as exc:
        raise TargetMisbehaving(
            f"{base_url} answered, but not with HTTP ({type(exc).__name__}): "
            "check that --api names the API server's port and scheme (http or https)"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TargetUnreachable(
            f"cannot reach {base_url} ({exc}): check --api and that the server is running"
        ) from None
