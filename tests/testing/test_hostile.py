"""The hostile servers do what they say, seen by real clients (aiohttp, dnspython) on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import uvloop

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.testing.hostile import (
    GARBAGE_BYTES,
    HostileHttpServer,
    HttpBehaviour,
    start_hostile_process,
)
from loadlab.testing.hostile_dns import DnsBehaviour, HostileDnsServer
from loadlab.testing.waiting import wait_for

pytestmark = pytest.mark.realtime

T = TypeVar("T")
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)
"""A loopback answer takes milliseconds; a test that waits longer has found a bug."""
NAME = "kubernetes.default.svc.cluster.local."
REQUEST = b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Run:
    """Run a coroutine to completion on a fresh event loop of one kind."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._loop_factory = loop_factory

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            return runner.run(coro)


@pytest.fixture(
    params=[
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(uvloop.new_event_loop, id="uvloop"),
    ]
)
def run(request: pytest.FixtureRequest) -> Run:
    return Run(request.param)


async def fetch(
    url: str, method: str = "GET", client_timeout: aiohttp.ClientTimeout = CLIENT_TIMEOUT
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.request(method, url) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def fetch_all(url: str, count: int) -> list[int]:
    """Statuses of ``count`` GETs in turn on one session (one keep-alive connection)."""
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        statuses = []
        for _ in range(count):
            async with session.get(url) as resp:
                await resp.read()
                statuses.append(resp.status)
        return statuses


# --- HTTP ---------------------------------------------------------------------------------------


def test_ok_answers_any_method_and_path_with_a_lease_on_one_connection(run: Run) -> None:
    async def chunks() -> Any:
        yield b'{"spec":'
        yield b"{}}"

    async def go() -> None:
        async with (
            HostileHttpServer(HttpBehaviour.OK) as server,
            aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
        ):
            answers = []
            for method, path, body in [
                ("GET", "/api/v1/pods", None),
                ("PUT", "/apis/coordination.k8s.io/v1/leases/x", b'{"kind":"Lease"}'),
                ("POST", "/anything", chunks()),  # chunked transfer encoding
                ("DELETE", "/", None),
                ("HEAD", "/", None),
            ]:
                async with session.request(method, server.url + path, data=body) as resp:
                    answers.append((resp.status, await resp.read()))
            stats = server.stats()
        assert [status for status, _ in answers] == [200] * 5
        assert json.loads(answers[0][1])["kind"] == "Lease"
        assert answers[-1][1] == b""  # HEAD: headers only
        assert (stats.connections, stats.requests, stats.good, stats.hostile) == (1, 5, 5, 0)

    run(go())


def test_status_500_answers_a_kubernetes_status_once_per_request(run: Run) -> None:
    async def go() -> None:
        async with HostileHttpServer(HttpBehaviour.STATUS_500) as server:
            status, _, body = await fetch(server.url + "/api")
            assert server.stats().requests == 1  # aiohttp did not retry
        assert status == 500
        assert json.loads(body)["reason"] == "InternalError"

    run(go())


@pytest.mark.parametrize(
    ("retry_after_s", "header"),
    [pytest.param(None, "3600", id="default"), pytest.param(7, "7", id="set")],
)
def test_status_429_says_when_to_retry(run: Run, retry_after_s: int | None, header: str) -> None:
    async def go() -> None:
        if retry_after_s is None:
            server = HostileHttpServer(HttpBehaviour.STATUS_429)
        else:
            server = HostileHttpServer(HttpBehaviour.STATUS_429, retry_after_s=retry_after_s)
        async with server:
            status, headers, body = await fetch(server.url)
        assert status == 429
        assert headers["Retry-After"] == header
        assert json.loads(body)["details"]["retryAfterSeconds"] == int(header)

    run(go())


def test_garbage_is_not_http_and_ends_the_connection(run: Run) -> None:
    async def go() -> None:
        async with HostileHttpServer(HttpBehaviour.GARBAGE) as server:
            with pytest.raises(aiohttp.ClientResponseError):
                await fetch(server.url)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert server.stats().requests == 2
        assert raw == GARBAGE_BYTES  # all of it, then EOF

    run(go())


def test_reset_answers_a_request_with_rst(run: Run) -> None:
    async def go() -> None:
        async with HostileHttpServer(HttpBehaviour.RESET) as server:
            with pytest.raises(aiohttp.ClientOSError):
                await fetch(server.url)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            with pytest.raises(ConnectionResetError):  # RST, not a FIN's clean EOF
                await asyncio.wait_for(reader.read(), 5)
            writer.close()

    run(go())


def test_silence_reads_the_request_and_keeps_the_connection_without_answering(run: Run) -> None:
    async def go() -> None:
        async with HostileHttpServer(HttpBehaviour.SILENCE) as server:
            with pytest.raises(asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one
                await fetch(server.url, client_timeout=aiohttp.ClientTimeout(sock_read=0.2))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST + REQUEST)  # pipelined: both are read and counted
            await wait_for(lambda: server.stats().requests == 3, "the requests to be read")
            assert server.stats().open_connections == 1
            assert not reader.at_eof()
            writer.close()

    run(go())


def test_trickle_sends_the_head_at_once_then_a_byte_per_interval(run: Run) -> None:
    clock = FakeClock()
    interval_ns = NS_PER_S // 2  # the default trickle_interval_s

    async def go() -> bytes:
        async with (
            HostileHttpServer(HttpBehaviour.TRICKLE, clock=clock) as server,
            aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
            session.get(server.url) as resp,
        ):
            assert resp.status == 200  # the head came before the clock moved
            length = int(resp.headers["Content-Length"])
            body = b""
            for _ in range(length):
                clock.advance(interval_ns)
                body += await resp.content.readexactly(1)
                # The server waits for the clock again before the next byte.
                assert resp.content.read_nowait() == b""
            assert await resp.content.read() == b""
            assert clock.now_ns() == length * interval_ns
            return body

    assert json.loads(run(go()))["kind"] == "Lease"


def test_huge_body_streams_exactly_body_bytes_of_json(run: Run) -> None:
    async def go() -> None:
        body_bytes = 3_000_000  # more than 45 chunks; the 50 MB default takes seconds to read
        async with HostileHttpServer(HttpBehaviour.HUGE_BODY, body_bytes=body_bytes) as server:
            status, headers, body = await fetch(server.url)
        assert status == 200
        assert int(headers["Content-Length"]) == len(body) == body_bytes
        assert json.loads(body)["status"] == "Success"

    run(go())


def test_good_for_requests_answers_that_many_well_then_turns(run: Run) -> None:
    async def go() -> None:
        server = HostileHttpServer(HttpBehaviour.STATUS_500, good_for_requests=2)
        async with server:
            assert await fetch_all(server.url, 4) == [200, 200, 500, 500]
            stats = server.stats()
        assert (stats.good, stats.hostile) == (2, 2)

    run(go())


def test_good_for_s_turns_when_the_servers_clock_says_so(run: Run) -> None:
    clock = FakeClock()

    async def go() -> list[int]:
        server = HostileHttpServer(HttpBehaviour.STATUS_429, good_for_s=10, clock=clock)
        statuses = []
        async with server:
            for advance_ns in (0, 9 * NS_PER_S, NS_PER_S):
                clock.advance(advance_ns)
                statuses += await fetch_all(server.url, 1)
        return statuses

    assert run(go()) == [200, 200, 429]


def test_stop_closes_silent_and_trickling_connections(run: Run) -> None:
    async def one(behaviour: HttpBehaviour) -> bytes:
        async with HostileHttpServer(behaviour, trickle_interval_s=60) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            await wait_for(lambda: server.stats().requests == 1, "the request to be read")
        raw = await asyncio.wait_for(reader.read(), 5)  # EOF once stopped
        writer.close()
        return raw

    async def go() -> None:
        assert await one(HttpBehaviour.SILENCE) == b""
        assert (await one(HttpBehaviour.TRICKLE)).startswith(b"HTTP/1.1 200 OK\r\n")

    run(go())


def test_a_request_it_cannot_parse_gets_400() -> None:
    async def go() -> bytes:
        async with HostileHttpServer(HttpBehaviour.OK) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return raw

    assert asyncio.run(go()).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_servers_refuse_to_listen_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        HostileHttpServer(HttpBehaviour.OK, host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback only"):
        HostileDnsServer(DnsBehaviour.OK, host="192.0.2.1")


# --- DNS ----------------------------------------------------------------------------------------


def query(rdtype: str = "A", name: str = NAME) -> dns.message.Message:
    return dns.message.make_query(name, dns.rdatatype.from_text(rdtype))


async def ask(server: HostileDnsServer, q: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=server.port)


class _FirstDatagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def exchange_raw(server: HostileDnsServer, wire: bytes) -> bytes:
    """Send ``wire`` and return the first datagram back, unparsed."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _FirstDatagram, remote_addr=("127.0.0.1", server.port)
    )
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(protocol.answer, 5)
    finally:
        transport.close()


def test_dns_ok_answers_into_documentation_ranges(run: Run) -> None:
    async def go() -> None:
        async with HostileDnsServer(DnsBehaviour.OK) as server:
            a, aaaa, txt = [await ask(server, query(t)) for t in ("A", "AAAA", "TXT")]
            stats = server.stats()
        assert [r.rcode() for r in (a, aaaa, txt)] == [dns.rcode.NOERROR] * 3
        assert [rr.address for rr in a.answer[0]] == ["192.0.2.1"]
        assert [rr.address for rr in aaaa.answer[0]] == ["2001:db8::1"]
        assert txt.answer == []
        assert (stats.queries, stats.good, stats.tcp_queries) == (3, 3, 0)

    run(go())


@pytest.mark.parametrize(
    ("behaviour", "rcode"),
    [
        pytest.param(DnsBehaviour.REFUSE, dns.rcode.REFUSED, id="refuse"),
        pytest.param(DnsBehaviour.SERVFAIL, dns.rcode.SERVFAIL, id="servfail"),
    ],
)
def test_dns_answers_with_the_failing_rcode(
    run: Run, behaviour: DnsBehaviour, rcode: dns.rcode.Rcode
) -> None:
    async def go() -> dns.message.Message:
        async with HostileDnsServer(behaviour) as server:
            return await ask(server, query())

    answer = run(go())
    assert answer.rcode() == rcode
    assert answer.answer == []


def test_dns_truncate_sets_tc_and_refuses_the_tcp_fallback(run: Run) -> None:
    async def go() -> None:
        async with HostileDnsServer(DnsBehaviour.TRUNCATE) as server:
            answer = await ask(server, query())
            assert answer.flags & dns.flags.TC
            assert answer.answer == []
            with pytest.raises(ConnectionRefusedError):
                await dns.asyncquery.tcp(query(), "127.0.0.1", timeout=5, port=server.port)

    run(go())
    with pytest.raises(ValueError, match="cannot also serve TCP"):
        HostileDnsServer(DnsBehaviour.TRUNCATE, tcp=True)


def test_dns_wrong_id_answers_under_another_id(run: Run) -> None:
    async def go() -> None:
        q = query()
        async with HostileDnsServer(DnsBehaviour.WRONG_ID) as server:
            with pytest.raises(dns.query.BadResponse):
                await ask(server, q)
            answer = dns.message.from_wire(await exchange_raw(server, q.to_wire()))
        assert answer.id == q.id ^ 0x5A5A
        assert [rr.address for rr in answer.answer[0]] == ["192.0.2.1"]

    run(go())


def test_dns_wrong_question_answers_the_right_id_for_another_name(run: Run) -> None:
    async def go() -> None:
        q = query()
        async with HostileDnsServer(DnsBehaviour.WRONG_QUESTION) as server:
            with pytest.raises(dns.query.BadResponse):
                await ask(server, q)
            answer = dns.message.from_wire(await exchange_raw(server, q.to_wire()))
        assert answer.id == q.id
        assert answer.question[0].name.to_text() == "wrong-question.invalid."

    run(go())


def test_dns_garbage_echoes_the_id_then_bytes_no_parser_accepts(run: Run) -> None:
    async def go() -> None:
        q = query()
        async with HostileDnsServer(DnsBehaviour.GARBAGE) as server:
            with pytest.raises(dns.exception.FormError):
                await ask(server, q)
            raw = await exchange_raw(server, q.to_wire())
        assert raw[:2] == q.id.to_bytes(2, "big")
        assert 3 <= len(raw) < 12  # shorter than a DNS header (RFC 1035 4.1.1)

    run(go())


def test_dns_silence_counts_the_query_and_never_answers(run: Run) -> None:
    async def go() -> None:
        async with HostileDnsServer(DnsBehaviour.SILENCE) as server:
            with pytest.raises(dns.exception.Timeout):
                await dns.asyncquery.udp(query(), "127.0.0.1", timeout=0.3, port=server.port)
            assert server.stats().queries == 1

    run(go())


def test_dns_good_for_queries_then_turns(run: Run) -> None:
    async def go() -> list[dns.rcode.Rcode]:
        async with HostileDnsServer(DnsBehaviour.REFUSE, good_for_queries=2) as server:
            return [(await ask(server, query())).rcode() for _ in range(3)]

    assert run(go()) == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.REFUSED]


def test_dns_good_for_s_turns_when_the_servers_clock_says_so(run: Run) -> None:
    clock = FakeClock()

    async def go() -> list[dns.rcode.Rcode]:
        rcodes = []
        async with HostileDnsServer(DnsBehaviour.SERVFAIL, good_for_s=5, clock=clock) as server:
            for advance_ns in (0, 4 * NS_PER_S, NS_PER_S):
                clock.advance(advance_ns)
                rcodes.append((await ask(server, query())).rcode())
        return rcodes

    assert run(go()) == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.SERVFAIL]


def test_dns_over_tcp_on_the_same_port(run: Run) -> None:
    async def go() -> None:
        async with HostileDnsServer(DnsBehaviour.SERVFAIL, tcp=True) as server:
            answer = await dns.asyncquery.tcp(query(), "127.0.0.1", timeout=5, port=server.port)
            udp_answer = await ask(server, query())
            stats = server.stats()
        assert answer.rcode() == udp_answer.rcode() == dns.rcode.SERVFAIL
        assert (stats.queries, stats.tcp_queries) == (2, 1)

    run(go())


# --- separate process ---------------------------------------------------------------------------


def test_process_answers_well_first_then_hostile_and_stops_on_exit() -> None:
    with start_hostile_process("http", HttpBehaviour.STATUS_500, good_for_requests=1) as proc:
        assert asyncio.run(fetch_all(proc.url, 2)) == [200, 500]
        assert proc.poll() is None
    assert proc.poll() == 0  # SIGTERM: a clean exit


def test_process_kills_itself_after_die_after_s() -> None:
    with start_hostile_process("http", "ok", die_after_s=1.0) as proc:
        assert asyncio.run(fetch_all(proc.url, 1)) == [200]
        assert proc.wait(10) == -signal.SIGKILL
        with pytest.raises(aiohttp.ClientConnectorError):
            asyncio.run(fetch_all(proc.url, 1))


def test_dns_process_serves_until_killed() -> None:
    async def ask_addr(addr: str) -> dns.message.Message:
        host, port = addr.rsplit(":", 1)
        return await dns.asyncquery.udp(query(), host, timeout=5, port=int(port))

    with start_hostile_process("dns", DnsBehaviour.REFUSE, good_for_queries=1) as proc:
        rcodes = [asyncio.run(ask_addr(proc.addr)).rcode() for _ in range(2)]
        assert proc.kill() == -signal.SIGKILL
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.REFUSED]


def test_process_exits_by_itself_when_its_parent_is_gone() -> None:
    # The last --parent-pid wins: PID 1 is not our parent, as if the test run had been killed.
    with start_hostile_process("dns", "ok", parent_pid=1) as proc:
        assert proc.wait(10) == 0


def test_process_that_cannot_start_says_why() -> None:
    with pytest.raises(RuntimeError, match="invalid choice: 'nonsense'"):
        start_hostile_process("http", "nonsense")
