"""Operation mix: exact proportions, determinism by seed."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from loadlab.engine.mix import OpMix


def test_mix_gives_each_operation_its_weighted_share_every_pass() -> None:
    mix = OpMix([6, 3, 1], seed=1, length=1000)
    counts = Counter(mix.next_op() for _ in range(2000))
    assert counts == {0: 1200, 1: 600, 2: 200}


def test_mix_rounds_shares_by_largest_remainder() -> None:
    mix = OpMix([1, 1, 1], seed=0, length=10)
    assert sorted(Counter(mix.table).values()) == [3, 3, 4]


def test_mix_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    first = OpMix([1, 2, 3], seed=42)
    second = OpMix([1, 2, 3], seed=42)
    other = OpMix([1, 2, 3], seed=43)
    assert first.table == second.table
    assert first.table != other.table


def test_mix_is_shuffled_not_grouped_by_operation() -> None:
    table = OpMix([1, 1], seed=9, length=100).table
    changes = sum(a != b for a, b in itertools.pairwise(table))
    assert changes > 20


def test_single_mix_always_returns_operation_zero() -> None:
    mix = OpMix.single()
    assert {mix.next_op() for _ in range(10)} == {0}


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([], id="empty"),
        pytest.param([0, 0], id="all-zero"),
        pytest.param([1, -1], id="negative"),
    ],
)
def test_mix_refuses_unusable_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        OpMix(weights, seed=0)
