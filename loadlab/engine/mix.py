"""Operation mix: a weighted, seeded, pre-generated sequence of operation indices.

The table is built once: each operation gets its share of ``length`` slots by largest remainder
(so every pass through the table has exactly the requested proportions, up to 1/length), then the
slots are shuffled with a seeded RNG. Per request, ``next_op()`` is one step of a cycle.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

DEFAULT_TABLE_LENGTH = 4096
"""Slots in the table: proportions are exact to 1/4096 (0.025%) per pass."""


class OpMix:
    """Deterministic weighted choice of operation indices (into a target's ``op_names``)."""

    def __init__(
        self, weights: Sequence[float], *, seed: int, length: int = DEFAULT_TABLE_LENGTH
    ) -> None:
        if not weights:
            raise ValueError("an operation mix needs at least one operation")
        if any(w < 0 for w in weights):
            raise ValueError(f"weights must not be negative, got {list(weights)}")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("at least one weight must be positive")
        if length < 1:
            raise ValueError(f"table length must be positive, got {length}")
        exact = [w / total * length for w in weights]
        counts = [int(x) for x in exact]
        # Largest remainder: hand the leftover slots to the biggest fractional parts.
        by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
        for i in by_remainder[: length - sum(counts)]:
            counts[i] += 1
        table = [op for op, n in enumerate(counts) for _ in range(n)]
        random.Random(seed).shuffle(table)
        self._table: tuple[int, ...] = tuple(table)
        self.next_op: Callable[[], int] = itertools.cycle(self._table).__next__
        """The next operation index; the sequence repeats every ``len(self)`` calls. A C-level
        step (no Python frame): it is called once per request."""

    @classmethod
    def single(cls) -> OpMix:
        """A mix of one operation (index 0)."""
        return cls([1.0], seed=0, length=1)

    def __len__(self) -> int:
        return len(self._table)

    @property
    def table(self) -> tuple[int, ...]:
        """The whole pre-generated sequence."""
        return self._table
