"""The lean HTTP target: the same mix as ``HttpTarget``, on bare ``asyncio.Protocol`` connections.

Why not aiohttp on the load's hot path: its per-request machinery (a task, futures, a response
object, header multidicts, the retry loop) costs ~83 us of client CPU per request, so the generator
saturated at ~0.08x the req/s of ``wrk -t1 -c64`` and measured itself instead of the server.

Shape: ``connections`` slots, each owning at most one keep-alive connection and one request at a
time, pull ``(op, intended_ns)`` pairs from one deque (the client-side backlog; ``in_flight`` is
queued plus active). Requests are whole byte strings rendered once per operation and ``spread``
variant. Responses are parsed by ``httptools`` (llhttp, the parser uvicorn uses); the next request
is written from the parser's message-complete callback, so a request costs no task, future or
coroutine, and one clock read serves as one request's done time and the next one's send time.
Connecting (rare: at first use and after a close) is the only step that runs as a task.

Honest counts, as ``HttpTarget``: a request is written once and never again (no resend on a
reused connection that turns out closed: it ends as CONN_ERROR); bodies are counted and dropped,
and a body over ``max_body_bytes`` ends as TOO_LARGE on a connection that is closed. A request
without an answer after ``timeout_s`` (a sweep every timeout/10, as ``DnsTarget``) ends as TIMEOUT
and its connection is closed; the slot reconnects for its next request. A second answer completed
in the same read as the first answers nothing loadlab sent (it never pipelines): it is counted in
``stray``, its connection is dropped and the request then in flight on it ends as MALFORMED.

Simplifications, on purpose: a body delimited by the server closing the connection (neither
Content-Length nor chunked) counts as complete when the close comes, so a truncated
``Connection: close`` answer counts as its status; a 1xx interim answer ends the request
(as CLIENT_ERROR, ``outcome_of_status``): loadlab sends no ``Expect``, so servers send none.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import NoReturn, cast
from urllib.parse import urlsplit

import httptools

from loadlab.clock import NS_PER_S, Clock, MonotonicClock, now_ns_of
from loadlab.targets.address import client_endpoint
from loadlab.targets.base import (
    FD_ERRNOS,
    CompleteFn,
    CompletionSink,
    Outcome,
    StepFn,
    bind_completion,
    sweep_timeouts,
    wait_until_idle,
)
from loadlab.targets.cluster import ClusterAccess, client_tls
from loadlab.targets.credentials import Credentials, SimIdentity
from loadlab.targets.http import (
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    HttpOperation,
    check_target_arguments,
    operation_variants,
    request_headers,
)
from loadlab.targets.http_wire import DEFAULT_MAX_BODY_BYTES, outcome_of_status, retry_hold_ns

USER_AGENT = "loadlab"
_OUTCOME_OF_STATUS = tuple(outcome_of_status(status) for status in range(1000))
"""``outcome_of_status`` of every status llhttp can parse (three digits), looked up per answer
instead of called."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Sent with ``Content-Length: 0`` when the operation has no body, as aiohttp does."""


class _Stop(Exception):
    """Raised from a parser callback to stop parsing a connection that was just dropped."""


def render_requests(
    base_url: str, op: HttpOperation, bearer_token: str | None, credentials: Credentials
) -> tuple[bytes, ...]:
    """Every ``spread`` variant of ``op`` as the bytes written to the socket: the headers and
    variants ``HttpTarget`` sends (``request_headers``, ``operation_variants``), after the ones
    aiohttp would add of its own (Host, User-Agent, Accept-Encoding)."""
    variants = operation_variants(op)
    parts = urlsplit(base_url.rstrip("/"))
    headers = {
        "Host": parts.netloc,
        "User-Agent": USER_AGENT,
        # aiohttp asks for these by default; asking alike keeps the server's work comparable.
        "Accept-Encoding": "gzip, deflate",
        **request_headers(op, bearer_token, credentials),
    }
    method = op.method.upper()
    fields = [*headers, *headers.values(), method]
    if any(ch in text for text in fields for ch in "\r\n\x00") or not method.isalpha():
        raise ValueError(f"operation {op.name}: a header or the method has a control character")
    head_lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests: list[bytes] = []
    for variant_path, body in variants:
        path = parts.path + variant_path
        if any(ch <= " " or ch == "\x7f" for ch in path):
            raise ValueError(f"operation {op.name}: path {path!r} has a space or control char")
        length = ""
        if body is not None or method in BODY_METHODS:
            length = f"Content-Length: {len(body or b'')}\r\n"
        head = f"{method} {path or '/'} HTTP/1.1\r\n{head_lines}{length}\r\n"
        requests.append(head.encode("latin-1") + (body or b""))
    return tuple(requests)


class _Wire(asyncio.Protocol):
    """One TCP connection of a slot. ``live`` turns False when the slot drops it: whatever the
    dropped connection still reports (a late ``connection_lost``) is ignored. ``answered``: an
    answer was completed in the read being parsed."""

    __slots__ = ("answered", "live", "parser", "slot", "transport")

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.live = True
        self.answered = False
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(slot)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport: cast, do not isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.live:
            return
        slot = self.slot
        if slot.op < 0:  # an answer to no request: the server is not speaking HTTP to us
            slot.target.stray += 1
            slot.drop()
            return
        self.answered = False
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, _Stop):
            if self.live:
                self.slot.fail(Outcome.MALFORMED)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.live:
            self.slot.lost(exc)


_NO_PARSER = httptools.HttpResponseParser(object())
"""A slot's parser before its first connection: never fed."""


class _Slot:
    """One keep-alive connection's worth of work: the request on it, and the parser's callbacks.

    ``op`` is -1 when no request is active (then the slot is idle, holding, or closed).
    """

    def __init__(self, target: FastHttpTarget, index: int) -> None:
        self.target = target
        self.index = index
        self.wire: _Wire | None = None
        self.parser = _NO_PARSER
        """The parser of ``wire``, whose callbacks this slot is (set with ``wire``)."""
        self.connecting: asyncio.Task[None] | None = None
        self.holding: asyncio.Task[None] | None = None
        self.op = -1
        self.intended_ns = 0
        self.sent_ns = 0
        self.request = b""
        self.status = 0
        self.body_bytes = 0
        self.eof_body = False
        self.retry_after: str | None = None
        self.max_body_bytes = target.max_body_bytes

    # -- sending ---------------------------------------------------------------------------------

    def start(self, op: int, intended_ns: int, sent_ns: int) -> None:
        target = self.target
        self.op, self.intended_ns, self.sent_ns = op, intended_ns, sent_ns
        self.status = self.body_bytes = 0
        target.active += 1
        if target.credentials.generation != target.generation:  # a token was renewed
            target.render()
        self.request = request = target.cycles[op]()
        wire = self.wire
        if wire is not None and wire.transport is not None and not wire.transport.is_closing():
            wire.transport.write(request)
        else:
            self.drop()  # a connection the server is closing: nothing was sent on it yet
            self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        target = self.target
        wire = _Wire(self)
        self.parser = wire.parser  # the slot has no other connection now (``start`` dropped it)
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: wire,
                target.host,
                target.port,
                ssl=target.ssl_context,
                server_hostname=target.server_hostname,
            )
        except OSError as exc:  # refused, unreachable, EMFILE, TLS failures (ssl.SSLError)
            self.connecting = None
            target.note_os_error(exc)
            self.finish(Outcome.CONN_ERROR)
            return
        self.connecting = None
        if self.op < 0 or not wire.live:  # timed out or closed meanwhile
            if wire.transport is not None:
                wire.transport.abort()
            return
        self.wire = wire
        assert wire.transport is not None
        wire.transport.write(self.request)

    def next(self, sent_ns: int) -> None:
        """Take the next queued request, or wait among the idle slots."""
        target = self.target
        if target.queue and not target.closed:
            op, intended_ns = target.queue.popleft()
            self.start(op, intended_ns, sent_ns)
        elif not target.closed:
            target.idle.append(self)

    # -- ending ----------------------------------------------------------------------------------

    def finish(self, outcome: Outcome, hold_ns: int = 0) -> None:
        """Record the active request's completion, then go on with the next request."""
        op = self.op
        if op < 0:
            return
        self.op = -1
        target = self.target
        target.active -= 1
        done_ns = target.now_ns()
        step = target.step
        if step is None or hold_ns or target.queue:  # queued requests go first, in order
            target.sink_complete(op, outcome, self.intended_ns, self.sent_ns, done_ns)
        else:  # a closed loop's steady state: the next request goes out on this slot at once
            op = step(op, outcome, self.intended_ns, self.sent_ns, done_ns)
            if op >= 0:
                self.start(op, done_ns, done_ns)
                return
        if hold_ns:
            self.holding = asyncio.ensure_future(self._hold(done_ns + hold_ns))
        elif target.queue and not target.closed:  # ``next``, inline: this runs per request
            op, intended_ns = target.queue.popleft()
            self.start(op, intended_ns, done_ns)
        elif not target.closed:
            target.idle.append(self)

    async def _hold(self, until_ns: int) -> None:
        """Honour Retry-After: this connection waits before its next request (as HttpTarget)."""
        clock = self.target.clock
        await clock.sleep_until(until_ns)
        self.holding = None
        self.next(clock.now_ns())

    def drop(self) -> None:
        """Close this slot's connection (if any) without waiting; it reconnects when next used."""
        wire = self.wire
        if wire is not None:
            wire.live = False
            self.wire = None
            if wire.transport is not None:
                wire.transport.abort()

    def fail(self, outcome: Outcome) -> None:
        self.drop()
        self.finish(outcome)

    def lost(self, exc: Exception | None) -> None:
        """The server closed the connection, or reset it."""
        self.drop()
        if self.op < 0:
            return  # an idle keep-alive connection timed out at the server: reconnect when used
        if self.status and self.eof_body:
            self.finish(outcome_of_status(self.status))  # a body delimited by the close
            return
        if isinstance(exc, OSError):
            self.target.note_os_error(exc)
        self.finish(Outcome.CONN_ERROR)

    def timeout(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self.fail(Outcome.TIMEOUT)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        # Not keep-alive: a close ends the body, or follows it (llhttp decides this once the
        # headers are in, so it holds for the message's end too).
        self.eof_body = not parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.max_body_bytes:
            self.fail(Outcome.TOO_LARGE)
            raise _Stop

    def unsolicited(self) -> NoReturn:
        """A second answer completed in one read. loadlab never pipelines: when the read came,
        one request was in flight on this connection, so this answer is to nothing sent (a
        duplicate, or an answer the server made up). Counted as a stray; the connection, out of
        step with its requests, is dropped, and the request now in flight on it (written after
        the first answer) ends as MALFORMED."""
        self.target.stray += 1
        self.fail(Outcome.MALFORMED)
        raise _Stop

    def on_message_complete(self) -> None:
        op = self.op
        wire = self.wire
        if wire is None or wire.answered or op < 0:
            self.unsolicited()
        wire.answered = True
        target = self.target
        step = target.step
        transport = wire.transport
        if (
            step is None
            or self.eof_body
            or target.queue
            or transport is None
            or transport.is_closing()
        ):
            if self.eof_body:
                self.drop()  # Connection: close: the next request opens a new connection
            self.finish(_OUTCOME_OF_STATUS[self.status])
            if self.wire is not wire:
                raise _Stop  # nothing more is read from a dropped connection
            return
        # A closed loop's steady state, once per request: ``finish``, the step and ``start``
        # inlined (two Python calls fewer, ~4 % of the request rate against nginx; see
        # bench/http_layers.py), the next request written on this connection at once. The slot
        # is idle while the step runs, as in ``finish``: whatever raises, a completion counts once.
        self.op = -1
        target.active -= 1
        done_ns = target.now_ns()
        op = step(op, _OUTCOME_OF_STATUS[self.status], self.intended_ns, self.sent_ns, done_ns)
        if op >= 0:
            self.op, self.intended_ns, self.sent_ns = op, done_ns, done_ns
            self.status = self.body_bytes = 0
            target.active += 1
            if target.credentials.generation != target.generation:  # a token was renewed
                target.render()
            self.request = request = target.cycles[op]()
            transport.write(request)
            return
        self.next(done_ns)  # the end: the step completed it the slow way
        if self.wire is not wire:  # ``next`` found the connection closing
            raise _Stop


_RETRY_AFTER = b"retry-after"
"""Header names come as sent, in any case: compared lower-cased, after a cheap length check."""


class _RetryAfterSlot(_Slot):
    """A slot that also reads headers: only when Retry-After is honoured, since a Python call per
    header is a large share of a request's client CPU."""

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == len(_RETRY_AFTER) and name.lower() == _RETRY_AFTER:
            self.retry_after = value.decode("latin-1")

    def on_message_complete(self) -> None:
        """As ``_Slot``'s, and a 429's connection waits for its Retry-After."""
        wire = self.wire
        if wire is None or wire.answered or self.op < 0:
            self.unsolicited()
        wire.answered = True
        status = self.status
        hold_ns = 0
        if status == 429:
            hold_ns = retry_hold_ns(self.retry_after, self.target.max_retry_after_ns)
        self.retry_after = None
        if self.eof_body:
            self.drop()
        self.finish(_OUTCOME_OF_STATUS[status], hold_ns)
        if self.wire is not wire:
            raise _Stop


class FastHttpTarget:
    """Sends ``operations`` to ``base_url`` over ``connections`` keep-alive connections.

    Constructed as ``HttpTarget`` (same arguments, same meaning); with ``access``, ``base_url``
    must be its server, and its TLS context and ``tls_server_name`` are used.
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
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.host, self.port, parts = client_endpoint(base_url)
        self.name = name
        self.op_names: tuple[str, ...] = tuple(op.name for op in operations)
        self.weights: tuple[float, ...] = tuple(op.weight for op in operations)
        self.base_url = base_url
        self._operations = tuple(operations)
        self._bearer_token = bearer_token
        self.credentials: Credentials = access.credentials if access else SimIdentity()
        self.generation = -1
        self.cycles: list[Callable[[], bytes]] = []
        """Per operation, the next of its rendered variants, round robin (a C-level step)."""
        self.render()
        self.ssl_context, self.server_hostname = client_tls(parts.scheme, access, ssl_context)
        self.max_body_bytes = max_body_bytes
        self.max_retry_after_ns = int(max_retry_after_s * NS_PER_S)
        self._timeout_ns = int(timeout_s * NS_PER_S)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.now_ns = now_ns_of(self.clock)
        self.queue: deque[tuple[int, int]] = deque()
        self.idle: list[_Slot] = []
        self.active = 0
        self.closed = False
        slot_type = _RetryAfterSlot if honour_retry_after else _Slot
        self._slots = [slot_type(self, i) for i in range(connections)]
        self.fd_exhausted = False
        """Set (and never cleared) when a connect failed with EMFILE/ENFILE."""
        self.stray = 0
        """Answers to no request: data on a connection with no request on it, or a second
        answer in the same read as the first (``_Slot.unsolicited``). Each drops its
        connection."""
        self.last_os_error: OSError | None = None
        """The last socket-level error behind a CONN_ERROR: why connections fail."""
        self._sink: CompletionSink | None = None
        self.sink_complete: CompleteFn = self._not_open
        self.step: StepFn | None = None
        """A closed loop's step (``set_step``), called in place of ``sink_complete``."""
        self._sweeper: asyncio.Task[None] | None = None

    def set_step(self, step: StepFn | None) -> None:
        """Have a closed loop's ``step`` take each completion and name its replacement, sent on
        the slot the completion left free (a request held for Retry-After still goes to the
        sink); None: completions go to the sink again."""
        self.step = step

    def _bind(self, complete: CompleteFn) -> None:
        self.sink_complete = complete

    def _not_open(self, op: int, outcome: Outcome, intended: int, sent: int, done: int) -> None:
        raise RuntimeError("FastHttpTarget: submit before open")

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink
        bind_completion(sink, self._bind)
        self.idle = list(reversed(self._slots))  # slot 0 first: fewer connections at low rates
        self._sweeper = asyncio.ensure_future(
            sweep_timeouts(self.clock, self._timeout_ns, self._expire)
        )

    def submit(self, op: int, intended_ns: int) -> None:
        if self.closed:  # as DnsTarget: a sink that resubmits while close() times requests out
            raise RuntimeError("FastHttpTarget: submit after close")
        self.queue.append((op, intended_ns))
        if self.idle:
            self.idle.pop().next(self.now_ns())

    @property
    def in_flight(self) -> int:
        return len(self.queue) + self.active

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        sending = [(s.op, s.intended_ns) for s in self._slots if s.op >= 0]
        return [*sending, *self.queue]

    def render(self) -> None:
        """Render every operation's variants with the credentials' current headers."""
        self.generation = self.credentials.generation
        self.cycles = [
            itertools.cycle(
                render_requests(self.base_url, op, self._bearer_token, self.credentials)
            ).__next__
            for op in self._operations
        ]

    def note_os_error(self, exc: OSError) -> None:
        self.last_os_error = exc
        if exc.errno in FD_ERRNOS:
            self.fd_exhausted = True

    def _expire(self, sent_before_ns: int) -> None:
        """Time out every active request sent before ``sent_before_ns``."""
        for slot in self._slots:
            if slot.op >= 0 and slot.sent_ns < sent_before_ns:
                slot.timeout()

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self.clock, self, deadline_ns)
        self._expire_queue()

    def _expire_queue(self) -> None:
        if self._sink is None:
            return
        now_ns = self.clock.now_ns()
        while self.queue:
            op, intended_ns = self.queue.popleft()
            self._sink.complete(op, Outcome.TIMEOUT, intended_ns, now_ns, now_ns)

    async def close(self) -> None:
        """Time out what is active or queued, and close every connection."""
        self.closed = True
        self.step = None
        tasks = [self._sweeper] if self._sweeper is not None else []
        for slot in self._slots:
            tasks += [t for t in (slot.connecting, slot.holding) if t is not None]
            slot.holding = None
            if slot.op >= 0:
                slot.timeout()
            slot.drop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sweeper = None
        self._expire_queue()
        self.idle = []
