"""The DNS target: a query mix over UDP (one DatagramProtocol per socket), TCP on truncation.

Hot path per query: pick a socket round-robin, take the next free 16-bit ID of that socket, prepend
it to the pre-encoded wire, ``sendto``. An answer completes the query waiting on its ID only if it
also echoes that query's question (``answers``; RFC 5452 section 3); any other answer is counted in
``stray`` and completes nothing, so its query still times out unless the right answer comes.
Matched answers are classified from header bytes and completed to the sink. Timeouts come from one
periodic sweep, not a timer per query. This shape reaches ~196k qps on one core here, against
~7.5k qps for dnspython's per-query ``asyncquery.udp`` (docs/peers.md, measured on this
machine), which is never used here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.errors import TargetMisbehaving, TargetUnreachable
from loadlab.targets.address import parse_host_port
from loadlab.targets.base import (
    FD_ERRNOS,
    CompletionSink,
    Outcome,
    sweep_timeouts,
    wait_until_idle,
)
from loadlab.targets.dns_channels import Pending, TcpChannel, UdpChannel
from loadlab.targets.dns_wire import (
    ID_SPACE,
    DnsQuery,
    EncodedQuery,
    answer_id,
    answers,
    classify,
    encode_query,
    is_truncated,
    next_free_id,
    with_id,
)

__all__ = ["IDS_PER_SOCKET", "MAX_SOCKETS", "DnsQuery", "DnsTarget", "probe_dns"]

IDS_PER_SOCKET = ID_SPACE
"""DNS IDs are 16 bits (RFC 1035 4.1.1): beyond that many outstanding on a socket, OVERFLOW."""
MAX_SOCKETS = 64
"""A sanity cap, not a measured limit (the profile's ``dns.sockets`` has the same bound): 64 sockets
already allow 64 x 65536 = 4.2M outstanding queries, far more than a resolver holds, and each
socket costs a file descriptor."""


class DnsTarget:
    """Sends a query mix to one resolver over ``sockets`` UDP sockets, with TCP fallback."""

    def __init__(
        self,
        host: str,
        port: int,
        queries: Sequence[DnsQuery],
        *,
        sockets: int = 1,
        timeout_s: float = 2.0,
        clock: Clock | None = None,
        name: str = "dns",
    ) -> None:
        if not queries:
            raise ValueError("a DNS target needs at least one query")
        if not 1 <= sockets <= MAX_SOCKETS:
            raise ValueError(f"sockets must be 1..{MAX_SOCKETS}, got {sockets}")
        self.name = name
        self.op_names: tuple[str, ...] = tuple(q.op_name for q in queries)
        self.weights: tuple[float, ...] = tuple(q.weight for q in queries)
        self.address = (host, port)
        self._encoded: tuple[EncodedQuery, ...] = tuple(encode_query(q) for q in queries)
        self._socket_count = sockets
        self._timeout_ns = int(timeout_s * NS_PER_S)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._udp: list[UdpChannel] = []
        self._rr = 0
        self._tcp: TcpChannel | None = None
        self._sink: CompletionSink | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._in_flight = 0
        """Submitted and not yet completed (over UDP, or retried over TCP)."""
        self.fd_exhausted = False
        """Set (and never cleared) when the TCP fallback could not connect for EMFILE/ENFILE."""
        self.last_os_error: OSError | None = None
        """The last socket-level error of the TCP fallback: why its queries failed."""
        self.stray = 0
        """Answers (UDP or TCP) that completed nothing: no query waits on their ID (late, after
        its timeout, or unsolicited), or the query waiting on it asked another question, or
        they are not DNS responses at all."""

    async def open(self, sink: CompletionSink) -> None:
        self._sink = sink
        loop = asyncio.get_running_loop()
        for _ in range(self._socket_count):
            channel = UdpChannel(self._on_udp_answer)
            await loop.create_datagram_endpoint(_factory(channel), remote_addr=self.address)
            self._udp.append(channel)
        self._tcp = TcpChannel(self.address, self._on_tcp_answer, self._on_tcp_failed)
        self._sweeper = asyncio.ensure_future(
            sweep_timeouts(self._clock, self._timeout_ns, self._expire)
        )

    def submit(self, op: int, intended_ns: int) -> None:
        channels = self._udp
        channel = channels[self._rr]
        self._rr = self._rr + 1 if self._rr + 1 < len(channels) else 0
        outstanding = channel.outstanding
        qid = (
            None
            if len(outstanding) >= IDS_PER_SOCKET
            else next_free_id(outstanding, channel.next_id)
        )
        if qid is None:
            now_ns = self._clock.now_ns()
            assert self._sink is not None
            self._sink.complete(op, Outcome.OVERFLOW, intended_ns, now_ns, now_ns)
            return
        channel.next_id = (qid + 1) & 0xFFFF
        sent_ns = self._clock.now_ns()
        outstanding[qid] = (op, intended_ns, sent_ns)
        self._in_flight += 1
        channel.send(with_id(qid, self._encoded[op]))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        pending = [p for channel in self._udp for p in channel.outstanding.values()]
        if self._tcp is not None:
            pending += self._tcp.pending()
        return [(op, intended_ns) for op, intended_ns, _ in pending]

    def _on_udp_answer(self, channel: UdpChannel, wire: bytes) -> None:
        qid = answer_id(wire)
        outstanding = channel.outstanding
        pending = outstanding.get(qid) if qid is not None else None
        if qid is None or pending is None or not answers(wire, self._encoded[pending[0]]):
            self.stray += 1
            return
        del outstanding[qid]
        op = pending[0]
        outcome = classify(wire, self._encoded[op])
        if outcome is not Outcome.MALFORMED and is_truncated(wire):
            assert self._tcp is not None
            self._tcp.send(pending, self._encoded[op])  # still in flight
            return
        assert self._sink is not None
        self._in_flight -= 1
        self._sink.complete(op, outcome, pending[1], pending[2], self._clock.now_ns())

    def _on_tcp_answer(self, pending: Pending | None, wire: bytes) -> bool:
        """Complete ``pending`` (the query waiting on ``wire``'s ID, if any) when ``wire`` answers
        it; else count a stray. True when it was completed."""
        if pending is None or not answers(wire, self._encoded[pending[0]]):
            self.stray += 1
            return False
        op, intended_ns, sent_ns = pending
        outcome = classify(wire, self._encoded[op])
        assert self._sink is not None
        self._in_flight -= 1
        self._sink.complete(op, outcome, intended_ns, sent_ns, self._clock.now_ns())
        return True

    def _on_tcp_failed(self, failed: Sequence[Pending], error: OSError | None) -> None:
        if error is not None:
            self.last_os_error = error
            if error.errno in FD_ERRNOS:
                self.fd_exhausted = True
        assert self._sink is not None
        now_ns = self._clock.now_ns()
        for op, intended_ns, sent_ns in failed:
            self._in_flight -= 1
            self._sink.complete(op, Outcome.CONN_ERROR, intended_ns, sent_ns, now_ns)

    def _expire(self, sent_before_ns: int) -> None:
        """Complete as TIMEOUT every query sent before ``sent_before_ns``."""
        sink = self._sink
        if sink is None:
            return
        now_ns = self._clock.now_ns()
        channels: list[UdpChannel | TcpChannel] = [*self._udp]
        if self._tcp is not None:
            channels.append(self._tcp)
        for channel in channels:
            for op, intended_ns, sent_ns in channel.expire(sent_before_ns):
                self._in_flight -= 1
                sink.complete(op, Outcome.TIMEOUT, intended_ns, sent_ns, now_ns)

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self._clock, self, deadline_ns)
        self._expire(self._clock.now_ns() + 1)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._expire(self._clock.now_ns() + 1)
        for channel in self._udp:
            channel.close()
        self._udp = []
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None
        self._in_flight = 0


def _factory(channel: UdpChannel) -> Callable[[], UdpChannel]:
    return lambda: channel


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self, answer: asyncio.Future[bytes]) -> None:
        self._answer = answer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self._answer.done():
            self._answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._answer.done():
            self._answer.set_exception(exc)


async def probe_dns(
    addr: str, timeout_s: float, *, name: str = "kubernetes.default.svc.cluster.local."
) -> None:
    """One UDP query to ``addr`` (``HOST[:PORT]``): any DNS answer to it passes, whatever its rcode.

    Raises TargetUnreachable when nothing answers, TargetMisbehaving when the answer is not DNS.
    """
    host, port = parse_host_port(addr, default_port=53)
    encoded = encode_query(DnsQuery(name))
    qid = 0x4C4C  # any ID will do: one query, one answer
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ProbeProtocol(answer), remote_addr=(host, port)
        )
    except OSError as exc:
        raise TargetUnreachable(
            f"cannot open a UDP socket to {addr} ({exc.strerror or exc}): check --dns"
        ) from None
    try:
        transport.sendto(with_id(qid, encoded))
        wire = await asyncio.wait_for(answer, timeout_s)
    except TimeoutError:
        raise TargetUnreachable(
            f"no DNS answer from {addr} within {timeout_s:g} s: "
            "check --dns and that the resolver is running"
        ) from None
    except OSError as exc:
        raise TargetUnreachable(
            f"nothing answers DNS at {addr} ({exc.strerror or exc}): "
            "check --dns and that the resolver is running"
        ) from None
    finally:
        transport.close()
    if answer_id(wire) != qid or not answers(wire, encoded):
        raise TargetMisbehaving(
            f"{addr} answered, but not with DNS for our question: "
            "check that --dns names a DNS resolver's UDP port"
        )
