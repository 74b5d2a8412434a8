"""The DNS target on the real wire: a real unbound, and small UDP/TCP servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rcode
import pytest

from loadlab.clock import NS_PER_MS, NS_PER_S, FakeClock, MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import OpenLoopRunner, OpenLoopStats
from loadlab.engine.schedule import ConstantRate
from loadlab.errors import TargetMisbehaving, TargetUnreachable
from loadlab.targets.base import Outcome
from loadlab.targets.dns import IDS_PER_SOCKET, DnsQuery, DnsTarget, probe_dns
from loadlab.testing.fakes import Completion, FakeRecorder
from loadlab.testing.ports import closed_udp_port, free_port
from loadlab.testing.unbound import UnboundServer
from loadlab.testing.waiting import wait_for

from .helpers import answer_to, send_and_drain, sweeper_asleep

pytestmark = pytest.mark.realtime

Responder = Callable[[bytes], bytes | None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = self._respond(data)
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)


@asynccontextmanager
async def fake_dns(
    respond: Responder, *, tcp_seen: list[bytes] | None = None
) -> AsyncIterator[tuple[str, int]]:
    """A UDP server answering with ``respond``; with ``tcp_seen``, a TCP one on the same port."""
    loop = asyncio.get_running_loop()
    writers: list[asyncio.StreamWriter] = []

    async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert tcp_seen is not None
        writers.append(writer)
        for _ in range(100):
            try:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                break
            tcp_seen.append(wire)
            answer = answer_to(wire)
            writer.write(len(answer).to_bytes(2, "big") + answer)
        writer.close()

    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(respond), local_addr=("127.0.0.1", port)
    )
    tcp_server: asyncio.Server | None = None
    try:
        if tcp_seen is not None:
            tcp_server = await asyncio.start_server(serve_tcp, "127.0.0.1", port)
        yield "127.0.0.1", port
    finally:
        transport.close()
        if tcp_server is not None:
            tcp_server.close()
            for writer in writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await tcp_server.wait_closed()


async def query_all(
    host: str,
    port: int,
    queries: Sequence[DnsQuery],
    order: Sequence[int],
) -> list[Completion]:
    clock = MonotonicClock()
    return await send_and_drain(DnsTarget(host, port, queries, clock=clock), clock, order)


CLUSTER_QUERIES = [
    DnsQuery("kubernetes.default.svc.cluster.local", "A"),
    DnsQuery("web.default.svc.cluster.local", "AAAA"),
    DnsQuery("nope.default.svc.cluster.local", "A"),
    DnsQuery("web.default.svc.cluster.local.default.svc.cluster.local", "A", expect_nxdomain=True),
]


@pytest.mark.needs_unbound
def test_dns_target_against_unbound_reports_noerror_and_nxdomain(unbound: UnboundServer) -> None:
    completions = asyncio.run(query_all(unbound.host, unbound.port, CLUSTER_QUERIES, [0, 1, 2, 3]))
    assert {c.op: c.outcome for c in completions} == {
        0: Outcome.OK,
        1: Outcome.OK,
        2: Outcome.NXDOMAIN,
        3: Outcome.OK,  # the search-path miss was meant to miss
    }
    for c in completions:
        assert c.intended_ns <= c.sent_ns <= c.done_ns


@pytest.mark.needs_unbound
def test_dns_target_under_the_open_loop_runner_answers_every_query_by_its_own_id(
    unbound: UnboundServer,
) -> None:
    async def go() -> tuple[OpenLoopStats, list[Completion], int]:
        clock = MonotonicClock()
        target = DnsTarget(unbound.host, unbound.port, CLUSTER_QUERIES, sockets=3, clock=clock)
        rec = FakeRecorder()
        await target.open(rec)
        start_ns = clock.now_ns()
        end_ns = start_ns + NS_PER_S // 2
        runner = OpenLoopRunner(
            clock,
            target,
            ConstantRate(4000, start_ns=start_ns, end_ns=end_ns),
            OpMix([1, 1, 1], seed=1),
            rec,
            end_ns=end_ns,
            max_lag_ns=NS_PER_S,
            max_backlog=10_000,
        )
        stats = await runner.run()
        await target.drain(clock.now_ns() + 5 * NS_PER_S)
        await target.close()
        return stats, rec.completions, target.stray

    # A full collection of the test session's heap takes 50-90 ms here; falling due mid-run, it
    # makes the runner catch up in a burst that overflows unbound's socket buffer (drops there,
    # not mix-ups). Collecting first keeps the half second about the target, not the collector.
    gc.collect()
    stats, completions, strays = asyncio.run(go())
    assert stats.planned == stats.dispatched == len(completions) == 2000
    expected = {0: Outcome.OK, 1: Outcome.OK, 2: Outcome.NXDOMAIN}
    wrong = [c for c in completions if c.outcome is not expected[c.op]]
    # Loopback UDP may drop a datagram under load (then TIMEOUT); it never mixes answers up.
    assert all(c.outcome is Outcome.TIMEOUT for c in wrong)
    assert len(wrong) < 20
    assert strays == 0


@pytest.mark.parametrize(
    ("rcode", "outcome"),
    [
        pytest.param(dns.rcode.SERVFAIL, Outcome.SERVFAIL, id="servfail"),
        pytest.param(dns.rcode.REFUSED, Outcome.REFUSED, id="refused"),
        pytest.param(dns.rcode.FORMERR, Outcome.MALFORMED, id="formerr"),
    ],
)
def test_dns_target_maps_error_rcodes(rcode: dns.rcode.Rcode, outcome: Outcome) -> None:
    async def go() -> list[Completion]:
        async with fake_dns(functools.partial(answer_to, rcode=rcode)) as (host, port):
            return await query_all(host, port, CLUSTER_QUERIES[:1], [0, 0])

    assert [c.outcome for c in asyncio.run(go())] == [outcome, outcome]


def test_dns_target_retries_truncated_answers_over_tcp() -> None:
    tcp_seen: list[bytes] = []

    async def go() -> list[Completion]:
        truncated = functools.partial(answer_to, tc=True)
        async with fake_dns(truncated, tcp_seen=tcp_seen) as (host, port):
            return await query_all(host, port, CLUSTER_QUERIES[:2], [0, 1, 0])

    completions = asyncio.run(go())
    assert [c.outcome for c in completions] == [Outcome.OK] * 3
    assert sorted(c.op for c in completions) == [0, 0, 1]
    assert len(tcp_seen) == 3


def test_dns_target_reports_truncation_with_no_tcp_listener_as_connection_error() -> None:
    async def go() -> list[Completion]:
        async with fake_dns(functools.partial(answer_to, tc=True)) as (host, port):
            return await query_all(host, port, CLUSTER_QUERIES[:1], [0, 0])

    assert [c.outcome for c in asyncio.run(go())] == [Outcome.CONN_ERROR] * 2


def test_dns_target_times_out_silence_at_the_first_sweep_past_the_timeout() -> None:
    """Unmatched datagrams count as strays; the queries time out on the FakeClock, not before."""
    clock = FakeClock(1_000 * NS_PER_S)
    timeout_ns = 200 * NS_PER_MS
    sweep_ns = timeout_ns // 10  # the sweep runs every timeout/10 (dns.py)
    rec = FakeRecorder()

    async def go() -> tuple[int, int]:
        async with fake_dns(lambda wire: b"xx") as (host, port):
            target = DnsTarget(host, port, CLUSTER_QUERIES[:1], timeout_s=0.2, clock=clock)
            await target.open(rec)
            try:
                for _ in range(3):
                    target.submit(0, clock.now_ns())
                await wait_for(lambda: target.stray == 3, "the three stray datagrams")
                clock.advance(timeout_ns)  # a sweep at exactly the timeout: nothing expires yet
                await wait_for(lambda: sweeper_asleep(clock), "the sweep at the timeout")
                assert rec.completions == []
                clock.advance(sweep_ns)
                await wait_for(lambda: len(rec.completions) == 3, "the timeouts")
                return target.stray, target.in_flight
            finally:
                await target.close()

    strays, in_flight = asyncio.run(go())
    assert [c.outcome for c in rec.completions] == [Outcome.TIMEOUT] * 3
    assert {c.done_ns - c.sent_ns for c in rec.completions} == {timeout_ns + sweep_ns}
    assert (strays, in_flight) == (3, 0)


def test_dns_target_overflows_past_65536_outstanding_ids_on_a_socket() -> None:
    clock = FakeClock(1_000 * NS_PER_S)
    timeout_ns = 500 * NS_PER_MS
    sweep_ns = timeout_ns // 10  # the sweep runs every timeout/10 (dns.py)
    rec = FakeRecorder()

    async def go() -> int:
        async with fake_dns(lambda wire: None) as (host, port):
            target = DnsTarget(host, port, CLUSTER_QUERIES[:1], timeout_s=0.5, clock=clock)
            await target.open(rec)
            try:
                for _ in range(IDS_PER_SOCKET + 5):
                    target.submit(0, clock.now_ns())
                in_flight = target.in_flight
                await wait_for(lambda: sweeper_asleep(clock), "the sweeper to start")
                clock.advance(timeout_ns + sweep_ns)
                await wait_for(
                    lambda: len(rec.completions) == IDS_PER_SOCKET + 5, "every query to end"
                )
                return in_flight
            finally:
                await target.close()

    in_flight = asyncio.run(go())
    assert in_flight == IDS_PER_SOCKET
    overflowed = [c for c in rec.completions if c.outcome is Outcome.OVERFLOW]
    timed_out = [c for c in rec.completions if c.outcome is Outcome.TIMEOUT]
    assert len(overflowed) == 5
    assert len(timed_out) == IDS_PER_SOCKET
    assert {c.done_ns - c.sent_ns for c in timed_out} == {timeout_ns + sweep_ns}


@pytest.mark.needs_unbound
def test_probe_dns_passes_against_unbound(unbound: UnboundServer) -> None:
    asyncio.run(probe_dns(unbound.addr, timeout_s=2))


def test_probe_dns_says_unreachable_when_nothing_listens() -> None:
    with pytest.raises(TargetUnreachable, match="check --dns"):
        asyncio.run(probe_dns(f"127.0.0.1:{closed_udp_port()}", timeout_s=1))


def test_probe_dns_says_unreachable_when_the_resolver_is_silent() -> None:
    async def go() -> None:
        async with fake_dns(lambda wire: None) as (host, port):
            await probe_dns(f"{host}:{port}", timeout_s=0.2)

    with pytest.raises(TargetUnreachable, match="no DNS answer"):
        asyncio.run(go())


def test_probe_dns_says_misbehaving_when_the_answer_is_not_dns() -> None:
    async def go() -> None:
        async with fake_dns(lambda wire: b"HTTP/1.1 400 Bad Request\r\n\r\n") as (host, port):
            await probe_dns(f"{host}:{port}", timeout_s=1)

    with pytest.raises(TargetMisbehaving, match="not with DNS"):
        asyncio.run(go())
