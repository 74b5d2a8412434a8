"""The recorder: what it counts, what it measures from where, and what a rotation hands over."""

from __future__ import annotations

import pickle

import pytest
from hdrh.histogram import HdrHistogram

from loadlab.metrics.recorder import HIGHEST_US, IntervalSnapshot, Recorder, merge_blobs
from loadlab.targets.base import Outcome

MS = 1_000_000  # ns
S = 1_000_000_000  # ns
T0 = 5 * S


def _p50_us(blob: bytes) -> int:
    return int(HdrHistogram.decode(blob).get_value_at_percentile(50.0))


def test_corrected_latency_counts_from_intended_time_and_uncorrected_from_send() -> None:
    rec = Recorder("api", ["get-lease"], start_ns=T0)
    # Intended at T0, sent 40 ms late, answered 10 ms after the send.
    rec.on_dispatch(T0, T0 + 40 * MS)
    rec.complete(0, Outcome.OK, T0, T0 + 40 * MS, T0 + 50 * MS)
    snap = rec.rotate(T0 + S)

    corrected_us = _p50_us(snap.corrected[(0, Outcome.OK)])
    uncorrected_us = _p50_us(snap.uncorrected[(0, Outcome.OK)])
    assert corrected_us == pytest.approx(50_000, rel=1e-3)
    assert uncorrected_us == pytest.approx(10_000, rel=1e-3)
    # The two differ by exactly the schedule lag, which the lag histogram holds too.
    assert corrected_us - uncorrected_us == pytest.approx(40_000, rel=2e-3)
    assert _p50_us(snap.lag) == pytest.approx(40_000, rel=1e-3)


def test_outcomes_outside_ok_outcomes_are_errors_per_operation() -> None:
    ok_for_lookup = frozenset({Outcome.OK, Outcome.NXDOMAIN})
    rec = Recorder(
        "dns",
        ["a-exists", "a-missing"],
        ok_outcomes=[frozenset({Outcome.OK}), ok_for_lookup],
        start_ns=0,
    )
    rec.complete(0, Outcome.OK, 0, 0, MS)
    rec.complete(0, Outcome.NXDOMAIN, 0, 0, MS)  # a name that exists came back missing: error
    rec.complete(1, Outcome.NXDOMAIN, 0, 0, MS)  # expected for this operation: fine
    rec.complete(1, Outcome.TIMEOUT, 0, 0, 2 * S)
    snap = rec.rotate(S)

    assert snap.completed == 4
    assert snap.errors == 2
    assert snap.ok == 2
    assert snap.errors_by_outcome() == {"nxdomain": 1, "timeout": 1}
    assert snap.counts == {
        (0, Outcome.OK): 1,
        (0, Outcome.NXDOMAIN): 1,
        (1, Outcome.NXDOMAIN): 1,
        (1, Outcome.TIMEOUT): 1,
    }


def test_rotate_closes_the_interval_and_the_next_starts_empty() -> None:
    rec = Recorder("api", ["get", "list"], start_ns=T0)
    for i in range(10):
        rec.on_dispatch(T0 + i * MS, T0 + i * MS)
        rec.complete(i % 2, Outcome.OK, T0 + i * MS, T0 + i * MS, T0 + (i + 3) * MS)
    rec.on_skipped(4)
    first = rec.rotate(T0 + S)
    second = rec.rotate(T0 + 2 * S)

    assert (first.start_ns, first.end_ns) == (T0, T0 + S)
    assert (first.sent, first.skipped, first.completed) == (10, 4, 10)
    assert (second.start_ns, second.end_ns) == (T0 + S, T0 + 2 * S)
    assert (second.sent, second.skipped, second.completed, second.errors) == (0, 0, 0, 0)
    assert second.counts == {}
    assert second.corrected == {}
    assert HdrHistogram.decode(second.lag).get_total_count() == 0
    assert second.start_s == pytest.approx(1.0)


def test_latency_beyond_one_hour_is_clamped_not_lost() -> None:
    rec = Recorder("api", ["get"], start_ns=0)
    rec.complete(0, Outcome.TIMEOUT, 0, 0, 2 * 3600 * S)
    rec.complete(0, Outcome.OK, 10 * MS, 10 * MS, 5 * MS)  # done before intended: clamped to 0
    snap = rec.rotate(S)

    timeouts = HdrHistogram.decode(snap.corrected[(0, Outcome.TIMEOUT)])
    assert timeouts.get_total_count() == 1
    assert timeouts.get_max_value() >= HIGHEST_US
    assert HdrHistogram.decode(snap.corrected[(0, Outcome.OK)]).get_total_count() == 1


def test_snapshots_pickle_and_merge_into_one_window() -> None:
    rec = Recorder("api", ["get"], start_ns=0)
    snaps: list[IntervalSnapshot] = []
    for second in range(3):
        for i in range(100):
            t = second * S + i * MS
            rec.complete(0, Outcome.OK, t, t, t + (i + 1) * MS)
        snaps.append(rec.rotate((second + 1) * S))

    restored = pickle.loads(pickle.dumps(snaps))
    merged = merge_blobs(s.corrected[(0, Outcome.OK)] for s in restored)
    assert merged.get_total_count() == 300
    assert merged.get_value_at_percentile(100.0) == pytest.approx(100_000, rel=1e-3)


def test_recorder_rejects_ok_outcomes_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="2 operations"):
        Recorder("api", ["get", "list"], ok_outcomes=[frozenset({Outcome.OK})], start_ns=0)


def _histogram_facts(blob: bytes) -> tuple[int, int, int, list[int]]:
    hist = HdrHistogram.decode(blob)
    return hist.get_total_count(), hist.get_min_value(), hist.get_max_value(), list(hist.counts)


def _snapshot_facts(snap: IntervalSnapshot) -> dict[str, object]:
    return {
        "sent": snap.sent,
        "completed": snap.completed,
        "errors": snap.errors,
        "counts": dict(snap.counts),
        "corrected": {k: _histogram_facts(v) for k, v in snap.corrected.items()},
        "uncorrected": {k: _histogram_facts(v) for k, v in snap.uncorrected.items()},
        "lag": _histogram_facts(snap.lag),
    }


def test_a_closed_loop_step_records_what_a_completion_and_an_on_time_dispatch_record() -> None:
    # Completions of two operations and two outcomes, with one late dispatch among them: the
    # two ways a closed loop can record them give the same interval.
    completions = [
        (
            i % 2,
            Outcome.OK if i % 3 else Outcome.SERVER_ERROR,
            T0 + i * MS,
            T0 + i * MS + 7,
            T0 + (i + 3) * MS,
        )
        for i in range(200)
    ]
    by_calls, stepped = (Recorder("api", ["a", "b"], start_ns=T0) for _ in range(2))
    ops = iter(range(1, 1000))
    step, steps_taken = stepped.closed_step(ops.__next__, T0 + S, lambda *c: -1)
    for recorder in (by_calls, stepped):
        recorder.on_dispatch(T0, T0 + 5 * MS)
    answers = []
    for c in completions:
        by_calls.complete(*c)
        by_calls.on_dispatch(c[4], c[4])
        answers.append(step(*c))

    assert answers == list(range(1, 201))  # each step names the next op of the mix
    assert steps_taken() == 200
    facts = [_snapshot_facts(r.rotate(T0 + S)) for r in (by_calls, stepped)]
    assert facts[0] == facts[1]
    assert facts[0]["sent"] == 201
    # The next interval starts with no on-time sends left over.
    assert stepped.rotate(T0 + 2 * S).sent == 0


def test_a_closed_loop_step_hands_completions_from_the_end_on_to_late() -> None:
    rec = Recorder("api", ["a"], start_ns=T0)
    late_calls: list[tuple[int, Outcome, int, int, int]] = []

    def late(op: int, outcome: Outcome, intended: int, sent: int, done: int) -> int:
        late_calls.append((op, outcome, intended, sent, done))
        return -1

    step, steps_taken = rec.closed_step(lambda: 0, T0 + S, late)
    assert step(0, Outcome.OK, T0, T0, T0 + S - 1) == 0
    assert step(0, Outcome.TIMEOUT, T0, T0, T0 + S) == -1  # at the end: late's answer
    assert late_calls == [(0, Outcome.TIMEOUT, T0, T0, T0 + S)]
    assert steps_taken() == 1
    snap = rec.rotate(T0 + 2 * S)
    assert (snap.sent, snap.completed) == (1, 1)  # what late did with it is late's business
