"""When a cluster size tipped: the API's saturation, the DNS failure, and the time between. Pure.

The incident this reproduces (docs/control-plane-model.md, "The incident being reproduced"): the
API servers saturated first; node-local DNS caches hid it until their entries expired, then name
lookups failed. Two times answer "how long did the caches buy us":

- ``api_saturation_at_s``: the first *sustained* breach of the API checks, judged as the knee's
  steps are (error rate, p99 per operation against its SLO; ``loadlab.analysis.steps``) but over
  windows of the agents' traffic instead of steps: a breach counts when the window starting at
  the first bad second and the window right after it both breach (the method's "two consecutive
  failing steps", so a blip shorter than a window is noise, not saturation).
- ``dns_failure_at_s``: the first sustained end-to-end lookup failure rate above a threshold, with
  lookups bucketed by the second they were *sent* in (as resperf buckets queries), so a slow
  failure is charged to when the application asked, not to when it gave up.
- ``dns_failure_onset_s``: the difference, when both happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadlab.analysis.steps import StepCriteria, StepVerdict, judge_step
from loadlab.metrics.ledger import LookupSecond
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.metrics.stats import window_stats

DEFAULT_WINDOW_S = 10.0
"""Sliding window of the checks. Not from a reference: ten one-second intervals hold enough
samples for a p99 at the rates agents send (a 1,000-node cluster renews 100 leases a second),
and it is short beside a DNS cache's 30 s success TTL, so the onset it measures is not blurred."""
DEFAULT_DNS_FAILURE_RATE = 0.01
"""End-to-end lookups failing above this share count as DNS failing. clusterloader2's DNS error
budget is 0.1 % (a healthy-cluster SLO); a failure onset wants a level no healthy second reaches
by chance at a few hundred lookups a second, so 1 %."""


@dataclass(frozen=True)
class Breach:
    """The first sustained breach of a series."""

    at_s: float
    """Seconds from the origin to the start of the first breaching window."""
    why: str
    """The check that failed there, with its numbers."""
    check: str = "error_rate"
    """``error_rate`` (too many errors) or ``p99:<op>`` (too slow)."""
    dominant: str | None = None
    """The most frequent error outcome there (``conn_error``, ``servfail``), when errors."""

    @property
    def about_answers(self) -> bool:
        """The breach rests on what the server answered (errors it sent, connections it
        refused), not on time: a lagging generator makes requests late and slow, and can make
        them time out, but cannot make a server answer 429 or SERVFAIL or refuse a connection."""
        return self.check == "error_rate" and self.dominant not in (None, "timeout", "overflow")


def api_saturation(
    snapshots_by_kind: Mapping[str, Sequence[IntervalSnapshot]],
    criteria: StepCriteria,
    *,
    window_s: float = DEFAULT_WINDOW_S,
) -> Breach | None:
    """The first sustained breach of the API checks by any agent kind, or None.

    Each kind's snapshots are one recorder's intervals (same interval boundaries for all kinds);
    a window breaches when any kind's traffic in it fails the error-rate or a p99 check. The
    generator checks (sent ratio, lag) are not applied: agents are not an open-loop schedule.
    """
    breaches: dict[int, Breach] = {}
    bad: set[int] = set()
    width = 1
    starts = _starts(snapshots_by_kind)
    for kind, snaps in snapshots_by_kind.items():
        width = _width(snaps, window_s)
        for start, verdict in _breaching_windows(snaps, criteria, width):
            breaches.setdefault(
                start,
                Breach(
                    starts[start],
                    f"{kind}: {verdict.why}",
                    verdict.check or "",
                    verdict.dominant_outcome,
                ),
            )
        bad.update(start for start, _ in _breaching_windows(snaps, criteria, 1))
    return _first_sustained(breaches, bad, starts, width)


def dns_failure(
    seconds: Sequence[LookupSecond],
    *,
    max_failure_rate: float = DEFAULT_DNS_FAILURE_RATE,
    window_s: float = DEFAULT_WINDOW_S,
) -> Breach | None:
    """The first sustained window in which more than ``max_failure_rate`` of the lookups sent
    failed, or None. Windows with no lookup at all never breach."""
    width = max(1, round(window_s))
    ordered = sorted(seconds, key=lambda s: s.t_s)
    breaches: dict[int, Breach] = {}
    bad: set[int] = set()
    for i in range(len(ordered)):
        window = ordered[i : i + width]
        sent = sum(s.ok + s.failed for s in window)
        failed = sum(s.failed for s in window)
        if sent and failed / sent > max_failure_rate:
            by: dict[str, int] = {}
            for second in window:
                for label, n in second.failed_by.items():
                    by[label] = by.get(label, 0) + n
            dominant = max(by.items(), key=lambda kv: kv[1])[0] if by else None
            mostly = f", mostly {dominant}" if dominant else ""
            breaches[i] = Breach(
                ordered[i].t_s,
                f"{failed:,} of {sent:,} lookups failed ({failed / sent:.1%} > "
                f"{max_failure_rate:.1%}{mostly})",
                "error_rate",
                dominant,
            )
        one = ordered[i]
        if one.failed and one.failed / (one.ok + one.failed) > max_failure_rate:
            bad.add(i)
    starts = {i: s.t_s for i, s in enumerate(ordered)}
    return _first_sustained(breaches, bad, starts, width)


def onset_s(api_at_s: float | None, dns_at_s: float | None) -> float | None:
    """How long after the API saturated DNS failed (negative: DNS failed first); None unless
    both happened."""
    if api_at_s is None or dns_at_s is None:
        return None
    return dns_at_s - api_at_s


def _breaching_windows(
    snaps: Sequence[IntervalSnapshot], criteria: StepCriteria, width: int
) -> list[tuple[int, StepVerdict]]:
    """(index of the window's first interval, why) for every breaching window of ``width``
    intervals."""
    out: list[tuple[int, StepVerdict]] = []
    for i in range(len(snaps)):
        verdict = window_breach(snaps[i : i + width], criteria)
        if verdict is not None:
            out.append((i, verdict))
    return out


def window_breach(window: Sequence[IntervalSnapshot], criteria: StepCriteria) -> StepVerdict | None:
    """The failed verdict of one window of agent traffic, or None when it passed (or saw no
    completion). The generator checks (sent ratio, lag) are not applied: agents are not an
    open-loop schedule."""
    if not any(s.completed for s in window):
        return None
    agent_criteria = StepCriteria(
        min_sent_ratio=0.0,
        max_lag_p99_ms=float("inf"),
        max_error_rate=criteria.max_error_rate,
        slo_p99_ms=criteria.slo_p99_ms,
        min_achieved_ratio=0.0,
    )
    stats = window_stats(window)
    verdict = judge_step(stats, stats.planned_per_s, agent_criteria)
    return verdict if verdict.failed else None


def _width(snaps: Sequence[IntervalSnapshot], window_s: float) -> int:
    if not snaps:
        return 1
    interval_s = snaps[0].duration_s or 1.0
    return max(1, round(window_s / interval_s))


def _starts(snapshots_by_kind: Mapping[str, Sequence[IntervalSnapshot]]) -> dict[int, float]:
    starts: dict[int, float] = {}
    for snaps in snapshots_by_kind.values():
        for i, s in enumerate(snaps):
            starts.setdefault(i, s.start_s)
    return starts


def _first_sustained(
    breaches: Mapping[int, Breach], bad: set[int], starts: Mapping[int, float], width: int
) -> Breach | None:
    """The first breach that lasts: a candidate start ``j`` whose window ``[j, j + width)`` and
    the next one ``[j + width, j + 2 width)`` both breach. Candidates are the intervals that breach
    on their own (so the onset is the first bad second, not a window's start up to a window
    early); only when none does (a breach spread thin, e.g. a p99 over the whole window) are the
    window starts themselves the candidates. A blip shorter than a window never qualifies."""
    candidates = sorted(bad) if bad else sorted(breaches)
    for j in candidates:
        if j in breaches and j + width in breaches:
            return breaches[j]
    return None
