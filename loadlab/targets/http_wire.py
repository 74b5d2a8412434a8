"""What every HTTP client of loadlab does on the wire: send once, bound bodies, read statuses.

Shared by the mix's target (``http``), the agents' client (``agent_http``) and the probe.

Honest counts: aiohttp would send an idempotent request a second time when a reused keep-alive
connection turns out closed (RFC 9112 9.3.1 allows it; aiohttp has no switch for it), so a
middleware turns that failure into one the retry loop lets through (``never_resend``; client
middlewares need aiohttp >= 3.12, and cost one small wrapper per request inside aiohttp). Bodies
are read in chunks and dropped or kept up to a bound, never without one.
"""

from __future__ import annotations

import aiohttp

from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Comfortably above the largest answer a profile asks for: a LIST page of 500 pods (the API's
``limit``) at ~10 KiB of JSON each is ~5 MB. 256 connections x 8 MiB bound what bodies can cost
(they are never kept: read in chunks and dropped); unbounded, 50 MB bodies grew RSS to 4.5 GB."""


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
