"""The agent run's garbage-collector policy, and histograms that are never cyclic garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from hdrh.histogram import HdrHistogram

from loadlab.engine.quietgc import QuietGc
from loadlab.metrics.recorder import decode_histogram, merge_blobs, new_histogram


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_collection_waits_for_the_memory_bound_then_frees_the_cycles() -> None:
    with QuietGc(rss_limit_mb=500.0) as quiet:
        assert not gc.isenabled()
        probe = _Node()
        dead = weakref.ref(probe)
        del probe
        quiet.tick(rss_mb=400.0)  # below the bound: nothing collected
        assert dead() is not None
        assert quiet.collections == 0
        quiet.tick(rss_mb=600.0)
        assert quiet.collections == 1
        assert dead() is None
        # Memory that stays after a collection is live, not garbage: no collection every tick.
        quiet.tick(rss_mb=590.0)
        assert quiet.collections == 1
    assert gc.isenabled()


def test_what_is_alive_when_settled_is_never_scanned_again() -> None:
    with QuietGc() as quiet:
        survivor = _Node()
        quiet.settled()
        assert gc.is_tracked(survivor)
        assert survivor not in gc.get_objects(generation=2)
    del survivor


def test_a_dropped_histogram_is_freed_without_the_collector() -> None:
    source = new_histogram()
    source.record_value(1_000)
    blob = source.encode()
    makers: list[Callable[[], HdrHistogram]] = [
        new_histogram,
        lambda: decode_histogram(blob),
        lambda: merge_blobs([blob, blob]),
    ]
    gc.disable()
    try:
        for make in makers:
            ref = weakref.ref(make())
            assert ref() is None  # freed by reference counting the moment it was dropped
    finally:
        gc.enable()
