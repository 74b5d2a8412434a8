"""DNS sockets: UDP ones with their queries by ID, and one pooled TCP channel for truncation.

``UdpSocket`` is the load target's: a bare non-blocking socket the target reads itself (many
datagrams per wake-up, no protocol call per datagram) and a 65,536-slot table of the queries
outstanding on it, indexed by ID. ``UdpChannel`` is the agents' client's: an asyncio datagram
protocol handing each datagram to a callback. Both hand back the queries that timed out
(``expire``); their owners do matching, classification and completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

from loadlab.targets.dns_wire import ID_SPACE, EncodedQuery, answer_id, next_free_id, with_id

Pending = tuple[int, int, int]
"""``(op, intended_ns, sent_ns)`` of a query awaiting its answer."""
Sent = tuple[int, int, int, int]
"""``(op, intended_ns, sent_ns, id)`` of a query awaiting its answer on a ``UdpSocket``."""


class UdpSocket:
    """One connected, non-blocking UDP socket and the queries outstanding on it, by ID.

    ``table[id]`` is the ``Sent`` waiting on that ID, or None: a list, so the hot path's lookup is
    one index and a free ID is found by ``list.index`` in C. IDs are handed out in turn
    (``next_id``); one still taken when its turn comes round (a query older than a lap of 65,536
    sends) is skipped. Whoever sends and receives updates ``table``, ``next_id`` and ``count``.

    A datagram the kernel refuses for want of buffer space (EAGAIN) waits in a queue and goes
    out when the socket is writable again (as asyncio's datagram transports do), so it is late,
    never lost. An ICMP error for an earlier datagram (port unreachable), which the kernel reports
    on a later ``send`` or ``recv``, is ignored: the queries it concerns time out.
    """

    __slots__ = (
        "_loop",
        "_sock",
        "_waiting",
        "count",
        "next_id",
        "recv",
        "send",
        "table",
    )

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self.recv = sock.recv
        self.send = sock.send
        self.table: list[Sent | None] = [None] * ID_SPACE
        self.next_id = 0
        self.count = 0
        """Queries in ``table``."""
        self._waiting: deque[bytes] = deque()

    @classmethod
    async def connect(cls, host: str, port: int) -> UdpSocket:
        """A socket connected to ``host``:``port``. An IP address is taken as it is; a name is
        resolved off the event loop (in its executor, as asyncio's own endpoints do)."""
        loop = asyncio.get_running_loop()
        try:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)  # UDP: only sets the peer, never blocks
        except OSError:
            sock.close()
            raise
        return cls(sock, loop)

    def listen(self, on_readable: Callable[[UdpSocket], None]) -> None:
        """Call ``on_readable(self)`` whenever datagrams wait to be read."""
        self._loop.add_reader(self._sock.fileno(), on_readable, self)

    def free_id(self, start: int) -> int:
        """The first free ID from ``start`` on, wrapping; -1 when all 65,536 are taken."""
        if self.count >= ID_SPACE:
            return -1
        try:
            return self.table.index(None, start)
        except ValueError:
            return self.table.index(None, 0, start)

    def send_later(self, wire: bytes) -> None:
        """Queue ``wire``, refused for now (EAGAIN), until the socket is writable."""
        if not self._waiting:
            self._loop.add_writer(self._sock.fileno(), self._flush)
        self._waiting.append(wire)

    def _flush(self) -> None:
        waiting = self._waiting
        while waiting:
            try:
                self.send(waiting[0])
            except BlockingIOError:
                return
            except OSError:
                pass  # an ICMP error of an earlier datagram: this one's query times out
            waiting.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def expire(self, sent_before_ns: int) -> list[Sent]:
        """Remove and return the queries sent before ``sent_before_ns``."""
        if not self.count:
            return []
        table = self.table
        # filter(None, ...) walks the table in C: ~0.2 ms for 65,536 slots, every sweep.
        expired = [sent for sent in filter(None, table) if sent[2] < sent_before_ns]
        for sent in expired:
            table[sent[3]] = None
        self.count -= len(expired)
        return expired

    def pending(self) -> list[Sent]:
        """The queries outstanding, in ID order."""
        return list(filter(None, self.table))

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            if self._waiting:
                self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
        self._waiting.clear()
        self.table = [None] * ID_SPACE
        self.count = 0


class UdpChannel(asyncio.DatagramProtocol):
    """One connected UDP socket and the queries outstanding on it.

    ICMP errors the kernel reports (port unreachable) are ignored: those queries time out.
    """

    def __init__(self, on_answer: Callable[[UdpChannel, bytes], None]) -> None:
        self.outstanding: dict[int, Pending] = {}
        self.next_id = 0
        self._on_answer = on_answer
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def send(self, wire: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(wire)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._on_answer(self, data)

    def expire(self, sent_before_ns: int) -> list[Pending]:
        """Remove and return the queries sent before ``sent_before_ns``."""
        outstanding = self.outstanding
        expired: list[int] = []
        # Insertion order is send order, so the expired ones are a prefix.
        for qid, (_, _, sent_ns) in outstanding.items():
            if sent_ns >= sent_before_ns:
                break
            expired.append(qid)
        return [outstanding.pop(qid) for qid in expired]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.outstanding.clear()


class TcpChannel:
    """A lazily opened, reused TCP connection with RFC 1035 4.2.2 two-byte length framing.

    Queries sent while it connects wait in a list; a failed connect or a lost connection hands
    every waiting and outstanding query to ``on_failed``, with the socket error if there was one;
    the next send reconnects. Each answer
    goes to ``on_answer`` with the query waiting on its ID (or None); the query stays outstanding
    unless ``on_answer`` says the answer was for it.
    """

    def __init__(
        self,
        address: tuple[str, int],
        on_answer: Callable[[Pending | None, bytes], bool],
        on_failed: Callable[[Sequence[Pending], OSError | None], None],
    ) -> None:
        self._address = address
        self._on_answer = on_answer
        self._on_failed = on_failed
        self._outstanding: dict[int, Pending] = {}
        self._waiting: list[tuple[Pending, EncodedQuery]] = []
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._next_id = 0
        self._buffer = bytearray()

    def send(self, pending: Pending, encoded: EncodedQuery) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._write(pending, encoded)
            return
        self._waiting.append((pending, encoded))
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())

    def _write(self, pending: Pending, encoded: EncodedQuery) -> None:
        assert self._transport is not None
        qid = next_free_id(self._outstanding, self._next_id)
        if qid is None:  # 65536 queries outstanding on this connection: refuse this one
            self._on_failed([pending], None)
            return
        self._next_id = (qid + 1) & 0xFFFF
        self._outstanding[qid] = pending
        wire = with_id(qid, encoded)
        self._transport.write(len(wire).to_bytes(2, "big") + wire)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _FramedProtocol(self), *self._address
            )
        except OSError as exc:
            failed = [pending for pending, _ in self._waiting]
            self._waiting.clear()
            self._on_failed(failed, exc)
            return
        finally:
            self._connecting = None
        self._transport = transport
        waiting, self._waiting = self._waiting, []
        for pending, encoded in waiting:
            self._write(pending, encoded)

    def _received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            wire = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            qid = answer_id(wire)
            pending = self._outstanding.get(qid) if qid is not None else None
            if self._on_answer(pending, wire) and qid is not None:
                del self._outstanding[qid]

    def _lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buffer.clear()
        failed = list(self._outstanding.values())
        self._outstanding.clear()
        if failed:
            self._on_failed(failed, exc if isinstance(exc, OSError) else None)

    def pending(self) -> list[Pending]:
        """The queries outstanding on the connection or waiting for it."""
        return [*self._outstanding.values(), *(p for p, _ in self._waiting)]

    def expire(self, sent_before_ns: int) -> list[Pending]:
        """Remove and return the queries sent before ``sent_before_ns``."""
        expired = [p for p in self._outstanding.values() if p[2] < sent_before_ns]
        if expired:
            self._outstanding = {
                qid: p for qid, p in self._outstanding.items() if p[2] >= sent_before_ns
            }
        waiting_expired = [p for p, _ in self._waiting if p[2] < sent_before_ns]
        if waiting_expired:
            self._waiting = [(p, e) for p, e in self._waiting if p[2] >= sent_before_ns]
        return expired + waiting_expired

    def discard(self, pending: Pending) -> None:
        """Forget ``pending`` (its asker gave up waiting): an answer to it is then a stray.

        A scan of what is outstanding: for a client whose queries time out one by one, not for
        the hot path (the load target expires in bulk with ``expire``).
        """
        for qid, outstanding in self._outstanding.items():
            if outstanding is pending:
                del self._outstanding[qid]
                return
        self._waiting = [(p, e) for p, e in self._waiting if p is not pending]

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        self._outstanding.clear()
        self._waiting.clear()
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()


class _FramedProtocol(asyncio.Protocol):
    def __init__(self, channel: TcpChannel) -> None:
        self._channel = channel

    def data_received(self, data: bytes) -> None:
        self._channel._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel._lost(exc)
