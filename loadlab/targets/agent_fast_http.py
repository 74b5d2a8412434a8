"""HTTP for agents on lean connections: ``AgentHttpClient``'s contract at a fraction of its CPU.

Why: aiohttp costs ~60-120 us of generator CPU per request (cProfile of a 3,000-node sweep:
``_call`` 6.3 s cumulative for 51k calls). At 10,000 kubelets a saturated API server makes lease
renewals come back in herds of up to ~12,000 a second, and a herd kept the event loop busy for
most of that second: every agent's timer fired late (loop-lag p99 ~110 ms; issue 8 asks < 50 ms).
The request mix already runs on bare connections (``fast_http``); this does the same for agents.

``FastAgentHttpClient`` takes ``AgentHttpClient``'s arguments and has its surface. ``call``
renders the request bytes itself (the headers of ``agent_http.agent_headers``, plus Host and
Content-Length) and sends them over ``agent_http_pool.ConnectionPool``: at most
``pool_connections`` keep-alive connections, FIFO waiting, one future and no task per call, and
the timeout, ``min(call.timeout_s, timeout_s)`` counted from the call (queueing included, as
aiohttp's total timeout), enforced by a periodic sweep. ``open_watch`` is an internal
``AgentHttpClient``'s: a watch streams for minutes on a connection of its own, where aiohttp's
per-request cost does not matter.

Honest as ``AgentHttpClient`` (``tests/targets/test_agent_http.py`` runs both): nothing is sent
twice, bodies are bounded (``max_body_bytes`` kept, ``MAX_DISCARDED_BODY_BYTES`` dropped), a 2xx
whose JSON does not decode is MALFORMED, and a failure on the wire is an outcome, never an
exception (the pool's docstring lists them).

Simplifications, on purpose: no ``Accept-Encoding`` (aiohttp asks for gzip; agents' answers are
small, and an uncompressed answer costs the server less CPU, not more), HEAD is refused (the
parser would wait for the body its Content-Length announces), and a 1xx interim answer ends the
call as CLIENT_ERROR (agents send no ``Expect``, so servers send none).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlencode

from loadlab.agents.base import ApiCall, ApiReply, Identity, WatchOpen
from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.targets.address import client_endpoint
from loadlab.targets.agent_http import (
    DEFAULT_POOL_CONNECTIONS,
    RETRY_AFTER_STATUSES,
    AgentHttpClient,
    HttpWatchStream,
    agent_headers,
    json_object,
)
from loadlab.targets.agent_http_pool import ConnectionPool, PendingCall
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import ClusterAccess, client_tls
from loadlab.targets.credentials import Credentials, SimIdentity
from loadlab.targets.http import DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT_S
from loadlab.targets.http_wire import retry_after_s

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Sent with ``Content-Length: 0`` when the call has no body, as aiohttp does."""
PATH_SAFE = "/%:@!$&'()*+,;=~"
"""Left as they are in a path (RFC 3986 pchar and '/', '%' for what is already escaped); anything
else (a space, non-ASCII) is percent-encoded, as yarl does for aiohttp."""
QUERY_SAFE = "/:@?"
"""Left as they are in a query value, as yarl does; '=', '&', '+' and ';' are escaped."""
WIRE_OUTCOMES = frozenset({Outcome.CONN_ERROR, Outcome.TIMEOUT, Outcome.MALFORMED})
"""A call that failed on the wire: its reply has the status (if the head came) and nothing else."""


class FastAgentHttpClient:
    """Sends agents' requests to one API server; see the module docstring. Constructed as
    ``AgentHttpClient`` (same arguments, same meaning)."""

    def __init__(
        self,
        base_url: str,
        *,
        pool_connections: int = DEFAULT_POOL_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Clock | None = None,
        access: ClusterAccess | None = None,
    ) -> None:
        # Checks base_url against access, pool_connections and max_body_bytes; carries watches.
        self._watches = AgentHttpClient(
            base_url,
            pool_connections=pool_connections,
            ssl_context=ssl_context,
            timeout_s=timeout_s,
            max_body_bytes=max_body_bytes,
            clock=clock,
            access=access,
        )
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._host, self._port, parts = client_endpoint(base_url)
        self.base_url = base_url.rstrip("/")
        self.pool_connections = pool_connections
        self._host_header = parts.netloc.rpartition("@")[2]
        self._path_prefix = parts.path.rstrip("/")
        self._ssl, self._server_hostname = client_tls(parts.scheme, access, ssl_context)
        self._credentials: Credentials = access.credentials if access else SimIdentity()
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._pool: ConnectionPool | None = None

    def _connection_pool(self) -> ConnectionPool:
        if self._pool is None:
            self._pool = ConnectionPool(
                self._host,
                self._port,
                self._ssl,
                self._server_hostname,
                limit=self.pool_connections,
                max_body_bytes=self._max_body_bytes,
                connect_timeout_s=self._timeout_s,
                clock=self._clock,
            )
        return self._pool

    def render(self, identity: Identity, call: ApiCall) -> bytes:
        """The bytes ``call`` sends as ``identity``; ValueError for a header, method or path that
        would break the request (a control character), as aiohttp refuses them."""
        method = call.method.upper()
        if method == "HEAD" or not method.isalpha():
            raise ValueError(f"{call.op}: method {call.method!r} is not supported here")
        data = None if call.body is None else json.dumps(call.body).encode()
        headers = agent_headers(
            identity, None if data is None else call.content_type, self._credentials
        )
        target = quote(self._path_prefix + call.path, safe=PATH_SAFE) or "/"
        if call.params:
            target += "?" + urlencode(call.params, safe=QUERY_SAFE)
        values = "".join(headers.values())
        if "\r" in values or "\n" in values or "\x00" in values:
            raise ValueError(f"{call.op}: a header has a line break")
        head = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if data is not None or method in BODY_METHODS:
            head += f"Content-Length: {len(data) if data is not None else 0}\r\n"
        start = f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        wire = (start + head + "\r\n").encode("latin-1")
        return wire + data if data is not None else wire

    async def call(self, identity: Identity, call: ApiCall) -> ApiReply:
        """Send ``call`` as ``identity``; the reply's ``now_ns`` is this client's clock."""
        request = self.render(identity, call)
        timeout_ns = int(min(call.timeout_s, self._timeout_s) * NS_PER_S)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = PendingCall(future, request, self._clock.now_ns() + timeout_ns, call.keep_body)
        self._connection_pool().submit(pending, timeout_ns)
        await future
        status, outcome = pending.status, pending.outcome
        if outcome in WIRE_OUTCOMES:
            # A body cut off mid-read keeps its status: the head did arrive.
            return ApiReply(self._clock.now_ns(), status, outcome)
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = retry_after_s(pending.retry_after)
        body = None
        if pending.body and pending.is_json:
            body = json_object(pending.body)
            if body is None and outcome is Outcome.OK:
                outcome = Outcome.MALFORMED  # a 2xx the client cannot use
        return ApiReply(self._clock.now_ns(), status, outcome, body, retry_after)

    async def open_watch(self, identity: Identity, watch: WatchOpen) -> HttpWatchStream:
        """As ``AgentHttpClient.open_watch``: a connection of its own, on aiohttp."""
        return await self._watches.open_watch(identity, watch)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        await self._watches.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
