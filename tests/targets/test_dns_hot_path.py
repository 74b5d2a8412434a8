"""The DNS target's hot path: the plain-answer test, the table of queries by ID, send stamps that
never come after the send, oversize answers, ICMP errors and datagrams the kernel refuses."""

from __future__ import annotations

import asyncio
import functools
import socket
import time

import dns.message
import dns.rcode
import pytest

from loadlab.clock import NS_PER_MS, NS_PER_S, FakeClock, MonotonicClock
from loadlab.targets.base import Outcome
from loadlab.targets.dns import DnsQuery, DnsTarget
from loadlab.targets.dns_channels import UdpSocket
from loadlab.targets.dns_wire import (
    ID_SPACE,
    answers,
    classify,
    encode_query,
    is_plain_ok,
    is_truncated,
)
from loadlab.testing.fakes import Completion, FakeRecorder
from loadlab.testing.ports import closed_udp_port
from loadlab.testing.waiting import wait_for

from .helpers import answer_to, closed_loop, query_wire, sweeper_asleep
from .test_dns import fake_dns

QUERY = DnsQuery("kubernetes.default.svc.cluster.local", "A")
TIMEOUT_NS = 200 * NS_PER_MS
SWEEP_NS = TIMEOUT_NS // 10  # the sweep runs every timeout/10 (base.sweep_timeouts)


def _cased(wire: bytes) -> bytes:
    """``wire`` with its question's name in 0x20 mixed case, as some resolvers echo it."""
    name = b"kubernetes"
    return wire.replace(name, b"KuBeRnEtEs", 1)


@pytest.mark.parametrize(
    ("wire", "plain"),
    [
        pytest.param(answer_to(query_wire(QUERY)), True, id="noerror-echoing-the-question"),
        pytest.param(_cased(answer_to(query_wire(QUERY))), False, id="0x20-cased-name"),
        pytest.param(answer_to(query_wire(QUERY), tc=True), False, id="truncated"),
        pytest.param(answer_to(query_wire(QUERY), rcode=dns.rcode.NXDOMAIN), False, id="nxdomain"),
        pytest.param(
            answer_to(query_wire(DnsQuery(QUERY.name, "AAAA"))), False, id="another-question"
        ),
        pytest.param(answer_to(query_wire(QUERY)).ljust(513, b"\0"), False, id="over-512-bytes"),
        pytest.param(query_wire(QUERY), False, id="the-query-itself"),
    ],
)
def test_a_plain_answer_is_one_answers_and_classify_call_ok_and_untruncated(
    wire: bytes, plain: bool
) -> None:
    encoded = encode_query(QUERY)
    assert is_plain_ok(wire, encoded) is plain
    if plain:  # what the hot path then skips must agree
        assert answers(wire, encoded)
        assert classify(wire, encoded) is Outcome.OK
        assert not is_truncated(wire)


@pytest.mark.realtime
def test_an_answer_longer_than_a_udp_answer_may_be_is_malformed() -> None:
    """RFC 1035 4.2.1: 512 bytes at most without EDNS; a server with more sets TC instead."""
    rec = FakeRecorder()

    def oversize(wire: bytes) -> bytes:
        return answer_to(wire).ljust(600, b"\0")

    async def go() -> int:
        async with fake_dns(oversize) as (host, port):
            target = DnsTarget(host, port, [QUERY], timeout_s=5)
            await target.open(rec)
            try:
                target.submit(0, time.monotonic_ns())
                await wait_for(lambda: len(rec.completions) == 1, "the oversize answer")
            finally:
                await target.close()
            return target.stray

    assert asyncio.run(go()) == 0
    assert [c.outcome for c in rec.completions] == [Outcome.MALFORMED]


@pytest.mark.realtime
def test_a_query_is_never_stamped_sent_after_the_server_got_it() -> None:
    """A closed loop sends from inside completions, stamping the send with the answer's clock
    reading (or the intended time, if later): every stamp must precede the server's receipt,
    read from the same clock. Sorted, the n-th send precedes the n-th receipt."""
    received_ns: list[int] = []

    def respond(wire: bytes) -> bytes:
        received_ns.append(time.monotonic_ns())
        return answer_to(wire)

    async def go() -> list[Completion]:
        async with fake_dns(respond) as (host, port):
            clock = MonotonicClock()
            target = DnsTarget(host, port, [QUERY], sockets=2, clock=clock)
            return await closed_loop(target, clock, concurrency=10, run_s=0.2)

    completions = asyncio.run(go())
    assert len(completions) == len(received_ns) > 10
    assert {c.outcome for c in completions} == {Outcome.OK}
    for c in completions:
        assert c.intended_ns <= c.sent_ns <= c.done_ns
    sent = sorted(c.sent_ns for c in completions)
    assert all(s <= r for s, r in zip(sent, sorted(received_ns), strict=True))


@pytest.mark.realtime
def test_a_closed_loop_over_every_kind_of_answer_completes_each_query_once() -> None:
    """With the closed loop's step in place: plain answers, NXDOMAIN, truncated ones (retried
    over TCP), answers to another question (strays: their queries time out) and silence. Each
    query the server got completes once, and the target ends with nothing in flight."""
    served: list[str] = []
    tcp_seen: list[bytes] = []
    kinds = ("ok", "nxdomain", "truncated", "stray", "silent")

    def respond(wire: bytes) -> bytes | None:
        kind = kinds[len(served) % len(kinds)]
        served.append(kind)
        if kind == "nxdomain":
            return answer_to(wire, rcode=dns.rcode.NXDOMAIN)
        if kind == "truncated":
            return answer_to(wire, tc=True)
        if kind == "stray":  # this query's ID, another question
            return wire[:2] + answer_to(query_wire(DnsQuery(QUERY.name, "AAAA")))[2:]
        return None if kind == "silent" else answer_to(wire)

    async def go() -> tuple[list[Completion], DnsTarget]:
        async with fake_dns(respond, tcp_seen=tcp_seen) as (host, port):
            clock = MonotonicClock()
            target = DnsTarget(host, port, [QUERY], sockets=2, timeout_s=0.2, clock=clock)
            return await closed_loop(target, clock, concurrency=10, run_s=0.5), target

    completions, target = asyncio.run(go())
    outcomes = [c.outcome for c in completions]
    assert len(outcomes) == len(served) > 20
    assert outcomes.count(Outcome.OK) == served.count("ok") + served.count("truncated")
    assert len(tcp_seen) == served.count("truncated")
    assert outcomes.count(Outcome.NXDOMAIN) == served.count("nxdomain")
    assert outcomes.count(Outcome.TIMEOUT) == served.count("stray") + served.count("silent")
    assert target.stray == served.count("stray")
    assert target.in_flight == 0


@pytest.mark.realtime
def test_free_ids_skip_the_taken_wrap_and_run_out() -> None:
    async def go() -> None:
        channel = await UdpSocket.connect("127.0.0.1", closed_udp_port())
        try:
            table = channel.table
            for qid in (5, 6, 0xFFFF, 0):
                table[qid] = (0, 0, 0, qid)
            channel.count = 4
            assert channel.free_id(5) == 7
            assert channel.free_id(0xFFFF) == 1
            table[:] = [(0, 0, 0, qid) for qid in range(ID_SPACE)]
            channel.count = ID_SPACE
            assert channel.free_id(0) == -1
        finally:
            channel.close()

    asyncio.run(go())


@pytest.mark.realtime
def test_expire_hands_back_the_queries_sent_before_and_frees_their_ids() -> None:
    async def go() -> None:
        channel = await UdpSocket.connect("127.0.0.1", closed_udp_port())
        try:
            for qid, sent_ns in ((3, 100), (9, 200), (70, 300)):
                channel.table[qid] = (1, sent_ns - 1, sent_ns, qid)
            channel.count = 3
            assert channel.expire(250) == [(1, 99, 100, 3), (1, 199, 200, 9)]
            assert channel.pending() == [(1, 299, 300, 70)]
            assert (channel.count, channel.table[3], channel.table[9]) == (1, None, None)
        finally:
            channel.close()

    asyncio.run(go())


@pytest.mark.realtime
def test_an_id_still_waiting_a_lap_later_is_skipped() -> None:
    """The query on ID 0 waits; 65,536 sends later (the socket's next ID back at 0) the next
    query goes out on ID 1, and the answer to each completes its own query."""
    seen_ids: list[int] = []
    rec = FakeRecorder()

    def answer_all_but_the_first(wire: bytes) -> bytes | None:
        seen_ids.append(dns.message.from_wire(wire).id)
        return None if len(seen_ids) == 1 else answer_to(wire)

    async def go() -> None:
        async with fake_dns(answer_all_but_the_first) as (host, port):
            target = DnsTarget(host, port, [QUERY], timeout_s=5)
            await target.open(rec)
            try:
                target.submit(0, time.monotonic_ns())
                await wait_for(lambda: len(seen_ids) == 1, "the first query")
                target._udp[0].next_id = 0  # as after a lap of 65,536 sends
                target.submit(0, time.monotonic_ns())
                await wait_for(lambda: len(rec.completions) == 1, "the second query's answer")
                assert target.in_flight == 1
            finally:
                await target.close()

    asyncio.run(go())
    assert seen_ids == [0, 1]
    assert [c.outcome for c in rec.completions] == [Outcome.OK, Outcome.TIMEOUT]


@pytest.mark.realtime
def test_a_resolver_port_with_nothing_bound_draws_timeouts_and_nothing_else() -> None:
    """Loopback answers with ICMP port unreachable, which the kernel reports on the socket's
    next read or send (ECONNREFUSED): ignored, no error reaches the event loop, and the queries
    time out on the FakeClock."""
    clock = FakeClock(1_000 * NS_PER_S)
    rec = FakeRecorder()
    loop_errors: list[dict[str, object]] = []

    async def go() -> DnsTarget:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: loop_errors.append(c))
        target = DnsTarget("127.0.0.1", closed_udp_port(), [QUERY], timeout_s=0.2, clock=clock)
        await target.open(rec)
        try:
            for _ in range(3):
                target.submit(0, clock.now_ns())
                for _ in range(3):
                    await asyncio.sleep(0)  # the read that reports the error
            for _ in range(3):
                target.submit(0, clock.now_ns())  # or a send right after one
            await wait_for(lambda: sweeper_asleep(clock), "the sweeper to start")
            clock.advance(TIMEOUT_NS + SWEEP_NS)
            await wait_for(lambda: len(rec.completions) == 6, "the timeouts")
        finally:
            await target.close()
        return target

    target = asyncio.run(go())
    assert loop_errors == []
    assert [c.outcome for c in rec.completions] == [Outcome.TIMEOUT] * 6
    assert (target.stray, target.in_flight) == (0, 0)


@pytest.mark.realtime
def test_a_datagram_refused_for_buffer_space_goes_out_once_writable() -> None:
    async def go() -> bytes:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        with server:
            channel = await UdpSocket.connect(*server.getsockname())
            try:
                channel.send_later(b"late, not lost")
                got: list[bytes] = []
                await wait_for(functools.partial(_received, server, got), "the queued datagram")
                return got[0]
            finally:
                channel.close()

    assert asyncio.run(go()) == b"late, not lost"


def _received(sock: socket.socket, into: list[bytes]) -> bool:
    try:
        into.append(sock.recv(512))
    except BlockingIOError:
        return False
    return True
