"""Saturation and DNS failure as they happen, for the live view of a running size.

The size's answer is judged once, at its end, over everything it measured
(``loadlab.sweep_verdict``). A person watching a 20-minute sweep should not wait for that to see
the API tip over: this looks at the recent past once every half window with the same checks
(``loadlab.analysis.onset``) and says when a breach first shows. It only informs; the verdict
may place the onset a second or two differently, having seen the lookups still in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadlab.analysis.onset import Breach, dns_failure, window_breach
from loadlab.analysis.steps import StepCriteria
from loadlab.metrics.ledger import LookupSecond
from loadlab.metrics.recorder import IntervalSnapshot

LOOK_BACK_WINDOWS = 3
"""How many windows of lookups each look covers: a sustained failure needs two, and one more
lets one that began just before the previous look still be found."""


@dataclass
class OnsetWatch:
    """Remembers the first API saturation and DNS failure seen; ``look`` returns what is new."""

    criteria: StepCriteria
    window_s: float
    dns_failure_rate: float
    warmup_s: float
    api: Breach | None = None
    dns: Breach | None = None
    _next_look_s: float = 0.0

    def look(
        self,
        elapsed_s: float,
        api_snapshots: Mapping[str, Sequence[IntervalSnapshot]],
        lookups: Sequence[LookupSecond],
    ) -> list[str]:
        """Check the last few windows (at most every half window); the lines to show."""
        if elapsed_s < max(self.warmup_s, self._next_look_s):
            return []
        self._next_look_s = elapsed_s + self.window_s / 2
        since_s = max(self.warmup_s, elapsed_s - LOOK_BACK_WINDOWS * self.window_s)
        news: list[str] = []
        if self.api is None:
            self.api = self._recent_api_breach(elapsed_s, api_snapshots)
            if self.api is not None:
                news.append(f"API saturated at {self.api.at_s:,.0f} s ({self.api.why})")
        if self.dns is None and lookups:
            recent_lookups = [s for s in lookups if s.t_s >= since_s]
            self.dns = dns_failure(
                recent_lookups, max_failure_rate=self.dns_failure_rate, window_s=self.window_s
            )
            if self.dns is not None:
                text = f"DNS failed at {self.dns.at_s:,.0f} s ({self.dns.why})"
                if self.api is not None and self.dns.at_s > self.api.at_s:
                    text += f"; the caches hid it for {self.dns.at_s - self.api.at_s:,.0f} s"
                news.append(text)
        return news

    def _recent_api_breach(
        self, elapsed_s: float, api_snapshots: Mapping[str, Sequence[IntervalSnapshot]]
    ) -> Breach | None:
        """The last two windows both breaching, for any kind: two merges per kind per look,
        cheap enough at 10,000 kubelets (sliding every window over the recent past was not)."""
        last_from = elapsed_s - self.window_s
        prev_from = last_from - self.window_s
        if prev_from < self.warmup_s:
            return None
        for kind, snaps in api_snapshots.items():
            prev = [s for s in snaps if prev_from <= s.start_s < last_from]
            last = [s for s in snaps if s.start_s >= last_from]
            if not prev or not last:
                continue
            first = window_breach(prev, self.criteria)
            if first is not None and window_breach(last, self.criteria) is not None:
                # The first bad interval, as the verdict places it (only now, on a breach).
                at_s = next(
                    (x.start_s for x in prev if window_breach([x], self.criteria) is not None),
                    prev[0].start_s,
                )
                return Breach(
                    at_s,
                    f"{kind}: {first.why}",
                    first.check or "",
                    first.dominant_outcome,
                )
        return None
