"""An awaitable DNS client for agents: ``await client.query(name, rdtype, timeout_s)``.

The load target (``loadlab.targets.dns``) is shaped for a fixed mix whose completions go to a
sink; agents instead ask one question at a time and act on the answer (its addresses, its TTL for
a cache). This client shares the target's wire: ``dns_wire`` builds each query and matches answers
on ID *and* question (RFC 5452 section 3: anything else is counted in ``stray`` and completes
nothing), and ``dns_channels`` holds the sockets: ``sockets`` connected UDP sockets used in turn,
and one TCP connection, opened on the first truncated answer and reused (RFC 7766: a TC answer is
asked again over TCP). Matched answers are parsed with dnspython for their records: agents' query
rates are modest, a few thousand per second, where the target needs header bytes only.

A query's ``timeout_s`` covers its UDP attempt and its TCP retry together; retrying after a
timeout is the flow's business (the glibc resolver's ``attempts:2``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype

from loadlab.agents.base import DnsAnswer
from loadlab.targets.base import FD_ERRNOS, Outcome
from loadlab.targets.dns import MAX_SOCKETS
from loadlab.targets.dns_channels import Pending, TcpChannel, UdpChannel
from loadlab.targets.dns_wire import (
    RCODE_MASK,
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

ENCODED_CACHE_SIZE = 4_096
"""Queries kept pre-encoded. Agents ask a small set of names (services, search-path variants);
past this many the cache starts over rather than grow without bound."""
ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})

Result = bytes | Outcome
"""What a query waits for: the matched answer's wire, or why none will come (CONN_ERROR)."""


@dataclass(eq=False)
class _Asked:
    encoded: EncodedQuery
    answer: asyncio.Future[Result]
    pending: Pending
    """Its ticket on the TCP channel (``(ticket, 0, 0)``), if it moves there."""


def parse_answer(wire: bytes, encoded: EncodedQuery) -> DnsAnswer:
    """The ``DnsAnswer`` of ``wire``, which ``answers(wire, encoded)``.

    TTL: the smallest TTL of the answer records; for an answer without records (NXDOMAIN, or
    NOERROR with no data) the negative-caching TTL, the smaller of the SOA record's TTL and its
    MINIMUM field (RFC 2308 section 5), when the authority section carries the SOA.
    """
    outcome = classify(wire, encoded)
    rcode = wire[3] & RCODE_MASK
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return DnsAnswer(Outcome.MALFORMED, None)
    addresses: list[str] = []
    ttls: list[int] = []
    for rrset in message.answer:
        ttls.append(rrset.ttl)
        if rrset.rdtype in ADDRESS_TYPES and rrset.rdclass == dns.rdataclass.IN:
            addresses.extend(rdata.to_text() for rdata in rrset)
    if not ttls:
        for rrset in message.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                ttls.extend(min(rrset.ttl, rdata.minimum) for rdata in rrset)
    return DnsAnswer(outcome, rcode, min(ttls) if ttls else None, tuple(addresses))


def _protocol(channel: UdpChannel) -> Callable[[], UdpChannel]:
    return lambda: channel


class DnsClient:
    """Asks one resolver (``host``, ``port``) questions over UDP, with TCP on truncation."""

    def __init__(self, host: str, port: int, *, sockets: int = 1) -> None:
        if not 1 <= sockets <= MAX_SOCKETS:
            raise ValueError(f"sockets must be 1..{MAX_SOCKETS}, got {sockets}")
        self.address = (host, port)
        self.sockets = sockets
        self._udp: list[UdpChannel] = []
        self._asked: dict[UdpChannel, dict[int, _Asked]] = {}
        self._next_id: dict[UdpChannel, int] = {}
        self._rr = 0
        self._tcp: TcpChannel | None = None
        self._on_tcp: dict[int, _Asked] = {}
        """Queries retried over TCP, by ticket."""
        self._tickets = itertools.count()
        self._encoded: dict[tuple[str, str], EncodedQuery] = {}
        self._open_lock = asyncio.Lock()
        self.stray = 0
        """Answers that completed nothing: a wrong ID or question, late, or not DNS at all."""
        self.last_os_error: OSError | None = None
        """The last socket error of the TCP fallback: why its queries failed."""
        self.fd_exhausted = False
        """Set, never cleared, when the TCP fallback could not connect for EMFILE/ENFILE."""

    async def open(self) -> None:
        """Create the UDP sockets (the first ``query`` does it if nobody did)."""
        async with self._open_lock:
            if self._udp:
                return
            loop = asyncio.get_running_loop()
            for _ in range(self.sockets):
                channel = UdpChannel(self._on_udp_answer)
                await loop.create_datagram_endpoint(_protocol(channel), remote_addr=self.address)
                self._udp.append(channel)
                self._asked[channel] = {}
                self._next_id[channel] = 0
            self._tcp = TcpChannel(self.address, self._on_tcp_answer, self._on_tcp_failed)

    async def query(self, name: str, rdtype: str = "A", timeout_s: float = 5.0) -> DnsAnswer:
        """Ask ``name`` (absolute, with the trailing dot) for ``rdtype``; never raises for what the
        wire does: a timeout is ``Outcome.TIMEOUT``, a lost TCP connection ``CONN_ERROR``."""
        if not self._udp:
            await self.open()
        encoded = self._encode(name, rdtype)
        channel = self._udp[self._rr]
        self._rr = (self._rr + 1) % len(self._udp)
        asked_here = self._asked[channel]
        qid = next_free_id(asked_here, self._next_id[channel])
        if qid is None:  # 65536 of our queries outstanding on this socket
            return DnsAnswer(Outcome.OVERFLOW, None)
        self._next_id[channel] = (qid + 1) & 0xFFFF
        asked = _Asked(
            encoded,
            asyncio.get_running_loop().create_future(),
            (next(self._tickets), 0, 0),
        )
        asked_here[qid] = asked
        try:
            channel.send(with_id(qid, encoded))
            async with asyncio.timeout(timeout_s):
                result = await asked.answer
        except TimeoutError:
            return DnsAnswer(Outcome.TIMEOUT, None)
        finally:
            self._forget(channel, qid, asked)
        if isinstance(result, Outcome):
            return DnsAnswer(result, None)
        return parse_answer(result, encoded)

    def _encode(self, name: str, rdtype: str) -> EncodedQuery:
        key = (name, rdtype)
        encoded = self._encoded.get(key)
        if encoded is None:
            if len(self._encoded) >= ENCODED_CACHE_SIZE:
                self._encoded.clear()
            encoded = self._encoded[key] = encode_query(DnsQuery(name, rdtype))
        return encoded

    def _forget(self, channel: UdpChannel, qid: int, asked: _Asked) -> None:
        """Drop ``asked`` wherever it still waits (its answer came, or it timed out)."""
        asked_here = self._asked.get(channel)
        if asked_here is not None and asked_here.get(qid) is asked:
            del asked_here[qid]
        if self._on_tcp.pop(asked.pending[0], None) is not None and self._tcp is not None:
            self._tcp.discard(asked.pending)

    def _on_udp_answer(self, channel: UdpChannel, wire: bytes) -> None:
        qid = answer_id(wire)
        asked_here = self._asked.get(channel, {})
        asked = asked_here.get(qid) if qid is not None else None
        if qid is None or asked is None or not answers(wire, asked.encoded):
            self.stray += 1
            return
        del asked_here[qid]
        if is_truncated(wire) and classify(wire, asked.encoded) is not Outcome.MALFORMED:
            assert self._tcp is not None
            self._on_tcp[asked.pending[0]] = asked
            self._tcp.send(asked.pending, asked.encoded)
            return
        if not asked.answer.done():
            asked.answer.set_result(wire)

    def _on_tcp_answer(self, pending: Pending | None, wire: bytes) -> bool:
        asked = self._on_tcp.get(pending[0]) if pending is not None else None
        if asked is None or not answers(wire, asked.encoded):
            self.stray += 1
            return False
        del self._on_tcp[asked.pending[0]]
        if not asked.answer.done():
            asked.answer.set_result(wire)
        return True

    def _on_tcp_failed(self, failed: Sequence[Pending], error: OSError | None) -> None:
        if error is not None:
            self.last_os_error = error
            if error.errno in FD_ERRNOS:
                self.fd_exhausted = True
        for ticket, _, _ in failed:
            asked = self._on_tcp.pop(ticket, None)
            if asked is not None and not asked.answer.done():
                asked.answer.set_result(Outcome.CONN_ERROR)

    async def close(self) -> None:
        """Close the sockets; queries still waiting end as CONN_ERROR."""
        waiting = [a for by_id in self._asked.values() for a in by_id.values()]
        for asked in [*waiting, *self._on_tcp.values()]:
            if not asked.answer.done():
                asked.answer.set_result(Outcome.CONN_ERROR)
        self._asked.clear()
        self._on_tcp.clear()
        for channel in self._udp:
            channel.close()
        self._udp = []
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
