"""Batched recording puts every value in exactly the bucket hdrh's ``record_value`` would."""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from loadlab.metrics.batch import ADD_AT_BELOW, record_many
from loadlab.metrics.recorder import HIGHEST_US, new_histogram

EDGES = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 2**31, 2**32 - 1, HIGHEST_US]


def one_by_one(values: list[int], scale: int = 1) -> HdrHistogram:
    hist = new_histogram()
    for value in values:
        hist.record_value(min(max(value // scale, 0), HIGHEST_US))
    return hist


def assert_same(a: HdrHistogram, b: HdrHistogram) -> None:
    assert (np.ctypeslib.as_array(a.counts) == np.ctypeslib.as_array(b.counts)).all()
    assert (a.total_count, a.min_value, a.max_value) == (b.total_count, b.min_value, b.max_value)
    assert HdrHistogram.decode(a.encode()).get_value_at_percentile(99.9) == (
        HdrHistogram.decode(b.encode()).get_value_at_percentile(99.9)
    )


values_us = st.lists(
    st.one_of(
        st.sampled_from(EDGES),
        st.integers(min_value=-10, max_value=HIGHEST_US + 10),
        st.integers(min_value=0, max_value=100_000),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(values_us)
def test_every_value_lands_in_hdrh_s_own_bucket(values: list[int]) -> None:
    batched = new_histogram()
    record_many(batched, values)
    assert_same(batched, one_by_one(values))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-5_000, max_value=10**13), min_size=1, max_size=50))
def test_nanoseconds_scaled_to_microseconds_floor_as_python_does(values_ns: list[int]) -> None:
    batched = new_histogram()
    record_many(batched, values_ns, scale=1000)
    assert_same(batched, one_by_one(values_ns, scale=1000))


def test_a_large_batch_takes_the_bincount_path_with_the_same_result() -> None:
    rng = np.random.default_rng(7)
    values = [int(v) for v in rng.integers(0, 5_000_000, size=ADD_AT_BELOW * 3)]
    batched = new_histogram()
    record_many(batched, values)
    record_many(batched, [])  # nothing recorded, nothing changed
    assert_same(batched, one_by_one(values))
