"""The connections behind ``FastAgentHttpClient``: a bounded keep-alive pool on bare protocols.

At most ``limit`` connections, each an ``asyncio.Protocol`` whose answers ``httptools`` parses,
opened when a waiting call needs one (a task per connect: rare, at first use and after a close)
and carrying one request at a time. Calls wait in one FIFO queue; a connection that frees up
takes the first waiting call and writes it from the parser's message-complete callback, so a call
costs one future (``PendingCall.future``) and no task. Deadlines are enforced by one periodic
sweep (every timeout/10 of the shortest timeout seen, as ``fast_http``), not a timer per call.

What a connection reports ends the call once (``PendingCall.end``): its status, outcome, kept
body and Retry-After. A call written on a connection that turns out closed ends as CONN_ERROR and
is never written again; a body over its bound is TOO_LARGE and the connection is dropped; a close
before the end of a framed body (Content-Length, chunked) is CONN_ERROR with the status, while a
body delimited by the close is complete; bytes that are not HTTP are MALFORMED; a call past its
deadline is TIMEOUT and its connection dropped, since its answer may still come.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import cast

import httptools

from loadlab.clock import Clock
from loadlab.targets.agent_http import MAX_DISCARDED_BODY_BYTES
from loadlab.targets.base import MIN_SWEEP_NS, Outcome
from loadlab.targets.http_wire import outcome_of_status

CLOSE_WAIT_S = 1.0
"""Bounds ``close``'s wait for aborted sockets to report closed: the next turn of the loop."""


class _Stop(Exception):
    """Raised from a parser callback to stop parsing a connection that was just dropped."""


class PendingCall:
    """One call, from ``call`` to its answer: the request, the deadline, and what came back."""

    __slots__ = (
        "body",
        "deadline_ns",
        "future",
        "is_json",
        "keep_body",
        "outcome",
        "request",
        "retry_after",
        "status",
    )

    def __init__(
        self, future: asyncio.Future[None], request: bytes, deadline_ns: int, keep_body: bool
    ) -> None:
        self.future = future
        self.request = request
        self.deadline_ns = deadline_ns
        self.keep_body = keep_body
        self.status = 0
        self.outcome = Outcome.CONN_ERROR
        self.body: bytearray | None = None
        self.is_json = False
        self.retry_after: str | None = None

    def end(self, outcome: Outcome) -> None:
        """Resolve the call (once; a caller that was cancelled meanwhile is not told)."""
        self.outcome = outcome
        if not self.future.done():
            self.future.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the parser's callbacks for the answer on it. ``live`` turns
    False when the pool drops it: whatever it still reports (late data, a close) is ignored."""

    __slots__ = ("body_bytes", "closed", "framed", "live", "parser", "pending", "pool", "transport")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.live = True
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending: PendingCall | None = None
        self.body_bytes = 0
        self.framed = False
        """The answer has a Content-Length or is chunked: a close before its end cuts it off."""
        self.closed: asyncio.Future[None] | None = None
        """Set by ``connection_lost`` when the pool, closing, waits for the socket to close."""

    def send(self, pending: PendingCall) -> None:
        self.pending = pending
        self.body_bytes = 0
        self.framed = False
        assert self.transport is not None
        self.transport.write(pending.request)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport: cast, do not isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.live:
            return
        if self.pending is None:  # bytes nobody asked for: the server is not speaking HTTP to us
            self.pool.drop(self)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise  # a bug in a callback: not the server's doing, so not its outcome
            if self.live:
                self.fail(Outcome.MALFORMED)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if self.live:
                self.fail(Outcome.MALFORMED)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        pending = self.pending
        if not self.live:
            return
        self.pool.drop(self)
        if pending is None:
            return  # an idle connection the server closed: the next call opens another
        if pending.status and not self.framed:
            pending.end(outcome_of_status(pending.status))  # a body delimited by the close
        else:
            pending.end(Outcome.CONN_ERROR)

    def fail(self, outcome: Outcome) -> None:
        """End the active call with ``outcome`` and drop the connection (its state is unknown)."""
        pending = self.pending
        self.pool.drop(self)
        if pending is not None:
            pending.end(outcome)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.pending is None:  # a second answer to one request: drop the connection
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        # A Python call per header: an API server answer has about seven.
        pending = self.pending
        assert pending is not None
        name = name.lower()
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            pending.is_json = kind == b"application/json" or kind.endswith(b"+json")
        elif name == b"content-length":
            self.framed = True
            limit = self.pool.max_body_bytes if pending.keep_body else MAX_DISCARDED_BODY_BYTES
            if value.strip().isdigit() and int(value) > limit:
                self.body_bytes = -1  # over the bound: said at headers complete, with the status
        elif name == b"transfer-encoding":
            self.framed = True
        elif name == b"retry-after":
            pending.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        pending = self.pending
        assert pending is not None
        pending.status = self.parser.get_status_code()
        if self.body_bytes < 0:
            self.fail(Outcome.TOO_LARGE)
            raise _Stop

    def on_body(self, body: bytes) -> None:
        pending = self.pending
        assert pending is not None
        self.body_bytes += len(body)
        if pending.keep_body:
            if self.body_bytes > self.pool.max_body_bytes:
                pending.body = None
                self.fail(Outcome.TOO_LARGE)
                raise _Stop
            if pending.body is None:
                pending.body = bytearray(body)
            else:
                pending.body += body
        elif self.body_bytes > MAX_DISCARDED_BODY_BYTES:
            self.fail(Outcome.TOO_LARGE)
            raise _Stop

    def on_message_complete(self) -> None:
        pending = self.pending
        assert pending is not None
        self.pending = None
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive:
            self.pool.drop(self)  # Connection: close: the next call opens a new connection
        pending.end(outcome_of_status(pending.status))
        if keep_alive:
            self.pool.release(self)
        else:
            raise _Stop  # nothing more is read from a dropped connection


class ConnectionPool:
    """At most ``limit`` connections to one server, and the calls waiting for one (FIFO)."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        *,
        limit: int,
        max_body_bytes: int,
        connect_timeout_s: float,
        clock: Clock,
    ) -> None:
        self._host, self._port = host, port
        self._ssl, self._server_hostname = ssl_context, server_hostname
        self._limit = limit
        self.max_body_bytes = max_body_bytes
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._queue: deque[PendingCall] = deque()
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._open = 0
        """Connections held: connected (in ``_connections``) or connecting."""
        self._connecting = 0
        self._connects: set[asyncio.Task[None]] = set()
        """Connect tasks, kept to cancel them at close."""
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_ns = 0

    def submit(self, pending: PendingCall, timeout_ns: int) -> None:
        self._arm_sweep(timeout_ns)
        self._queue.append(pending)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand queued calls to idle connections, and open connections for the rest (up to the
        limit; one per waiting call not already waiting on a connect)."""
        queue, idle = self._queue, self._idle
        while queue and idle:
            self.release(idle.pop())
        wanted = min(len(queue) - self._connecting, self._limit - self._open)
        for _ in range(wanted):
            self._open += 1
            self._connecting += 1
            task = asyncio.ensure_future(self._connect())
            self._connects.add(task)
            task.add_done_callback(self._connects.discard)

    def release(self, conn: _Connection) -> None:
        """``conn`` is free: it takes the first waiting call, else waits among the idle."""
        queue = self._queue
        while queue:
            pending = queue.popleft()
            if pending.future.done():
                continue  # its caller was cancelled: nothing to send
            transport = conn.transport
            if transport is None or transport.is_closing():
                # Closing under us before anything was written on it: the call waits for another.
                queue.appendleft(pending)
                self.drop(conn)
                self._dispatch()
                return
            conn.send(pending)
            return
        self._idle.append(conn)

    def drop(self, conn: _Connection) -> None:
        """Close ``conn`` now (idempotent); the pool opens another when a call needs one."""
        if not conn.live:
            return
        conn.live = False
        conn.pending = None
        self._open -= 1
        self._connections.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)  # rare: an idle connection the server closed
        if conn.transport is not None:
            conn.transport.abort()

    async def _connect(self) -> None:
        conn = _Connection(self)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname if self._ssl else None,
                )
        except (OSError, TimeoutError):  # refused, unreachable, EMFILE, TLS (ssl.SSLError)
            conn.live = False
            self._open -= 1
            self._connecting -= 1
            self._fail_first(Outcome.CONN_ERROR)
            return
        self._connecting -= 1
        if not conn.live:  # closed before it could be used: as good as refused
            self._fail_first(Outcome.CONN_ERROR)
            return
        self._connections.add(conn)
        self.release(conn)

    def _fail_first(self, outcome: Outcome) -> None:
        """A connect failed: the first waiting call gets the failure (one each, as with aiohttp,
        where every request connects for itself), and the rest try again."""
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.end(outcome)
                break
        self._dispatch()

    # -- timeouts --------------------------------------------------------------------------------

    def _arm_sweep(self, timeout_ns: int) -> None:
        """Sweep every timeout/10 of the shortest timeout seen (restarted when one is shorter)."""
        sweep_ns = max(timeout_ns // 10, MIN_SWEEP_NS)
        if self._sweeper is not None and sweep_ns >= self._sweep_ns:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_ns = sweep_ns
        self._sweeper = asyncio.ensure_future(self._sweep(sweep_ns))

    async def _sweep(self, sweep_ns: int) -> None:
        clock = self._clock
        while True:
            await clock.sleep_until(clock.now_ns() + sweep_ns)
            self.expire(clock.now_ns())

    def expire(self, now_ns: int) -> None:
        """Time out every call whose deadline is ``now_ns`` or earlier, waiting or sent."""
        for conn in list(self._connections):
            pending = conn.pending
            if pending is not None and pending.deadline_ns <= now_ns:
                conn.fail(Outcome.TIMEOUT)  # its answer may still come: drop the connection
        if any(p.deadline_ns <= now_ns or p.future.done() for p in self._queue):
            waiting: deque[PendingCall] = deque()
            for pending in self._queue:
                if pending.deadline_ns <= now_ns:
                    pending.end(Outcome.TIMEOUT)
                elif not pending.future.done():  # not cancelled by its caller
                    waiting.append(pending)
            self._queue = waiting
        self._dispatch()  # timed-out connections may have made room for the waiting calls

    async def close(self) -> None:
        """Close every connection; calls still waiting or in flight end as CONN_ERROR."""
        tasks = [*self._connects, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sweeper = None
        loop = asyncio.get_running_loop()
        closing: list[asyncio.Future[None]] = []
        for conn in list(self._connections):
            conn.closed = loop.create_future()
            closing.append(conn.closed)
            conn.fail(Outcome.CONN_ERROR)
        while self._queue:
            self._queue.popleft().end(Outcome.CONN_ERROR)
        if closing:  # as aiohttp's connector: return once the sockets are closed, not before
            await asyncio.wait(closing, timeout=CLOSE_WAIT_S)
            # And one more turn, as aiohttp's close task takes: a server in this same loop (a
            # test's) then reads the close before whatever the caller does next stops it.
            await asyncio.sleep(0)
