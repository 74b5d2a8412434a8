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
        self._ok: dict[int, int] = {}
        self._failed: dict[int, int] = {}
        self._failed_by: dict[int, dict[str, int]] = {}

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        super().complete(op, outcome, intended_ns, sent_ns, done_ns)
        if op in self._watched:
            second = max(0, (intended_ns - self.start_ns) // NS_PER_S)
            counts = self._ok if outcome is Outcome.OK else self._failed
            counts[second] = counts.get(second, 0) + 1
            if outcome is not Outcome.OK:
                by = self._failed_by.setdefault(second, {})
                by[outcome.label] = by.get(outcome.label, 0) + 1

    def seconds(self, *, since_ns: int | None = None) -> list[LookupSecond]:
        """One row per second from the first to the last that saw a watched send, in order,
        seconds measured from ``since_ns`` (default: the recorder's start)."""
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
