"""Merging the workers' interval snapshots of one target into the snapshot one process would
have recorded: counts add, histograms add bucket by bucket (``HdrHistogram.add``, exact for
histograms of the same settings, which every recorder uses)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from loadlab.metrics.recorder import HistKey, IntervalSnapshot, merge_blobs, new_histogram


def empty_snapshot(template: IntervalSnapshot, start_ns: int, end_ns: int) -> IntervalSnapshot:
    """An interval in which no worker recorded anything."""
    return merge_snapshots([], template=template, start_ns=start_ns, end_ns=end_ns)


def merge_snapshots(
    snaps: Sequence[IntervalSnapshot],
    *,
    template: IntervalSnapshot,
    start_ns: int,
    end_ns: int,
) -> IntervalSnapshot:
    """One snapshot holding everything in ``snaps``, spanning [start_ns, end_ns] on the
    leader's clock. ``template`` gives the target, its operations and the run's origin; every
    snapshot must describe the same target and operations (the workers run the same profile)."""
    for snap in snaps:
        if snap.target != template.target or snap.op_names != template.op_names:
            raise ValueError(
                f"cannot merge {snap.target} {snap.op_names} into "
                f"{template.target} {template.op_names}"
            )
    counts: dict[HistKey, int] = {}
    for snap in snaps:
        for key, n in snap.counts.items():
            counts[key] = counts.get(key, 0) + n
    return IntervalSnapshot(
        target=template.target,
        op_names=template.op_names,
        ok_outcomes=template.ok_outcomes,
        origin_ns=template.origin_ns,
        start_ns=start_ns,
        end_ns=end_ns,
        sent=sum(s.sent for s in snaps),
        skipped=sum(s.skipped for s in snaps),
        completed=sum(s.completed for s in snaps),
        errors=sum(s.errors for s in snaps),
        counts=counts,
        corrected={k: _merged(s.corrected.get(k) for s in snaps) for k in counts},
        uncorrected={k: _merged(s.uncorrected.get(k) for s in snaps) for k in counts},
        lag=_merged(s.lag for s in snaps),
    )


def _merged(blobs: Iterable[bytes | None]) -> bytes:
    present = [b for b in blobs if b]
    if len(present) == 1:
        return present[0]
    hist = merge_blobs(present) if present else new_histogram()
    blob: bytes = hist.encode()
    return blob
