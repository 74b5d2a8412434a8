"""Memory accounting of the sim API server: a baseline plus what in-flight LISTs hold.

Memory, not seats, often kills a real API server (docs/control-plane-model.md, "Memory": a LIST
holds ~5x its response size while in flight; KEP-3157's 16 informers killed a test server). APF
does not protect memory, so this account is checked after a request got its seats: going above
the limit is an OOM kill.
"""

from __future__ import annotations

from dataclasses import dataclass


class OutOfMemory(Exception):
    """The sim API server went above its memory limit: it must crash and restart."""

    def __init__(self, in_use_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"sim API server out of memory: {in_use_bytes} bytes needed, limit {limit_bytes} "
            "(raise memory_limit_mb or lower the LIST load)"
        )
        self.in_use_bytes = in_use_bytes
        self.limit_bytes = limit_bytes


@dataclass(frozen=True)
class Reservation:
    """Bytes held by one in-flight request; release it exactly once."""

    bytes_held: int
    generation: int
    """The account's generation when reserved; a reset() makes older reservations void."""


class MemoryAccount:
    """Baseline (stored objects, the server's business) + in-flight request memory vs a limit."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"memory limit must be positive, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self._baseline_bytes = 0
        self._in_flight_bytes = 0
        self._generation = 0

    @property
    def in_flight_bytes(self) -> int:
        """Bytes held by requests now executing."""
        return self._in_flight_bytes

    @property
    def in_use_bytes(self) -> int:
        return self._baseline_bytes + self._in_flight_bytes

    def set_baseline(self, nbytes: int) -> None:
        """Memory the server holds regardless of requests (its store / watch cache)."""
        if nbytes < 0:
            raise ValueError(f"baseline must be >= 0, got {nbytes}")
        self._baseline_bytes = nbytes

    def reserve(self, nbytes: int) -> Reservation:
        """Hold ``nbytes`` for a request, or raise OutOfMemory if that crosses the limit.

        The failed reservation holds nothing: after an OOM the server restarts and calls reset().
        """
        if nbytes < 0:
            raise ValueError(f"cannot reserve a negative amount ({nbytes})")
        needed = self.in_use_bytes + nbytes
        if needed > self.limit_bytes:
            raise OutOfMemory(needed, self.limit_bytes)
        self._in_flight_bytes += nbytes
        return Reservation(nbytes, self._generation)

    def release(self, reservation: Reservation) -> None:
        """Give the bytes back; a reservation from before the last reset() is ignored."""
        if reservation.generation == self._generation:
            self._in_flight_bytes -= reservation.bytes_held

    def reset(self) -> None:
        """After a restart: nothing in flight (the baseline is the server's to set again)."""
        self._in_flight_bytes = 0
        self._generation += 1
