"""HTTP for agents: each request as its agent's identity, answers decoded, a connection per watch.

``AgentHttpClient.call`` sends one ``ApiCall`` as ``identity`` (the agent's User-Agent, and the
``Authorization`` its credentials give that user: by default the embedded sim's convention, bearer
token = user name; against a real cluster a ``ClusterAccess``'s) and returns an ``ApiReply`` with
the decoded JSON body. The requests of every agent share one keep-alive pool of
``pool_connections`` connections, as the mix's target does; the API server tells the agents apart
by the token, not by the connection (APF: one flow per user).

``open_watch`` gives each watch a connection of its own, as every client-go watch holds one
HTTP/1.1 connection for its lifetime. They come from a second session whose connector has no limit
and never reuses a connection (``force_close``): a connection that carries a streaming response
cannot carry anything else, so each open watch *is* one connection, closed with it. Measured on
this machine (2 cores, Python 3.11, aiohttp 3.14, 4,000 watches open on loopback), client memory
per open watch was 10.2 KiB this way (``HttpWatchStream`` included), 15.8 KiB with a session and
``TCPConnector(limit=1)`` per watch, and 3.6 KiB on a bare asyncio stream: 10,000 watches cost
~100 MB here against ~36 MB bare, while aiohttp keeps chunked decoding, TLS and the no-resend
guard for free. Either way the limit at 10,000 watches is file descriptors (one each), not
memory: see ``loadlab.engine.agents.check_agent_sockets``.

Honest counts, as for the mix (``loadlab.targets.http``): nothing is sent twice (``never_resend``),
bodies are bounded by ``max_body_bytes`` (TOO_LARGE, connection dropped), and a failure on the
wire becomes an outcome, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp

from loadlab.agents.base import (
    ApiCall,
    ApiReply,
    Identity,
    JsonObj,
    WatchEnd,
    WatchEvent,
    WatchOpen,
)
from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import ClusterAccess, check_base_url
from loadlab.targets.credentials import Credentials, SimIdentity
from loadlab.targets.http import DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT_S
from loadlab.targets.http_wire import (
    NotResent,
    discard_body,
    never_resend,
    outcome_of_status,
    read_body,
    retry_after_s,
)

DEFAULT_POOL_CONNECTIONS = 64
"""Shared by every agent's non-watch requests. A chosen default, not a Kubernetes number: each
kubelet has its own connection in a real cluster, but their requests are rare (a lease every
10 s), so a pool this size carries thousands of agents; the mix's target uses 256 for far more."""
RETRY_AFTER_STATUSES = frozenset({429, 503})
"""client-go honours Retry-After on 429 and on 5xx that carry it (docs/control-plane-model.md,
"REST client retries"; client-go ``rest/with_retry.go``): the flows decide; the reply carries it."""

WatchReply = WatchEvent | WatchEnd


MAX_DISCARDED_BODY_BYTES = 1 << 30
"""A body read and dropped (``ApiCall.keep_body`` False) costs no memory, so its bound is only
against a server that never ends one: 1 GiB, above an unpaged LIST of 150,000 pods (~1 KB each)."""


def agent_headers(
    identity: Identity, content_type: str | None, credentials: Credentials
) -> dict[str, str]:
    headers = {"User-Agent": identity.user_agent, "Accept": "application/json"}
    authorization = credentials.authorization(identity.user)
    if authorization is not None:
        headers["Authorization"] = authorization
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def json_object(data: bytes | bytearray) -> JsonObj | None:
    """``data`` decoded as a JSON object, or None when it is not one."""
    try:
        decoded = json.loads(data)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return decoded if isinstance(decoded, dict) else None


def _is_json(resp: aiohttp.ClientResponse) -> bool:
    # application/json, and the +json types; the API server also answers watch streams so.
    return resp.content_type == "application/json" or resp.content_type.endswith("+json")


async def _decode(
    resp: aiohttp.ClientResponse, max_body_bytes: int
) -> tuple[Outcome, JsonObj | None]:
    """The outcome of a response whose head has arrived, and its body when it is a JSON object.

    A 2xx whose JSON body does not decode is MALFORMED: the client could not use it.
    """
    outcome = outcome_of_status(resp.status)
    body = await read_body(resp, max_body_bytes)
    if body is None:
        return Outcome.TOO_LARGE, None
    if not body or not _is_json(resp):
        return outcome, None
    decoded = json_object(body)
    if decoded is None and outcome is Outcome.OK:
        return Outcome.MALFORMED, None
    return outcome, decoded


def _wire_outcome(exc: BaseException) -> Outcome:
    """The outcome of a request that failed on the wire (the exceptions ``_WIRE_ERRORS`` lists)."""
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(exc, aiohttp.ClientResponseError):
        return Outcome.MALFORMED  # not HTTP: bad status line, bad headers
    return Outcome.CONN_ERROR


_WIRE_ERRORS = (TimeoutError, aiohttp.ClientError, OSError, NotResent)
"""What a request can raise on the wire: timeouts, aiohttp's errors (connecting, disconnects,
payload, bad HTTP), socket errors, and a failure aiohttp would have resent (``never_resend``)."""


class AgentHttpClient:
    """Sends agents' requests to one API server; see the module docstring.

    With ``access``, ``base_url`` must be its server; its TLS context replaces ``ssl_context``.
    """

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
        check_base_url(base_url, access)
        if pool_connections < 1:
            raise ValueError(f"pool_connections must be at least 1, got {pool_connections}")
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, got {max_body_bytes}")
        self.base_url = base_url.rstrip("/")
        self.pool_connections = pool_connections
        if access is not None and access.ssl is not None:
            ssl_context = access.ssl
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._server_hostname = access.tls_server_name if access else None
        self._credentials: Credentials = access.credentials if access else SimIdentity()
        self._timeout_s = timeout_s
        """Caps every call's own ``timeout_s``, and bounds a watch's connect and response head."""
        self._max_body_bytes = max_body_bytes
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._pool: aiohttp.ClientSession | None = None
        self._watches: aiohttp.ClientSession | None = None

    def _session(self, *, watch: bool) -> aiohttp.ClientSession:
        session = self._watches if watch else self._pool
        if session is not None:
            return session
        connector = aiohttp.TCPConnector(
            # Watches: no limit (each is one connection, counted by the fd budget), never reused.
            limit=0 if watch else self.pool_connections,
            limit_per_host=0,
            force_close=watch,
            ssl=self._ssl,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            middlewares=(never_resend,),
        )
        if watch:
            self._watches = session
        else:
            self._pool = session
        return session

    async def call(self, identity: Identity, call: ApiCall) -> ApiReply:
        """Send ``call`` as ``identity``; the reply's ``now_ns`` is this client's clock."""
        data = None if call.body is None else json.dumps(call.body).encode()
        content_type = call.content_type if data is not None else None
        headers = agent_headers(identity, content_type, self._credentials)
        timeout = aiohttp.ClientTimeout(total=min(call.timeout_s, self._timeout_s))
        status, retry_after = 0, None
        try:
            async with self._session(watch=False).request(
                call.method,
                self.base_url + call.path,
                params=dict(call.params),
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=self._server_hostname,
            ) as resp:
                status = resp.status
                if status in RETRY_AFTER_STATUSES:
                    retry_after = retry_after_s(resp.headers.get("Retry-After"))
                if call.keep_body:
                    outcome, body = await _decode(resp, self._max_body_bytes)
                else:
                    body = None
                    within = await discard_body(resp, MAX_DISCARDED_BODY_BYTES)
                    outcome = outcome_of_status(status) if within else Outcome.TOO_LARGE
        except _WIRE_ERRORS as exc:
            # A body cut off mid-read keeps its status: the head did arrive.
            return ApiReply(self._clock.now_ns(), status, _wire_outcome(exc))
        return ApiReply(self._clock.now_ns(), status, outcome, body, retry_after)

    async def open_watch(self, identity: Identity, watch: WatchOpen) -> HttpWatchStream:
        """Open ``watch`` (``watch=1`` added) on a connection of its own; the response head is
        the stream's ``head``, and events follow through ``next`` when it is a 200."""
        params: dict[str, str] = {**watch.params, "watch": "1"}
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await self._session(watch=True).request(
                    "GET",
                    self.base_url + watch.path,
                    params=params,
                    headers=agent_headers(identity, None, self._credentials),
                    allow_redirects=False,
                    server_hostname=self._server_hostname,
                    # The stream lasts minutes; only connecting and the head are bounded (above).
                    timeout=aiohttp.ClientTimeout(total=None),
                )
        except _WIRE_ERRORS as exc:
            head = ApiReply(self._clock.now_ns(), 0, _wire_outcome(exc))
            return HttpWatchStream(head, None, self._clock, self._max_body_bytes)
        if resp.status != 200:
            retry_after = None
            if resp.status in RETRY_AFTER_STATUSES:
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
            try:
                async with asyncio.timeout(self._timeout_s):
                    outcome, body = await _decode(resp, self._max_body_bytes)
            except _WIRE_ERRORS as exc:
                outcome, body = _wire_outcome(exc), None
            resp.close()
            head = ApiReply(self._clock.now_ns(), resp.status, outcome, body, retry_after)
            return HttpWatchStream(head, None, self._clock, self._max_body_bytes)
        head = ApiReply(self._clock.now_ns(), 200, Outcome.OK)
        return HttpWatchStream(head, resp, self._clock, self._max_body_bytes)

    async def close(self) -> None:
        for session in (self._pool, self._watches):
            if session is not None:
                await session.close()
        self._pool = self._watches = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class HttpWatchStream:
    """One open watch: newline-delimited JSON events (``{"type": ..., "object": ...}``).

    ``next(until_ns)`` returns the next event, or a ``WatchEnd``: ``deadline`` when ``until_ns``
    passes first (the stream stays open), ``closed`` when the server ended it, ``error`` when the
    connection broke or sent something that is not an event (it is then closed). An event larger
    than ``max_body_bytes`` is an ``error`` too: its line is never held whole.
    """

    def __init__(
        self,
        head: ApiReply,
        resp: aiohttp.ClientResponse | None,
        clock: Clock,
        max_event_bytes: int,
    ) -> None:
        self.head = head
        """The reply to the ``WatchOpen``: status 200 when events follow."""
        self._resp = resp
        self._clock = clock
        self._max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._ended: str | None = None if resp is not None else "closed"
        self.events = 0
        """Events returned so far."""

    async def next(self, until_ns: int) -> WatchReply:
        clock = self._clock
        # Bounded: each pass either returns or appends at least one byte to a buffer that is
        # capped, or waits for the deadline.
        while True:
            line = self._take_line()
            if line is not None:
                event = self._event(line)
                if event is not None:
                    return event
                continue
            if self._ended is not None or self._resp is None:
                return WatchEnd(clock.now_ns(), self._ended or "closed")
            if len(self._buffer) > self._max_event_bytes:
                return self._end("error")
            delay_s = (until_ns - clock.now_ns()) / NS_PER_S
            if delay_s <= 0:
                return WatchEnd(clock.now_ns(), "deadline")
            try:
                async with asyncio.timeout(delay_s):
                    chunk = await self._resp.content.readany()
            except TimeoutError:
                return WatchEnd(clock.now_ns(), "deadline")
            except _WIRE_ERRORS:
                return self._end("error")
            if not chunk:
                # The server ended the stream; a last line without a newline is still an event.
                self._release()
                self._ended = "closed"
                self._buffer += b"\n"
                continue
            self._buffer += chunk

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _event(self, line: bytes) -> WatchReply | None:
        """The event on ``line``; None for a blank line (keep reading)."""
        if not line.strip():
            return None
        decoded = json_object(line)
        kind: Any = decoded.get("type") if decoded is not None else None
        obj: Any = decoded.get("object") if decoded is not None else None
        if not isinstance(kind, str) or not isinstance(obj, Mapping):
            return self._end("error")
        self.events += 1
        return WatchEvent(self._clock.now_ns(), kind, dict(obj))

    def _release(self) -> None:
        if self._resp is not None:
            self._resp.close()  # drops the connection: it is never reused
            self._resp = None

    def _end(self, reason: str) -> WatchEnd:
        self._release()
        self._ended = reason
        self._buffer.clear()
        return WatchEnd(self._clock.now_ns(), reason)

    async def close(self) -> None:
        """End the watch from the client side (as a reflector does at its timeout); idempotent."""
        self._release()
        if self._ended is None:
            self._ended = "closed"
        self._buffer.clear()
