"""DNS answers complete a query only when ID *and* question match; the rest are strays.

``answers`` on crafted wires, then the target on the real wire (UDP and TCP on loopback) with a
FakeClock for the timeouts, and the pending-query listing the judge reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from loadlab.clock import NS_PER_MS, NS_PER_S, FakeClock
from loadlab.errors import TargetMisbehaving
from loadlab.targets.base import Outcome
from loadlab.targets.dns import DnsQuery, DnsTarget, probe_dns
from loadlab.targets.dns_wire import answers, encode_query
from loadlab.testing.fakes import FakeRecorder
from loadlab.testing.ports import free_port
from loadlab.testing.waiting import wait_for

from .helpers import answer_to, query_wire, sweeper_asleep

QUERY = DnsQuery("kubernetes.default.svc.cluster.local", "A")
OTHER = DnsQuery("other.default.svc.cluster.local", "A")
TIMEOUT_S = 0.2
TIMEOUT_NS = 200 * NS_PER_MS
SWEEP_NS = TIMEOUT_NS // 10  # the sweep runs every timeout/10 (dns.py)
MAX_TCP_QUERIES = 100
"""Bounds the test TCP server's loop over one connection."""


def with_id_of(wire: bytes, answer: bytes) -> bytes:
    """``answer`` carrying the ID of the query ``wire``."""
    return wire[:2] + answer[2:]


def no_question(rcode: dns.rcode.Rcode) -> bytes:
    msg = dns.message.Message(id=7)
    msg.flags = dns.flags.QR
    msg.set_rcode(rcode)
    return msg.to_wire()


def other_opcode() -> bytes:
    msg = dns.message.make_response(dns.message.from_wire(query_wire(QUERY)))
    msg.set_opcode(dns.opcode.NOTIFY)
    return msg.to_wire()


def other_class() -> bytes:
    query = dns.message.make_query(QUERY.name + ".", "A", "CH")
    query.id = 7
    return answer_to(query.to_wire())


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(answer_to(query_wire(QUERY)), True, id="same-question"),
        pytest.param(
            answer_to(query_wire(DnsQuery("KuBeRnEtEs.Default.SVC.cluster.local"))),
            True,
            id="same-name-in-0x20-case",
        ),
        pytest.param(no_question(dns.rcode.SERVFAIL), True, id="servfail-without-question"),
        pytest.param(no_question(dns.rcode.FORMERR), True, id="formerr-without-question"),
        pytest.param(no_question(dns.rcode.NOERROR), False, id="noerror-without-question"),
        pytest.param(answer_to(query_wire(OTHER)), False, id="other-name"),
        pytest.param(answer_to(query_wire(DnsQuery(QUERY.name, "AAAA"))), False, id="other-type"),
        pytest.param(other_class(), False, id="other-class"),
        pytest.param(other_opcode(), False, id="other-opcode"),
        pytest.param(query_wire(QUERY), False, id="the-query-echoed-not-a-response"),
        pytest.param(answer_to(query_wire(QUERY))[:20], False, id="question-cut-short"),
        pytest.param(b"\x00\x07\x81\x80", False, id="shorter-than-a-header"),
    ],
)
def test_answers_requires_a_response_echoing_our_question(wire: bytes, expected: bool) -> None:
    assert answers(wire, encode_query(QUERY)) is expected


def test_answers_needs_the_exact_type_even_where_lowercasing_would_blur_it() -> None:
    """Type 65 (HTTPS) is byte 0x41, 'A'; lower-cased it would read as type 97."""
    https = DnsQuery(QUERY.name, "HTTPS")
    type_97 = DnsQuery(QUERY.name, "TYPE97")
    assert answers(answer_to(query_wire(https)), encode_query(https))
    assert not answers(answer_to(query_wire(type_97)), encode_query(https))


Respond = Callable[[bytes], list[bytes]]
"""Query wire -> the datagrams (or TCP messages) sent back, in order."""


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, respond: Respond) -> None:
        self._respond = respond
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self._transport is not None
        for answer in self._respond(data):
            self._transport.sendto(answer, addr)


@asynccontextmanager
async def dns_server(
    udp: Respond, tcp: Respond, tcp_seen: list[bytes]
) -> AsyncIterator[tuple[str, int]]:
    """UDP and TCP on one loopback port, answering with ``udp`` and ``tcp``."""
    writers: list[asyncio.StreamWriter] = []

    async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            for _ in range(MAX_TCP_QUERIES):
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
                tcp_seen.append(wire)
                for answer in tcp(wire):
                    writer.write(len(answer).to_bytes(2, "big") + answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(udp), local_addr=("127.0.0.1", port)
    )
    server = await asyncio.start_server(serve_tcp, "127.0.0.1", port)
    try:
        yield "127.0.0.1", port
    finally:
        transport.close()
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


def other_question(wire: bytes) -> bytes:
    return with_id_of(wire, answer_to(query_wire(OTHER)))


def garbage(wire: bytes) -> bytes:
    return wire[:2] + b"\x81\x80garbage, not dns at all"


def echoed(wire: bytes) -> bytes:
    return wire


WRONG = [
    pytest.param(other_question, id="another-question"),
    pytest.param(garbage, id="garbage-with-our-id"),
    pytest.param(echoed, id="our-query-echoed"),
]


@pytest.mark.realtime
@pytest.mark.parametrize("wrong", WRONG)
def test_a_wrong_answer_with_our_id_is_a_stray_and_the_right_one_still_completes(
    wrong: Callable[[bytes], bytes],
) -> None:
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()

    async def go() -> int:
        def respond(wire: bytes) -> list[bytes]:
            return [wrong(wire), answer_to(wire)]

        async with dns_server(respond, respond, []) as (host, port):
            target = DnsTarget(host, port, [QUERY], timeout_s=TIMEOUT_S, clock=clock)
            await target.open(rec)
            try:
                target.submit(0, clock.now_ns())
                await wait_for(lambda: len(rec.completions) == 1, "the right answer")
                await wait_for(lambda: target.stray == 1, "the wrong answer counted")
                return target.stray
            finally:
                await target.close()

    assert asyncio.run(go()) == 1
    assert [c.outcome for c in rec.completions] == [Outcome.OK]


@pytest.mark.realtime
@pytest.mark.parametrize("wrong", WRONG)
def test_a_query_drawing_only_wrong_answers_times_out(wrong: Callable[[bytes], bytes]) -> None:
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()

    async def go() -> tuple[int, int]:
        def respond(wire: bytes) -> list[bytes]:
            return [wrong(wire), wrong(wire)]

        async with dns_server(respond, respond, []) as (host, port):
            target = DnsTarget(host, port, [QUERY], timeout_s=TIMEOUT_S, clock=clock)
            await target.open(rec)
            try:
                target.submit(0, clock.now_ns())
                await wait_for(lambda: target.stray == 2, "both wrong answers counted")
                in_flight = target.in_flight
                await wait_for(lambda: sweeper_asleep(clock), "the sweeper to start")
                clock.advance(TIMEOUT_NS + SWEEP_NS)
                await wait_for(lambda: len(rec.completions) == 1, "the timeout")
                return target.stray, in_flight
            finally:
                await target.close()

    strays, in_flight = asyncio.run(go())
    assert (strays, in_flight) == (2, 1)
    assert [c.outcome for c in rec.completions] == [Outcome.TIMEOUT]


@pytest.mark.realtime
def test_over_tcp_too_an_answer_to_another_question_is_a_stray() -> None:
    """Truncated over UDP, so retried over TCP, where a wrong answer with our ID comes first."""
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()
    tcp_seen: list[bytes] = []

    async def go() -> int:
        async with dns_server(
            lambda wire: [answer_to(wire, tc=True)],
            lambda wire: [other_question(wire), answer_to(wire)],
            tcp_seen,
        ) as (host, port):
            target = DnsTarget(host, port, [QUERY], timeout_s=TIMEOUT_S, clock=clock)
            await target.open(rec)
            try:
                target.submit(0, clock.now_ns())
                await wait_for(lambda: len(rec.completions) == 1, "the answer over TCP")
                return target.stray
            finally:
                await target.close()

    assert asyncio.run(go()) == 1
    assert len(tcp_seen) == 1
    assert [c.outcome for c in rec.completions] == [Outcome.OK]


@pytest.mark.realtime
def test_dns_target_lists_pending_queries_over_udp_and_tcp_until_they_time_out() -> None:
    """Op 0 draws silence; op 1 a truncated answer, then silence over TCP."""
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()
    tcp_seen: list[bytes] = []
    queries = [QUERY, OTHER]

    def udp(wire: bytes) -> list[bytes]:
        asks_other = dns.message.from_wire(wire).question[0].name.to_text() == OTHER.name + "."
        return [answer_to(wire, tc=True)] if asks_other else []

    async def go() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        async with dns_server(udp, lambda wire: [], tcp_seen) as (host, port):
            target = DnsTarget(host, port, queries, timeout_s=TIMEOUT_S, clock=clock)
            await target.open(rec)
            try:
                target.submit(0, 5)
                target.submit(1, 6)
                target.submit(0, 7)
                await wait_for(lambda: len(tcp_seen) == 1, "op 1 retried over TCP")
                pending = target.pending_intended_ns()
                await wait_for(lambda: sweeper_asleep(clock), "the sweeper to start")
                clock.advance(TIMEOUT_NS + SWEEP_NS)
                await wait_for(lambda: len(rec.completions) == 3, "the timeouts")
                return pending, target.pending_intended_ns()
            finally:
                await target.close()

    pending, after = asyncio.run(go())
    assert sorted(pending) == [(0, 5), (0, 7), (1, 6)]
    assert after == []
    assert [c.outcome for c in rec.completions] == [Outcome.TIMEOUT] * 3


@pytest.mark.realtime
def test_probe_dns_says_misbehaving_when_the_answer_is_for_another_question() -> None:
    async def go() -> None:
        def respond(wire: bytes) -> list[bytes]:
            return [other_question(wire)]

        async with dns_server(respond, respond, []) as (host, port):
            await probe_dns(f"{host}:{port}", timeout_s=1)

    with pytest.raises(TargetMisbehaving, match="not with DNS for our question"):
        asyncio.run(go())


@pytest.mark.realtime
def test_a_refused_tcp_fallback_leaves_its_error_but_no_fd_exhaustion() -> None:
    """Truncated over UDP, and nothing listens on TCP: the connect is refused."""
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()

    async def go() -> DnsTarget:
        loop = asyncio.get_running_loop()
        host, port = "127.0.0.1", free_port()  # free for TCP too: the connect is refused
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(lambda wire: [answer_to(wire, tc=True)]), local_addr=(host, port)
        )
        target = DnsTarget(host, port, [QUERY], timeout_s=TIMEOUT_S, clock=clock)
        await target.open(rec)
        try:
            target.submit(0, clock.now_ns())
            await wait_for(lambda: len(rec.completions) == 1, "the refused TCP retry")
        finally:
            await target.close()
            transport.close()
        return target

    target = asyncio.run(go())
    assert [c.outcome for c in rec.completions] == [Outcome.CONN_ERROR]
    assert isinstance(target.last_os_error, ConnectionRefusedError)
    assert target.fd_exhausted is False
