"""Outcomes counted by the second a request was *sent* in, not the second it ended.

A recorder files each completion under the interval it completed in, which is right for a
timeline of what the server did. A failure onset wants the other view: resperf buckets queries by
send time, so a lookup that waited 10 s and then failed is charged to the second the application
asked. ``SendSecondLedger`` wraps a ``Recorder`` and, for the operations it is told to watch, also
counts ok / failed per send second (``LookupSecond`` rows for ``loadlab.analysis.onset``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadlab.clock import NS_PER_S
from loadlab.metrics.recorder import Recorder
from loadlab.targets.base import Outcome


@dataclass(frozen=True)
class LookupSecond:
    """Outcomes of the watched operations sent during one second."""

    t_s: float
    """Start of the second, from the origin."""
    ok: int
    failed: int
    failed_by: Mapping[str, int] = field(default_factory=dict)
    """Failures by outcome label (``servfail``, ``nxdomain``, ``timeout``)."""


class LookupCounts:
    """Outcomes of watched operations by send second (seconds from ``start_ns``): what a
    ``SendSecondLedger`` counts, and what a leader adds up from its workers' ledgers."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self._ok: dict[int, int] = {}
        self._failed: dict[int, int] = {}
        self._failed_by: dict[int, dict[str, int]] = {}
        self._sent: dict[int, tuple[int, int, dict[str, int]]] = {}

    def count(self, second: int, ok: bool, label: str) -> None:
        counts = self._ok if ok else self._failed
        counts[second] = counts.get(second, 0) + 1
        if not ok:
            by = self._failed_by.setdefault(second, {})
            by[label] = by.get(label, 0) + 1

    def seconds(self, *, since_ns: int | None = None) -> list[LookupSecond]:
        """One row per second from the first to the last that saw a watched send, in order,
        seconds measured from ``since_ns`` (default: ``start_ns``)."""
        seen = set(self._ok) | set(self._failed)
        if not seen:
            return []
        shift_s = 0.0 if since_ns is None else (since_ns - self.start_ns) / NS_PER_S
        return [
            LookupSecond(
                float(s) - shift_s,
                self._ok.get(s, 0),
                self._failed.get(s, 0),
                dict(self._failed_by.get(s, {})),
            )
            for s in range(min(seen), max(seen) + 1)
        ]

    def changes(self) -> list[list[Any]]:
        """What was counted since the previous call, as ``[second, ok, failed, {label: n}]``
        rows (seconds from ``start_ns``): a worker sends these to its leader every interval."""
        rows: list[list[Any]] = []
        for s in sorted(set(self._ok) | set(self._failed)):
            ok, failed, by = self._ok.get(s, 0), self._failed.get(s, 0), self._failed_by.get(s, {})
            was_ok, was_failed, was_by = self._sent.get(s, (0, 0, {}))
            if ok == was_ok and failed == was_failed:
                continue
            rows.append(
                [s, ok - was_ok, failed - was_failed,
                 {k: n - was_by.get(k, 0) for k, n in by.items() if n != was_by.get(k, 0)}]
            )  # fmt: skip
            self._sent[s] = (ok, failed, dict(by))
        return rows

    def add(self, rows: Sequence[Sequence[Any]], *, shift_s: int = 0) -> None:
        """Add rows from ``changes()`` of another ledger whose start is ``shift_s`` seconds
        after this one's."""
        for s, ok, failed, by in rows:
            second = int(s) + shift_s
            if ok:
                self._ok[second] = self._ok.get(second, 0) + int(ok)
            if failed:
                self._failed[second] = self._failed.get(second, 0) + int(failed)
            for label, n in dict(by).items():
                mine = self._failed_by.setdefault(second, {})
                mine[str(label)] = mine.get(str(label), 0) + int(n)


class SendSecondLedger(Recorder):
    """A ``Recorder`` that also counts the outcomes of ``watched`` operations by send second."""

    def __init__(
        self,
        target: str,
        op_names: Sequence[str],
        *,
        watched: Sequence[str],
        start_ns: int,
    ) -> None:
        super().__init__(target, op_names, start_ns=start_ns)
        self._watched = frozenset(i for i, name in enumerate(self.op_names) if name in watched)
        self.counts = LookupCounts(start_ns)

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        super().complete(op, outcome, intended_ns, sent_ns, done_ns)
        if op in self._watched:
            second = max(0, (intended_ns - self.start_ns) // NS_PER_S)
            self.counts.count(second, outcome is Outcome.OK, outcome.label)

    def seconds(self, *, since_ns: int | None = None) -> list[LookupSecond]:
        """``LookupCounts.seconds`` of what this ledger counted."""
        return self.counts.seconds(since_ns=since_ns)
