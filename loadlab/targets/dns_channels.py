"""The DNS target's sockets: one UDP channel per socket, one pooled TCP channel for truncation.

Each channel keeps its own outstanding map ``id -> (op, intended_ns, sent_ns)`` and hands back the
queries that timed out (``expire``); the target owns matching, classification and completion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import cast

from loadlab.targets.dns_wire import EncodedQuery, answer_id, next_free_id, with_id

Pending = tuple[int, int, int]
"""``(op, intended_ns, sent_ns)`` of a query awaiting its answer."""


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
