"""The HTTP target: a mix of operations sent to one base URL over aiohttp, on a lean path.

Shape: ``connections`` worker coroutines share one ``ClientSession`` (its connector capped at the
same number, so each worker in effect owns a keep-alive connection) and pull ``(op, intended)``
pairs from one deque. ``submit`` appends and wakes an idle worker: no task or closure per request.
The deque is the client-side backlog; ``in_flight`` is queued plus active. URLs, bodies and headers
are rendered once, up front.

Honest counts: every request recorded is exactly one request the server saw. aiohttp would send an
idempotent request a second time when a reused keep-alive connection turns out closed (RFC 9112
9.3.1 allows it; aiohttp has no switch for it), so a middleware turns that failure into one the
retry loop lets through (``never_resend``; client middlewares need aiohttp >= 3.12, and cost one
small wrapper per request inside aiohttp). Bodies are read in chunks and dropped, never kept,
and a body over ``max_body_bytes`` ends the request as TOO_LARGE on a connection that is closed.
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
from loadlab.targets.base import FD_ERRNOS, CompletionSink, Outcome, wait_until_idle

DEFAULT_TIMEOUT_S = 10.0
"""For direct use (tests, benches): a dead server ends a test in seconds. Runs from a profile pass
``api.timeout_s``, 60 s by default like kube-apiserver's --request-timeout, so the client does not
give up before the server would."""
DEFAULT_MAX_RETRY_AFTER_S = 10.0
"""A chosen cap, not a Kubernetes number: APF's Retry-After starts at 1 s and may grow to 32 s
(docs/control-plane-model.md, "Retry-After"); a connection held longer than this would sit out
most of a load step instead of measuring it."""
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Comfortably above the largest answer a profile asks for: a LIST page of 500 pods (the API's
``limit``) at ~10 KiB of JSON each is ~5 MB. 256 connections x 8 MiB bound what bodies can cost
(they are never kept: read in chunks and dropped); unbounded, 50 MB bodies grew RSS to 4.5 GB."""
PLAIN_HTTP_CHECK_TIMEOUT_S = 1.0
"""How long the probe's plain-HTTP check after a stalled TLS handshake may take: one request to a
server that just accepted a connection, far more than a loopback or LAN round trip needs."""
GO_TLS_PORT_ANSWER = b"Client sent an HTTP request to an HTTPS server."
"""The body Go's net/http (so kube-apiserver) sends with a 400 to plain HTTP on its TLS port."""
PLAIN_HTTP_CHECK_READ_BYTES = 512
"""Enough for a status line, a few headers and Go's one-line 400 body, which come in one write."""


class NotResent(Exception):
    """A request failed on the wire where aiohttp would have sent it again. Deliberately neither an
    ``aiohttp.ClientError`` nor an ``OSError``: aiohttp's retry loop passes it straight through."""


async def never_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A client middleware: runs once per attempt, inside aiohttp's retry loop (client.py
    ``retry_persistent_connection``, which catches ``ClientOSError`` and ``ServerDisconnectedError``
    for idempotent methods and sends again on a new connection)."""
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise  # connecting failed, nothing was sent: aiohttp never resends these
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise NotResent(str(exc)) from exc


async def read_body(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """Read and return the body; None, with the connection closed rather than reused, when it is
    over ``max_bytes`` (by Content-Length up front, else once that much has arrived).

    For clients that use the answer (agents decode it); ``discard_body`` is the load path's.
    Bounded: each chunk is at least one byte, and the session's timeout bounds the time.
    """
    length = resp.content_length
    if length is not None and length > max_bytes:
        resp.close()
        return None
    content, body = resp.content, bytearray()
    while chunk := await content.readany():
        body += chunk
        if len(body) > max_bytes:
            resp.close()
            return None
    return bytes(body)


async def discard_body(resp: aiohttp.ClientResponse, max_bytes: int) -> bool:
    """Read the body and drop it; False, with the connection closed rather than reused, when it
    is over ``max_bytes`` (by Content-Length up front, else once that much has arrived).

    Bounded: each chunk is at least one byte, and the session's total timeout bounds the time.
    """
    length = resp.content_length
    if length is not None and length > max_bytes:
        resp.close()
        return False
    content, seen = resp.content, 0
    while chunk := await content.readany():
        seen += len(chunk)
        if seen > max_bytes:
            resp.close()
            return False
    return True


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
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Clock | None = None,
        name: str = "api",
    ) -> None:
        if not operations:
            raise ValueError("an HTTP target needs at least one operation")
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections}")
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, got {max_body_bytes}")
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
        self._max_body_bytes = max_body_bytes
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._queue: deque[tuple[int, int]] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._active = 0
        self._sending: list[tuple[int, int] | None] = [None] * connections
        """Per worker, the ``(op, intended_ns)`` it is sending now, or None."""
        self.fd_exhausted = False
        """Set (and never cleared) when a connect failed with EMFILE/ENFILE."""
        self.stray = 0
        """Always 0: on HTTP/1.1 a response belongs to the request sent on its connection."""
        self.last_os_error: OSError | None = None
        """The last socket-level error behind a CONN_ERROR: why connections fail."""
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
            middlewares=(never_resend,),
        )
        self._workers = [
            asyncio.ensure_future(self._work(self._session, sink, slot))
            for slot in range(self._connections)
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

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        sending = [item for item in self._sending if item is not None]
        return [*sending, *self._queue]

    async def _work(self, session: aiohttp.ClientSession, sink: CompletionSink, slot: int) -> None:
        clock, queue, loop = self._clock, self._queue, asyncio.get_running_loop()
        sending = self._sending
        while True:
            if not queue:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            item = queue.popleft()
            op, intended_ns = item
            sending[slot] = item
            self._active += 1
            sent_ns = clock.now_ns()
            try:
                outcome, hold_ns = await self._send(session, op)
            except asyncio.CancelledError:
                sending[slot] = None
                self._active -= 1
                sink.complete(op, Outcome.TIMEOUT, intended_ns, sent_ns, clock.now_ns())
                raise
            sending[slot] = None
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
                if not await discard_body(resp, self._max_body_bytes):
                    return Outcome.TOO_LARGE, 0
                status = resp.status
                retry_after = resp.headers.get("Retry-After") if status == 429 else None
        except TimeoutError:
            return Outcome.TIMEOUT, 0
        except aiohttp.ClientConnectorError as exc:
            self._note_os_error(exc.os_error)
            return Outcome.CONN_ERROR, 0
        except aiohttp.ClientResponseError:
            return Outcome.MALFORMED, 0  # not HTTP: bad status line, bad headers
        except OSError as exc:  # includes aiohttp's ClientOSError
            self._note_os_error(exc)
            return Outcome.CONN_ERROR, 0
        except NotResent as exc:
            if isinstance(exc.__cause__, OSError):
                self._note_os_error(exc.__cause__)
            return Outcome.CONN_ERROR, 0
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            return Outcome.CONN_ERROR, 0
        except Exception:
            # Anything else aiohttp raises on a strange answer must not kill this worker (its
            # connection would be lost to the pool for the rest of the run).
            return Outcome.MALFORMED, 0
        hold_ns = 0
        if self._honour_retry_after and status == 429:
            hold_ns = retry_hold_ns(retry_after, self._max_retry_after_ns)
        return outcome_of_status(status), hold_ns

    def _note_os_error(self, exc: OSError) -> None:
        self.last_os_error = exc
        if exc.errno in FD_ERRNOS:
            self.fd_exhausted = True

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


async def probe_http(
    base_url: str, timeout_s: float, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> None:
    """One GET of ``base_url``: any HTTP status passes; no answer or a non-HTTP answer raises.

    The body is read up to ``max_body_bytes`` and dropped (a larger one still is an HTTP answer).
    A wrong scheme gets its own message: https:// against plain HTTP (a failed or stalled TLS
    handshake) and http:// against a Go TLS port (its 400 "HTTP request to an HTTPS server").
    """
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    https = URL(base_url).scheme == "https"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as s,
            s.get(base_url, allow_redirects=False) as resp,
        ):
            head = b""
            if resp.status == 400 and not https:
                with contextlib.suppress(asyncio.IncompleteReadError):
                    head = await resp.content.readexactly(len(GO_TLS_PORT_ANSWER))
            if head == GO_TLS_PORT_ANSWER:
                resp.close()  # the scheme is wrong: the rest of the answer does not matter
            else:
                await discard_body(resp, max_body_bytes)
    except TimeoutError:
        if https and await _speaks_plain_http(base_url):
            raise TargetMisbehaving(
                _not_tls(base_url, "no TLS handshake, but plain HTTP works")
            ) from None
        raise TargetUnreachable(
            f"{base_url} did not answer within {timeout_s:g} s: check --api and the server's load"
        ) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise TargetMisbehaving(
            f"{base_url} speaks TLS, but its certificate was not accepted "
            f"({exc.certificate_error}): check the CA and the host name in --api"
        ) from None
    except aiohttp.ClientSSLError as exc:
        reason = getattr(exc.os_error, "reason", None) or exc.os_error
        raise TargetMisbehaving(_not_tls(base_url, f"TLS handshake failed: {reason}")) from None
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
    if head == GO_TLS_PORT_ANSWER:
        raise TargetMisbehaving(
            f"{base_url} is a TLS port (it answered 400 {GO_TLS_PORT_ANSWER.decode()!r}): "
            "is the scheme right? http vs https"
        )


def _not_tls(base_url: str, what: str) -> str:
    return f"{base_url} does not speak TLS ({what}): is the scheme right? http vs https"


async def _speaks_plain_http(base_url: str) -> bool:
    """Whether ``base_url``'s host and port answer a plain-HTTP request with plain HTTP: asked
    only after a TLS handshake there stalled, to tell a wrong scheme from a slow server. A slow
    Go TLS server answers it too, but with its 400 for plain HTTP on a TLS port: that is no."""
    url = URL(base_url)
    if url.host is None or url.port is None:
        return False
    request = f"HEAD / HTTP/1.0\r\nHost: {url.host}\r\n\r\n".encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(PLAIN_HTTP_CHECK_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(url.host, url.port)
            writer.write(request)
            answer = await reader.read(PLAIN_HTTP_CHECK_READ_BYTES)
            return answer.startswith(b"HTTP/") and GO_TLS_PORT_ANSWER not in answer
    except (TimeoutError, OSError):
        return False
    finally:
        if writer is not None:
            writer.close()
