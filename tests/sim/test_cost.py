"""Work estimates: LIST seats, objects counted, cache vs etcd hold, mutation cost."""

from __future__ import annotations

import pytest

from loadlab.clock import FakeClock
from loadlab.sim.overload.cost import (
    count_list_objects,
    estimate_work,
    list_seats,
    mutation_hold_s,
    mutation_seats,
    seat_cap,
)
from loadlab.sim.overload.model import OverloadModel
from loadlab.sim.overload.parameters import CostConfig, OverloadConfig
from loadlab.sim.promtext import PromRegistry
from tests.sim.helpers import req

COST = CostConfig()


@pytest.mark.parametrize(
    ("objects", "nominal", "seats"),
    [
        pytest.param(0, 245, 1, id="empty-list-one-seat"),
        pytest.param(100, 245, 1, id="100-objects-one-seat"),
        pytest.param(101, 245, 2, id="101-objects-two-seats"),
        pytest.param(550, 245, 6, id="ceil-550-over-100"),
        pytest.param(100_000, 245, 10, id="max-10"),
        pytest.param(100_000, 49, 7, id="15pct-of-global-default"),
        pytest.param(100_000, 25, 3, id="15pct-of-leader-election"),
        pytest.param(100_000, 5, 1, id="never-below-one"),
    ],
)
def test_list_seats_are_objects_over_100_clamped(objects: int, nominal: int, seats: int) -> None:
    assert list_seats(objects, nominal, COST) == seats


@pytest.mark.parametrize(
    ("stored", "limit", "selector", "from_cache", "counted"),
    [
        pytest.param(100_000, 500, True, True, 100_000, id="cache-counts-every-stored"),
        pytest.param(100_000, 500, True, False, 100_500, id="etcd-selector-stored-plus-limit"),
        pytest.param(100_000, 500, False, False, 1_000, id="etcd-plain-two-x-limit"),
        pytest.param(100_000, None, False, False, 100_000, id="no-limit-reads-everything"),
        pytest.param(300, 500, False, False, 300, id="small-collection-capped"),
    ],
)
def test_objects_counted_follow_the_serving_path(
    stored: int, limit: int | None, selector: bool, from_cache: bool, counted: int
) -> None:
    got = count_list_objects(stored=stored, limit=limit, selector=selector, from_cache=from_cache)
    assert got == counted


def test_etcd_list_is_two_hundred_times_the_cache_at_the_reference_scale() -> None:
    # docs/control-plane-model.md, "Hold time": 4k nodes / 100k pods, ~10 s etcd, ~0.05 s cache.
    common = {"objects_scanned": 100_000, "response_bytes": 0, "watchers": 0}
    etcd = estimate_work(
        req("alice", "list"),
        from_cache=False,
        level_nominal_seats=245,
        cfg=COST,
        response_memory_factor=5,
        **common,
    )
    cache = estimate_work(
        req("alice", "list"),
        from_cache=True,
        level_nominal_seats=245,
        cfg=COST,
        response_memory_factor=5,
        **common,
    )
    assert etcd.hold_s == pytest.approx(10.0, rel=0.01)
    assert cache.hold_s == pytest.approx(0.05, rel=0.05)
    assert 150 < etcd.hold_s / cache.hold_s < 250


def test_list_holds_five_times_its_response_in_memory() -> None:
    est = estimate_work(
        req("alice", "list"),
        objects_scanned=1000,
        response_bytes=4_000_000,
        from_cache=True,
        watchers=0,
        level_nominal_seats=245,
        cfg=COST,
        response_memory_factor=5,
    )
    assert est.memory_bytes == 20_000_000


def test_get_is_one_seat_one_millisecond_from_cache() -> None:
    est = estimate_work(
        req("alice", "get"),
        objects_scanned=1,
        response_bytes=20_000,
        from_cache=True,
        watchers=0,
        level_nominal_seats=49,
        cfg=COST,
        response_memory_factor=5,
    )
    assert (est.seats, est.memory_bytes) == (1, 0)
    assert est.hold_s == pytest.approx(0.001, rel=0.01)


@pytest.mark.parametrize(
    ("watchers", "seats"),
    [
        pytest.param(0, 1, id="no-watchers"),
        pytest.param(10, 1, id="ten-watchers"),
        pytest.param(11, 2, id="eleven-watchers"),
        pytest.param(5000, 10, id="capped-at-10"),
    ],
)
def test_mutation_seats_grow_with_watchers(watchers: int, seats: int) -> None:
    assert mutation_seats(watchers, 98, COST) == seats


def test_mutation_hold_is_commit_plus_5ms_per_watcher_capped() -> None:
    assert mutation_hold_s(0, COST) == pytest.approx(0.025)
    assert mutation_hold_s(10, COST) == pytest.approx(0.025 + 0.050)
    assert mutation_hold_s(5000, COST) == pytest.approx(0.025 + 1.0)  # capped, not 25 s


def test_seat_cap_is_configurable() -> None:
    wide = CostConfig(max_seats=20, max_seats_level_fraction=0.5)
    assert seat_cap(245, wide) == 20
    assert list_seats(100_000, 20, wide) == 10


def test_model_estimate_caps_seats_by_the_callers_level() -> None:
    model = OverloadModel(OverloadConfig(), FakeClock(), PromRegistry())
    counts = {"objects_scanned": 100_000, "response_bytes": 0}
    scheduler = req("system:kube-scheduler", "list", "leases")
    # kube-scheduler's non-election LIST -> workload-high (98 seats): full 10
    assert model.estimate(scheduler, from_cache=True, watchers=0, **counts).seats == 10
    anon = req("", "list")
    # global-default: 49 nominal seats -> 15% -> 7
    assert model.estimate(anon, from_cache=True, watchers=0, **counts).seats == 7
