"""Both agent clients against scripted answers on the wire (chunked, cut off, not JSON, not HTTP,
Connection: close, refused): the lean client must give the reply aiohttp gives."""

from __future__ import annotations

import asyncio

import pytest

from loadlab.agents.base import ApiCall, ApiReply, JsonObj
from loadlab.targets.base import Outcome
from loadlab.testing.ports import closed_tcp_port
from tests.targets.test_agent_http import (
    AGENT_CLIENTS,
    LEASE_PATH,
    NODE_1,
    TIMEOUT_S,
    AgentClientType,
)
from tests.targets.test_fast_http import RESET, Wire, raw_server

pytestmark = pytest.mark.realtime


def answer(status: str, body: bytes, *headers: str) -> bytes:
    """An HTTP/1.1 answer as the raw server writes it: status line, ``headers``, ``body``."""
    head = "".join(f"{line}\r\n" for line in (f"HTTP/1.1 {status}", *headers))
    return f"{head}\r\n".encode() + body


def chunked_body(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


JSON = "Content-Type: application/json"
LEASE = b'{"kind":"Lease"}'
STATUS_503 = b'{"kind":"Status","code":503}'


def length(body: bytes) -> str:
    return f"Content-Length: {len(body)}"


@AGENT_CLIENTS
@pytest.mark.parametrize(
    ("wire", "status", "outcome", "body", "retry_after_s"),
    [
        pytest.param(
            answer("200 OK", chunked_body(LEASE, 5), JSON, "Transfer-Encoding: chunked"),
            200, Outcome.OK, {"kind": "Lease"}, None, id="chunked",
        ),
        pytest.param(
            answer("200 OK", LEASE, JSON), 200, Outcome.OK, {"kind": "Lease"}, None,
            id="body-ended-by-the-close",
        ),
        pytest.param(
            answer("200 OK", LEASE, "Content-Type: application/json; charset=utf-8", length(LEASE)),
            200, Outcome.OK, {"kind": "Lease"}, None, id="json-with-charset",
        ),
        pytest.param(
            answer("200 OK", LEASE[:8], JSON, "Content-Length: 100", "Connection: close"),
            200, Outcome.CONN_ERROR, None, None, id="closed-mid-body",
        ),
        pytest.param(
            answer("200 OK", LEASE[:8], JSON, "Content-Length: 8"),
            200, Outcome.MALFORMED, None, None, id="2xx-json-that-does-not-decode",
        ),
        pytest.param(
            answer("200 OK", b"[1, 2]", JSON, "Content-Length: 6"),
            200, Outcome.MALFORMED, None, None, id="2xx-json-not-an-object",
        ),
        pytest.param(
            answer("200 OK", LEASE, "Content-Type: text/plain", length(LEASE)),
            200, Outcome.OK, None, None, id="not-json-is-not-decoded",
        ),
        pytest.param(
            answer("404 Not Found", b"nope", JSON, "Content-Length: 4"),
            404, Outcome.CLIENT_ERROR, None, None, id="4xx-json-that-does-not-decode",
        ),
        pytest.param(
            answer("503 Unavailable", STATUS_503, JSON, "Retry-After: 2", length(STATUS_503)),
            503, Outcome.SERVER_ERROR, {"kind": "Status", "code": 503}, 2.0, id="503-retry-after",
        ),
        pytest.param(
            answer("500 Oops", STATUS_503, JSON, "Retry-After: 2", length(STATUS_503)),
            500, Outcome.SERVER_ERROR, {"kind": "Status", "code": 503}, None,
            id="retry-after-ignored-on-500",
        ),
        pytest.param(
            answer("204 No Content", b""), 204, Outcome.OK, None, None, id="204-no-body",
        ),
        pytest.param(
            b"HTTP/1.1 2x0 OK\r\n\r\n", 0, Outcome.MALFORMED, None, None, id="bad-status-line",
        ),
        pytest.param(RESET, 0, Outcome.CONN_ERROR, None, None, id="reset-before-the-head"),
    ],
)  # fmt: skip
def test_each_answer_on_the_wire_is_the_reply_aiohttp_would_give(
    wire: bytes,
    status: int,
    outcome: Outcome,
    body: JsonObj | None,
    retry_after_s: float | None,
    client_type: AgentClientType,
) -> None:
    seen = Wire()

    async def go() -> ApiReply:
        async with (
            raw_server(lambda n, path: wire, seen) as url,
            client_type(url, pool_connections=1, timeout_s=TIMEOUT_S) as client,
        ):
            return await client.call(NODE_1, ApiCall("get-lease", "GET", LEASE_PATH))

    reply = asyncio.run(go())
    assert (reply.status, reply.outcome, reply.body) == (status, outcome, body)
    assert reply.retry_after_s == retry_after_s
    assert seen.requests == 1


@AGENT_CLIENTS
def test_connection_close_is_honoured_and_the_next_call_opens_another(
    client_type: AgentClientType,
) -> None:
    seen = Wire()
    closing = answer("200 OK", LEASE, JSON, length(LEASE), "Connection: close")

    async def go() -> list[ApiReply]:
        async with (
            raw_server(lambda n, path: closing, seen) as url,
            client_type(url, pool_connections=1, timeout_s=TIMEOUT_S) as client,
        ):
            call = ApiCall("get-lease", "GET", LEASE_PATH)
            return [await client.call(NODE_1, call) for _ in range(3)]

    replies = asyncio.run(go())
    assert [(r.status, r.outcome, r.body) for r in replies] == [
        (200, Outcome.OK, {"kind": "Lease"})
    ] * 3
    assert (seen.connections, seen.requests) == (3, 3)


@AGENT_CLIENTS
def test_a_refused_connection_is_one_conn_error_per_call(client_type: AgentClientType) -> None:
    async def go() -> list[ApiReply]:
        url = f"http://127.0.0.1:{closed_tcp_port()}"
        async with client_type(url, pool_connections=2, timeout_s=TIMEOUT_S) as client:
            call = ApiCall("get-lease", "GET", LEASE_PATH)
            return list(await asyncio.gather(*[client.call(NODE_1, call) for _ in range(5)]))

    replies = asyncio.run(go())
    assert [(r.status, r.outcome) for r in replies] == [(0, Outcome.CONN_ERROR)] * 5
