"""Execution segments and the merge of the workers' intervals: pure functions, no process."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadlab.engine.schedule import ConstantRate
from loadlab.metrics.recorder import Recorder
from loadlab.targets.base import Outcome
from loadlab.workers.merge import empty_snapshot, merge_snapshots
from loadlab.workers.segment import Segment
from loadlab.workers.wire import (
    pending_from_wire,
    pending_to_wire,
    snapshot_from_wire,
    snapshot_to_wire,
)

OPS = ("get", "list")


@pytest.mark.parametrize(("total", "count"), [(64, 2), (7, 3), (1, 4), (100_000, 7)])
def test_shares_add_up_to_the_whole(total: int, count: int) -> None:
    shares = [Segment(i, count).share(total) for i in range(count)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_a_worker_always_gets_a_connection() -> None:
    assert [Segment(i, 4).share(2, at_least=1) for i in range(4)] == [1, 1, 1, 1]


@pytest.mark.parametrize("count", [2, 3, 5])
def test_segments_of_an_even_rate_interleave_into_the_single_stream(count: int) -> None:
    rate, start, end = 1_000.0, 10_000, 10_000 + 2_000_000_000

    def times(schedule: ConstantRate) -> list[int]:
        out = []
        while (t := schedule.next_ns()) is not None:
            out.append(t)
        return out

    single = times(ConstantRate(rate, start_ns=start, end_ns=end))
    parts: list[int] = []
    for i in range(count):
        seg = Segment(i, count)
        parts += times(
            ConstantRate(seg.rate(rate), start_ns=start + seg.offset_ns(rate), end_ns=end)
        )
    assert len(parts) == len(single)
    # Each worker's k-th send is the single stream's (k*n + i)-th, up to float rounding.
    assert all(abs(a - b) <= 2 for a, b in zip(sorted(parts), single, strict=True))


def test_a_bad_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="not a segment"):
        Segment(2, 2)


def _feed(recorders: list[Recorder], single: Recorder, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        op = rng.randrange(len(OPS))
        outcome = rng.choice([Outcome.OK, Outcome.OK, Outcome.OK, Outcome.THROTTLED])
        intended = rng.randrange(0, 1_000_000_000)
        sent = intended + rng.randrange(0, 5_000_000)
        done = sent + int(rng.expovariate(1 / 20_000_000))
        worker = rng.choice(recorders)
        for rec in (worker, single):
            rec.on_dispatch(intended, sent)
            rec.complete(op, outcome, intended, sent, done)


def _counts(blob: bytes) -> list[int]:
    hist = HdrHistogram.decode(blob)
    return list(hist.counts)


def test_merged_intervals_equal_one_recorder_fed_every_value() -> None:
    workers = [Recorder("api", OPS, start_ns=0) for _ in range(3)]
    single = Recorder("api", OPS, start_ns=0)
    _feed(workers, single, 20_000, seed=7)
    end = 1_000_000_000
    parts = [w.rotate(end) for w in workers]
    whole = single.rotate(end)
    merged = merge_snapshots(parts, template=whole, start_ns=0, end_ns=end)
    assert merged.counts == whole.counts
    assert (merged.sent, merged.completed, merged.errors) == (
        whole.sent,
        whole.completed,
        whole.errors,
    )
    for key in whole.counts:
        assert _counts(merged.corrected[key]) == _counts(whole.corrected[key])
        assert _counts(merged.uncorrected[key]) == _counts(whole.uncorrected[key])
    assert _counts(merged.lag) == _counts(whole.lag)


def test_an_interval_no_worker_reported_is_empty_and_spans_its_time() -> None:
    template = Recorder("dns", OPS, start_ns=5).rotate(5)
    snap = empty_snapshot(template, 1_000, 2_000)
    assert (snap.start_ns, snap.end_ns, snap.completed, snap.sent) == (1_000, 2_000, 0, 0)
    assert HdrHistogram.decode(snap.lag).get_total_count() == 0


def test_merging_another_targets_interval_is_refused() -> None:
    api = Recorder("api", OPS, start_ns=0).rotate(1)
    dns = Recorder("dns", OPS, start_ns=0).rotate(1)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_snapshots([dns], template=api, start_ns=0, end_ns=1)


def test_an_interval_survives_the_wire_with_its_clock_moved() -> None:
    rec = Recorder("api", OPS, start_ns=100)
    single = Recorder("api", OPS, start_ns=100)
    _feed([rec], single, 500, seed=3)
    snap = rec.rotate(2_000_000_000)
    back = snapshot_from_wire(json.loads(json.dumps(snapshot_to_wire(snap, 1_000))))
    assert (back.origin_ns, back.start_ns, back.end_ns) == (1_100, 1_100, 2_000_001_000)
    assert back.counts == snap.counts
    assert back.corrected == snap.corrected
    assert back.lag == snap.lag
    assert back.ok_outcomes == snap.ok_outcomes


def test_pending_requests_travel_grouped_by_millisecond() -> None:
    pending = [(0, 1_000_400), (0, 1_000_900), (1, 5_000_000), (0, 2_000_000)]
    back = pending_from_wire(json.loads(json.dumps(pending_to_wire(pending, 0))))
    assert sorted(back) == [(0, 1_000_000), (0, 1_000_000), (0, 2_000_000), (1, 5_000_000)]


def test_the_generator_figure_of_a_pool_is_its_busiest_worker() -> None:
    from typing import Any, cast

    from loadlab.clock import FakeClock
    from loadlab.workers.pool import PoolMonitor, WorkerPool, _Link

    clock = FakeClock()
    pool = WorkerPool(2, clock, interval_ns=1_000_000_000)
    for index, (cpu, rss) in enumerate([(35.0, 100.0), (97.0, 120.0)]):
        link = _Link(index, cast(Any, None), Path("/nonexistent"))
        link.cpu_percent, link.rss_mb = cpu, rss
        pool.links.append(link)
    monitor = PoolMonitor(pool, clock)
    sample = monitor.sample()
    # One saturated worker limits the run as one saturated process would.
    assert (sample.cpu_percent, sample.rss_mb) == (97.0, 220.0)
    assert monitor.summary().cpu_percent_max == 97.0
