"""The DNS target: a query mix over UDP (bare non-blocking sockets), TCP on truncation.

Hot path, the shape of the lean HTTP client (``fast_http``). Per query: take the next socket in turn
and its next free 16-bit ID, write the ID into the op's pre-built wire, ``send``; one clock read
stamps the send. In a closed loop's steady state (``set_step``) the query that replaces an answered
one leaves at once on the socket the answer came in on, without ``submit``. Per answer: the socket
is read by the target itself, every datagram waiting at a wake-up in one callback (no protocol call,
future or task per datagram); one clock read stamps it; its ID indexes the socket's 65,536-slot
table (a list, no dict) and it completes the query there only if it also echoes that query's
question (``is_plain_ok``, else ``answers``; RFC 5452 section 3). Any other answer is counted in
``stray`` and completes nothing, so its query still times out unless the right answer comes. A
completion is one ``sink.complete``, or one call of a closed loop's step (the recorder files it with
one list append per latency, ``loadlab.metrics.recorder``). A query sent from within a completion
(the closed loop refilling) takes the answer's clock reading, or its own intended time if later, as
its send time: both were read before the send, so the latency from send is never understated, and
the clock is read once per answer instead of twice. Timeouts come from one periodic sweep, not a
timer per query. dnspython's per-query ``asyncquery.udp`` reaches ~7.5k qps on one core here
(docs/peers.md) and is never used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence

from loadlab.clock import NS_PER_S, Clock, MonotonicClock, now_ns_of
from loadlab.errors import TargetMisbehaving, TargetUnreachable
from loadlab.targets.address import parse_host_port
from loadlab.targets.base import (
    FD_ERRNOS,
    CompleteFn,
    CompletionSink,
    Outcome,
    StepFn,
    bind_completion,
    sweep_timeouts,
    wait_until_idle,
)
from loadlab.targets.dns_channels import Pending, Sent, TcpChannel, UdpSocket
from loadlab.targets.dns_wire import (
    HEADER_LEN,
    ID_SPACE,
    MAX_UDP_ANSWER,
    DnsQuery,
    EncodedQuery,
    answer_id,
    answers,
    classify,
    encode_query,
    is_plain_ok,
    is_truncated,
    with_id,
)

__all__ = ["IDS_PER_SOCKET", "MAX_SOCKETS", "DnsQuery", "DnsTarget", "probe_dns"]

IDS_PER_SOCKET = ID_SPACE
"""DNS IDs are 16 bits (RFC 1035 4.1.1): beyond that many outstanding on a socket, OVERFLOW."""
MAX_SOCKETS = 64
"""A sanity cap, not a measured limit (the profile's ``dns.sockets`` has the same bound): 64 sockets
already allow 64 x 65536 = 4.2M outstanding queries, far more than a resolver holds, and each
socket costs a file descriptor."""
READS_PER_WAKE = range(64)
"""Datagrams read per wake-up at most, so that timers and other sockets get their turn; the rest
wait for the next turn of the loop. libuv reads up to 32 per wake-up (``uv__udp_recvmsg``); a read
here is cheaper than a turn of the loop, so twice that."""
READ_SIZE = MAX_UDP_ANSWER + 1
"""One byte over the UDP limit: a datagram filling it is longer than a UDP answer may be."""
_OK = Outcome.OK


def _not_open(op: int, outcome: Outcome, intended: int, sent: int, done: int) -> None:
    raise RuntimeError("DnsTarget: an answer before open")


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
        self._wires = [bytearray(with_id(0, e)) for e in self._encoded]
        """Per op, the query's wire; each send writes its ID into bytes 0-1 and sends it."""
        self._socket_count = sockets
        self._timeout_ns = int(timeout_s * NS_PER_S)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._now_ns: Callable[[], int] = now_ns_of(self._clock)
        self._udp: list[UdpSocket] = []
        self._next_udp: Iterator[UdpSocket] = _Unopened()
        self._tcp: TcpChannel | None = None
        self._sink: CompletionSink | None = None
        self._complete: CompleteFn = _not_open
        """What an answer's completion calls: the sink's own ``complete``, or, when the sink
        is a ``session.SwitchableSink``, whatever it forwards to (a call less per answer)."""
        self._step: StepFn | None = None
        """A closed loop's step (``set_step``), called in place of ``_complete``."""
        self._sweeper: asyncio.Task[None] | None = None
        self._in_flight = 0
        """Submitted and not yet completed (over UDP, or retried over TCP)."""
        self._answer_ns = 0
        """While an answer is being completed, its clock reading; else 0."""
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
        bind_completion(sink, self._bind)
        for _ in range(self._socket_count):
            channel = await UdpSocket.connect(*self.address)
            self._udp.append(channel)
            channel.listen(self._on_readable)
        self._next_udp = itertools.cycle(self._udp)
        self._tcp = TcpChannel(self.address, self._on_tcp_answer, self._on_tcp_failed)
        self._sweeper = asyncio.ensure_future(
            sweep_timeouts(self._clock, self._timeout_ns, self._expire)
        )

    def set_step(self, step: StepFn | None) -> None:
        """Have a closed loop's ``step`` take each UDP answer's completion and name the query
        sent in its place at once (answers over TCP, timeouts and overflows still go to the
        sink); None: completions go to the sink again."""
        self._step = step

    def _bind(self, complete: CompleteFn) -> None:
        self._complete = complete

    def submit(self, op: int, intended_ns: int) -> None:
        channel = next(self._next_udp)
        table = channel.table
        qid = channel.next_id
        if table[qid] is not None:  # still taken a lap of IDs later: rare, see UdpSocket
            qid = channel.free_id(qid)
            if qid < 0:
                now_ns = self._now_ns()
                assert self._sink is not None
                self._sink.complete(op, Outcome.OVERFLOW, intended_ns, now_ns, now_ns)
                return
        channel.next_id = (qid + 1) & 0xFFFF
        answer_ns = self._answer_ns
        if answer_ns:
            sent_ns = answer_ns if answer_ns > intended_ns else intended_ns
        else:
            sent_ns = self._now_ns()
        table[qid] = (op, intended_ns, sent_ns, qid)
        channel.count += 1
        self._in_flight += 1
        wire = self._wires[op]
        wire[0] = qid >> 8
        wire[1] = qid & 0xFF
        try:
            channel.send(wire)
        except BlockingIOError:
            channel.send_later(bytes(wire))
        except OSError:
            pass  # an ICMP error of an earlier datagram (UdpSocket): this query times out

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        pending = [(s[0], s[1]) for channel in self._udp for s in channel.pending()]
        if self._tcp is not None:
            pending += [(op, intended_ns) for op, intended_ns, _ in self._tcp.pending()]
        return pending

    def _on_readable(self, channel: UdpSocket) -> None:
        """Read and complete every datagram waiting on ``channel`` (up to READS_PER_WAKE)."""
        recv = channel.recv
        send = channel.send
        wires = self._wires
        table = channel.table
        encoded = self._encoded
        now_ns = self._now_ns
        complete = self._complete
        try:
            for _ in READS_PER_WAKE:
                try:
                    wire = recv(READ_SIZE)
                except BlockingIOError:
                    return
                except OSError:
                    continue  # an ICMP error of an earlier datagram, reported once
                done_ns = now_ns()
                qid = (wire[0] << 8) | wire[1] if len(wire) >= HEADER_LEN else -1
                sent = table[qid] if qid >= 0 else None
                if sent is None:  # not DNS, or no query waits on its ID
                    self.stray += 1
                    continue
                op = sent[0]
                query = encoded[op]
                if is_plain_ok(wire, query):
                    outcome = _OK
                else:
                    unusual = self._unusual_answer(channel, wire, sent, query)
                    if unusual is None:
                        continue
                    outcome = unusual
                table[qid] = None
                channel.count -= 1
                self._in_flight -= 1
                self._answer_ns = done_ns
                step = self._step
                if step is None:
                    complete(op, outcome, sent[1], sent[2], done_ns)
                    continue
                # A closed loop's steady state: the query that replaces this one leaves at once
                # on this socket, sent at the answer's time (``submit``, inlined: this runs once
                # per answer; the slow way when the next ID is still taken).
                op = step(op, outcome, sent[1], sent[2], done_ns)
                if op < 0:
                    continue
                qid = channel.next_id
                if table[qid] is not None:
                    self.submit(op, done_ns)
                    continue
                channel.next_id = (qid + 1) & 0xFFFF
                table[qid] = (op, done_ns, done_ns, qid)
                channel.count += 1
                self._in_flight += 1
                query_wire = wires[op]
                query_wire[0] = qid >> 8
                query_wire[1] = qid & 0xFF
                try:
                    send(query_wire)
                except BlockingIOError:
                    channel.send_later(bytes(query_wire))
                except OSError:
                    pass  # an ICMP error of an earlier datagram (UdpSocket): this query times out
        finally:
            self._answer_ns = 0

    def _unusual_answer(
        self, channel: UdpSocket, wire: bytes, sent: Sent, query: EncodedQuery
    ) -> Outcome | None:
        """The outcome of a UDP answer to ``sent`` that is not a plain OK (``is_plain_ok``), or
        None when it completes nothing now: it answers another question (a stray), or it is
        truncated and its query goes on over TCP."""
        if not answers(wire, query):
            self.stray += 1
            return None
        if len(wire) > MAX_UDP_ANSWER:
            return Outcome.MALFORMED
        outcome = classify(wire, query)
        if outcome is not Outcome.MALFORMED and is_truncated(wire):
            channel.table[sent[3]] = None
            channel.count -= 1
            assert self._tcp is not None
            self._tcp.send(sent[:3], query)  # still in flight
            return None
        return outcome

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
        expired: list[Pending] = [
            s[:3] for channel in self._udp for s in channel.expire(sent_before_ns)
        ]
        if self._tcp is not None:
            expired += self._tcp.expire(sent_before_ns)
        for op, intended_ns, sent_ns in expired:
            self._in_flight -= 1
            sink.complete(op, Outcome.TIMEOUT, intended_ns, sent_ns, now_ns)

    async def drain(self, deadline_ns: int) -> None:
        await wait_until_idle(self._clock, self, deadline_ns)
        self._expire(self._clock.now_ns() + 1)

    async def close(self) -> None:
        self._step = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._expire(self._clock.now_ns() + 1)
        for channel in self._udp:
            channel.close()
        self._udp = []
        self._next_udp = _Unopened()
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None
        self._in_flight = 0


class _Unopened(Iterator[UdpSocket]):
    """Where ``submit`` takes its next socket from before ``open`` and after ``close``."""

    def __next__(self) -> UdpSocket:
        raise RuntimeError("DnsTarget: submit before open, or after close")


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
