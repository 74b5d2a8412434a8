"""Execution segments: which part of a run's load worker i of n generates (k6's idea).

Deterministic and stateless: any worker computes its own share from (i, n) alone, so workers on
other machines need no coordination beyond their index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from loadlab.clock import NS_PER_S

T = TypeVar("T")


@dataclass(frozen=True)
class Segment:
    """Worker ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count} is not a segment")

    @property
    def label(self) -> str:
        return f"worker {self.index + 1} of {self.count}"

    def share(self, total: int, *, at_least: int = 0) -> int:
        """This worker's part of ``total`` whole things (connections, sockets, requests in
        flight): the first ``total % count`` workers take one more, so the parts sum to
        ``total``; never fewer than ``at_least`` (a worker needs one connection to send)."""
        base, extra = divmod(total, self.count)
        return max(at_least, base + (1 if self.index < extra else 0))

    def pick(self, items: Sequence[T]) -> list[T]:
        """This worker's items of ``items``: every ``count``-th from its index, so the parts of
        a list of any length differ in size by one at most."""
        return list(items[self.index :: self.count])

    def rate(self, total_per_s: float) -> float:
        return total_per_s / self.count

    def offset_ns(self, total_per_s: float) -> int:
        """Where this worker's evenly spaced sends start: the combined stream of all workers is
        the single stream ``start + k / rate``, worker i taking every k with k mod n = i."""
        return int(self.index * NS_PER_S / total_per_s)

    def seed(self, seed: int | None) -> int | None:
        """A distinct seed per worker (identical seeds would send identical random streams)."""
        return None if seed is None else seed + self.index
