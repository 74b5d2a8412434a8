"""A DNS server on loopback that misbehaves on purpose (UDP, and TCP on the same port if asked).

``async with HostileDnsServer(DnsBehaviour.REFUSE, good_for_queries=10) as server:`` then query
``server.addr``. Good answers point into TEST-NET-1 and the documentation IPv6 prefix (RFC 5737,
RFC 3849), so nothing a client learns from it routes anywhere.

Without ``tcp=True`` the server still binds its TCP port, without listening: a client's TCP
fallback is refused (RST) for certain, and no other program can take the port meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from loadlab.clock import Clock, MonotonicClock
from loadlab.testing.hostile import LOOPBACK, GoodFirst, check_loopback


class DnsBehaviour(StrEnum):
    """What a ``HostileDnsServer`` does with a query once its good phase is over."""

    OK = "ok"
    """A: 192.0.2.1, AAAA: 2001:db8::1, other types NOERROR and empty (a control)."""
    REFUSE = "refuse"
    """Rcode REFUSED."""
    SERVFAIL = "servfail"
    """Rcode SERVFAIL."""
    TRUNCATE = "truncate"
    """An empty answer with TC set; TCP is refused, so the fallback fails too."""
    WRONG_ID = "wrong_id"
    """A good answer under another ID (``id ^ 0x5a5a``)."""
    WRONG_QUESTION = "wrong_question"
    """A good answer with the right ID for another name (``wrong-question.invalid.``)."""
    GARBAGE = "garbage"
    """The query's ID and 1 to 9 random bytes: matched to the query, shorter than any header."""
    SILENCE = "silence"
    """No answer at all."""


@dataclass(frozen=True)
class DnsServerStats:
    """What a ``HostileDnsServer`` has seen since it started."""

    queries: int
    """Messages received, UDP and TCP, parseable or not."""
    tcp_queries: int
    """Of those, over TCP."""
    good: int
    """Of those, answered well (the good phase, or behaviour ``ok``)."""

    @property
    def hostile(self) -> int:
        return self.queries - self.good


ANSWER_TTL_S = 30  # CoreDNS kubernetes plugin default TTL for cluster records
ANSWER_A = "192.0.2.1"  # RFC 5737 TEST-NET-1
ANSWER_AAAA = "2001:db8::1"  # RFC 3849 documentation prefix
WRONG_ID_MASK = 0x5A5A
WRONG_NAME = dns.name.from_text("wrong-question.invalid.")  # RFC 2606: .invalid never resolves
OTHER_WRONG_NAME = dns.name.from_text("other-question.invalid.")
FREE_PORT_TRIES = 50  # a UDP port the kernel picks is seldom taken for TCP: a few tries find one
MAX_TCP_QUERIES_PER_CONNECTION = 1_000_000  # then close, as any server may (RFC 7766 6.2.3)


def good_answer(query: dns.message.Message) -> dns.message.Message:
    """NOERROR with the ID and question echoed; A and AAAA in class IN get one record."""
    response = dns.message.make_response(query)
    if query.question:
        asked = query.question[0]
        address = {dns.rdatatype.A: ANSWER_A, dns.rdatatype.AAAA: ANSWER_AAAA}.get(asked.rdtype)
        if asked.rdclass == dns.rdataclass.IN and address is not None:
            response.answer.append(
                dns.rrset.from_text(asked.name, ANSWER_TTL_S, "IN", asked.rdtype, address)
            )
    return response


def _wrong_question(query: dns.message.Message) -> dns.message.Message:
    asked = query.question[0] if query.question else None
    name = WRONG_NAME if asked is None or asked.name != WRONG_NAME else OTHER_WRONG_NAME
    other = dns.message.make_query(name, asked.rdtype if asked else dns.rdatatype.A)
    other.id = query.id
    other.flags = query.flags
    return good_answer(other)


def hostile_answer(wire: bytes, behaviour: DnsBehaviour, rng: random.Random) -> bytes | None:
    """The wire a server with ``behaviour`` sends for ``wire``; None for no answer.

    Raises ``dns.exception.DNSException`` if ``wire`` is not a query dnspython can parse.
    """
    if behaviour is DnsBehaviour.SILENCE:
        return None
    if behaviour is DnsBehaviour.GARBAGE:
        return wire[:2] + rng.randbytes(rng.randint(1, 9))
    query = dns.message.from_wire(wire)
    match behaviour:
        case DnsBehaviour.REFUSE | DnsBehaviour.SERVFAIL | DnsBehaviour.TRUNCATE:
            response = dns.message.make_response(query)
            if behaviour is DnsBehaviour.TRUNCATE:
                response.flags |= dns.flags.TC
            else:
                refused = behaviour is DnsBehaviour.REFUSE
                response.set_rcode(dns.rcode.REFUSED if refused else dns.rcode.SERVFAIL)
            return response.to_wire()
        case DnsBehaviour.WRONG_ID:
            response = good_answer(query)
            response.id = query.id ^ WRONG_ID_MASK
            return response.to_wire()
        case DnsBehaviour.WRONG_QUESTION:
            return _wrong_question(query).to_wire()
    return good_answer(query).to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: HostileDnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = self._server.answer(data, tcp=False)
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)


def _bind_udp_and_tcp(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port (``port`` 0: one free for both)."""
    for _ in range(FREE_PORT_TRIES if port == 0 else 1):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            continue
        return udp, tcp
    raise OSError(f"no port on {host} free for both UDP and TCP after {FREE_PORT_TRIES} tries")


class HostileDnsServer:
    """A DNS server on loopback that answers with ``behaviour`` after an optional good phase."""

    def __init__(
        self,
        behaviour: DnsBehaviour | str,
        *,
        good_for_s: float | None = None,
        good_for_queries: int | None = None,
        tcp: bool = False,
        host: str = LOOPBACK,
        port: int = 0,
        clock: Clock | None = None,
        seed: int = 0,
    ) -> None:
        check_loopback(host)
        self.behaviour = DnsBehaviour(behaviour)
        if tcp and self.behaviour is DnsBehaviour.TRUNCATE:
            raise ValueError("truncate refuses TCP on purpose: it cannot also serve TCP")
        self.good_first = GoodFirst(good_for_s, good_for_queries)
        self._tcp = tcp
        self._host = host
        self._requested_port = port
        self._clock = clock or MonotonicClock()
        self._rng = random.Random(seed)  # garbage is reproducible from the seed
        self._udp_transport: asyncio.BaseTransport | None = None
        self._tcp_sock: socket.socket | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = 0
        self._started_ns = 0
        self._queries = 0
        self._tcp_queries = 0
        self._good = 0

    @property
    def port(self) -> int:
        if self._udp_transport is None:
            raise RuntimeError("the server has not started")
        return self._port

    @property
    def addr(self) -> str:
        """``127.0.0.1:PORT``, as ``--dns`` takes it."""
        return f"{self._host}:{self.port}"

    @property
    def queries_received(self) -> int:
        return self._queries

    def stats(self) -> DnsServerStats:
        return DnsServerStats(self._queries, self._tcp_queries, self._good)

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """Count one query and return what to send back (None: nothing)."""
        seen_before = self._queries
        self._queries += 1
        self._tcp_queries += tcp
        elapsed_ns = self._clock.now_ns() - self._started_ns
        good = self.behaviour is DnsBehaviour.OK or self.good_first.is_good(elapsed_ns, seen_before)
        try:
            if good:
                self._good += 1
                return good_answer(dns.message.from_wire(wire)).to_wire()
            return hostile_answer(wire, self.behaviour, self._rng)
        except dns.exception.DNSException:
            return None  # not a query: counted, and dropped as a resolver would

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp = _bind_udp_and_tcp(self._host, self._requested_port)
        self._port = int(udp.getsockname()[1])
        self._started_ns = self._clock.now_ns()
        try:
            self._udp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), sock=udp
            )
            if self._tcp:
                self._tcp_server = await asyncio.start_server(self._serve_tcp, sock=tcp)
            else:
                self._tcp_sock = tcp  # bound, never listening: connects are refused
        except BaseException:
            udp.close()
            tcp.close()
            raise

    async def stop(self) -> None:
        if self._udp_transport is None:
            return
        self._udp_transport.close()
        self._udp_transport = None
        if self._tcp_server is not None:
            self._tcp_server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._tcp_sock is not None:
            self._tcp_sock.close()
            self._tcp_sock = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 1035 4.2.2, RFC 7766: a two-byte length before each message, many per connection."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            for _ in range(MAX_TCP_QUERIES_PER_CONNECTION):
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = self.answer(await reader.readexactly(size), tcp=True)
                if answer is not None:
                    writer.write(len(answer).to_bytes(2, "big") + answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client closed the connection
        finally:
            self._tasks.discard(task)
            writer.close()
