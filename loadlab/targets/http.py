"""The HTTP target: a mix of operations sent to one base URL over aiohttp, on a lean path.

Shape: ``connections`` worker coroutines share one ``ClientSession`` (its connector capped at the
same number, so each worker in effect owns a keep-alive connection) and pull ``(op, intended)``
pairs from one deque. ``submit`` appends and wakes an idle worker: no task or closure per request.
The deque is the client-side backlog; ``in_flight`` is queued plus active. URLs, bodies and headers
are rendered once, up front, by the rules this module also gives the lean target (``fast_http``):
``operation_variants``, ``request_headers`` and ``check_target_arguments``, so both send the same.

Honest counts: every request recorded is exactly one request the server saw (``never_resend``, in
``http_wire``). Bodies are read in chunks and dropped, never kept, and a body over
``max_body_bytes`` ends the request as TOO_LARGE on a connection that is closed.

Real clusters: given a ``ClusterAccess`` (``loadlab.targets.cluster``), the connector verifies TLS
with its context and each operation's ``Authorization`` is its credentials' answer for the
operation's ``user``. A credentials refresh bumps their ``generation``; the next request sees one
int differ and renders the headers again.
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
from loadlab.targets.base import FD_ERRNOS, CompletionSink, Outcome, wait_until_idle
from loadlab.targets.cluster import ClusterAccess, check_base_url
from loadlab.targets.credentials import Credentials, SimIdentity

# Re-exported: callers (launch, agents' test driver, tests) have imported these from here.
from loadlab.targets.http_probe import probe_http as probe_http
from loadlab.targets.http_wire import DEFAULT_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES
from loadlab.targets.http_wire import NotResent, discard_body, never_resend
from loadlab.targets.http_wire import outcome_of_status as outcome_of_status
from loadlab.targets.http_wire import retry_after_s as retry_after_s
from loadlab.targets.http_wire import retry_hold_ns as retry_hold_ns

DEFAULT_TIMEOUT_S = 10.0
"""For direct use (tests, benches): a dead server ends a test in seconds. Runs from a profile pass
``api.timeout_s``, 60 s by default like kube-apiserver's --request-timeout, so the client does not
give up before the server would."""
DEFAULT_MAX_RETRY_AFTER_S = 10.0
"""A chosen cap, not a Kubernetes number: APF's Retry-After starts at 1 s and may grow to 32 s
(docs/control-plane-model.md, "Retry-After"); a connection held longer than this would sit out
most of a load step instead of measuring it."""


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
    user: str | None = None
    """Who the request is made as: its ``Authorization`` is the target's credentials' answer for
    this user (``Bearer <user>`` by default, the embedded sim's convention); None: the
    kubeconfig's own identity, or no header (then ``headers`` may carry one)."""


@dataclass(frozen=True)
class _Rendered:
    method: str
    urls: tuple[URL, ...]
    bodies: tuple[bytes | None, ...]
    headers: Mapping[str, str]


def operation_variants(op: HttpOperation) -> tuple[tuple[str, bytes | None], ...]:
    """``(path, body)`` of each of ``op``'s ``spread`` variants, in round-robin order, with
    ``{i}`` replaced: how every HTTP client of the mix expands an operation."""
    if op.spread < 1:
        raise ValueError(f"operation {op.name}: spread must be at least 1, got {op.spread}")
    if op.spread == 1:
        return ((op.path, op.body),)
    return tuple(
        (
            op.path.replace("{i}", str(i)),
            None if op.body is None else op.body.replace(b"{i}", str(i).encode()),
        )
        for i in range(op.spread)
    )


def request_headers(
    op: HttpOperation, bearer_token: str | None, credentials: Credentials
) -> dict[str, str]:
    """The headers every HTTP client of the mix sends for ``op``, in this order: Accept,
    Content-Type with a body, the target's ``bearer_token``, the operation's own headers, then the
    credentials' ``Authorization`` for the operation's ``user`` (it wins over both before)."""
    headers = {"Accept": "application/json"}
    if op.body is not None:
        headers["Content-Type"] = "application/json"
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    headers.update(op.headers)
    authorization = credentials.authorization(op.user)
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


def check_target_arguments(
    base_url: str,
    operations: Sequence[HttpOperation],
    *,
    connections: int,
    max_body_bytes: int,
    access: ClusterAccess | None,
) -> None:
    """ValueError for what no HTTP target of the mix can be built from."""
    if not operations:
        raise ValueError("an HTTP target needs at least one operation")
    if connections < 1:
        raise ValueError(f"connections must be at least 1, got {connections}")
    if max_body_bytes < 0:
        raise ValueError(f"max_body_bytes must not be negative, got {max_body_bytes}")
    check_base_url(base_url, access)


def _render(
    base_url: str, op: HttpOperation, bearer_token: str | None, credentials: Credentials
) -> _Rendered:
    variants = operation_variants(op)
    base = base_url.rstrip("/")
    return _Rendered(
        op.method.upper(),
        tuple(URL(base + path, encoded=True) for path, _ in variants),
        tuple(body for _, body in variants),
        request_headers(op, bearer_token, credentials),
    )


class HttpTarget:
    """Sends ``operations`` to ``base_url`` through ``connections`` keep-alive workers.

    With ``access``, ``base_url`` must be its server; its TLS context replaces ``ssl_context``.
    """

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
        access: ClusterAccess | None = None,
    ) -> None:
        check_target_arguments(
            base_url,
            operations,
            connections=connections,
            max_body_bytes=max_body_bytes,
            access=access,
        )
        self.name = name
        self.op_names: tuple[str, ...] = tuple(op.name for op in operations)
        self.weights: tuple[float, ...] = tuple(op.weight for op in operations)
        self.base_url = base_url
        self._operations = tuple(operations)
        self._bearer_token = bearer_token
        self._credentials: Credentials = access.credentials if access else SimIdentity()
        self._generation = self._credentials.generation
        self._ops = self._render_ops()
        self._next_variant = [0] * len(operations)
        self._connections = connections
        self._timeout_s = timeout_s
        self._honour_retry_after = honour_retry_after
        self._max_retry_after_ns = int(max_retry_after_s * NS_PER_S)
        self._ssl_context = access.ssl if access and access.ssl is not None else ssl_context
        self._server_hostname = access.tls_server_name if access else None
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

    def _render_ops(self) -> tuple[_Rendered, ...]:
        return tuple(
            _render(self.base_url, op, self._bearer_token, self._credentials)
            for op in self._operations
        )

    async def _send(self, session: aiohttp.ClientSession, op: int) -> tuple[Outcome, int]:
        if self._credentials.generation != self._generation:  # a token was renewed
            self._generation = self._credentials.generation
            self._ops = self._render_ops()
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
                server_hostname=self._server_hostname,
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
