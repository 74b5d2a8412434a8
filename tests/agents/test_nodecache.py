"""The node's DNS cache: TTL caps, denial, SERVFAIL, no serve-stale by default, eviction."""

from __future__ import annotations

import pytest

from loadlab.agents.base import DnsAnswer
from loadlab.agents.nodecache import NodeCacheConfig, NodeCacheStats, NodeLocalCache
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import (
    dns_address,
    dns_nodata,
    dns_nxdomain,
    dns_refused,
    dns_servfail,
    dns_timeout,
)

NAME = "svc-2.app-1.svc.cluster.local."


@pytest.mark.parametrize(
    ("answer", "kept_s"),
    [
        # node-local-dns: success capped at 30 s, denial at 5 s (docs/control-plane-model.md,
        # "NodeLocal DNSCache").
        pytest.param(dns_address("192.0.2.22", ttl_s=300), 30, id="success-capped-at-30s"),
        pytest.param(dns_address("192.0.2.22", ttl_s=12), 12, id="success-record-ttl-under-cap"),
        pytest.param(dns_nxdomain(ttl_s=60), 5, id="nxdomain-capped-at-5s"),
        pytest.param(dns_nodata(ttl_s=60), 5, id="nodata-capped-at-5s"),
        # CoreDNS cache MINTTL defaults to 5 s: a shorter record TTL is kept 5 s.
        pytest.param(dns_address("192.0.2.22", ttl_s=1), 5, id="success-raised-to-min-ttl"),
        pytest.param(DnsAnswer(Outcome.NXDOMAIN, 3, None), 5, id="denial-without-soa"),
        # CoreDNS caches SERVFAIL for 5 s unless `servfail` says otherwise (cache README).
        pytest.param(dns_servfail(), 5, id="servfail-5s"),
    ],
)
def test_answer_is_served_for_its_clamped_ttl_then_expires(answer: DnsAnswer, kept_s: int) -> None:
    cache = NodeLocalCache()
    cache.store(NAME, "A", answer, 0)
    last_moment = kept_s * NS_PER_S - 1
    hit = cache.lookup(NAME, "A", last_moment)
    assert hit is not None
    assert hit.answer.outcome is answer.outcome
    assert hit.answer.addresses == answer.addresses
    assert not hit.stale
    assert cache.lookup(NAME, "A", kept_s * NS_PER_S) is None
    assert cache.stats() == NodeCacheStats(
        hits=1, misses=1, expired=1, stale_hits=0, stores=1, evictions=0, entries=0
    )


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(dns_timeout(), id="timeout"),
        pytest.param(dns_refused(), id="refused"),
        pytest.param(DnsAnswer(Outcome.MALFORMED, 1), id="malformed"),
    ],
)
def test_timeouts_and_errors_are_not_cached(answer: DnsAnswer) -> None:
    cache = NodeLocalCache()
    cache.store(NAME, "A", answer, 0)
    assert cache.lookup(NAME, "A", 0) is None
    assert cache.stats().stores == 0


def test_servfail_caching_can_be_turned_off() -> None:
    cache = NodeLocalCache(NodeCacheConfig(servfail_ttl_s=0))
    cache.store(NAME, "A", dns_servfail(), 0)
    assert cache.lookup(NAME, "A", 0) is None


def test_hit_carries_the_seconds_left_as_its_ttl() -> None:
    cache = NodeLocalCache()
    cache.store(NAME, "A", dns_address("192.0.2.22", ttl_s=30), 0)
    hit = cache.lookup(NAME, "A", 12 * NS_PER_S + 500 * NS_PER_MS)
    assert hit is not None
    assert hit.answer.ttl_s == 17
    assert hit.expires_ns == 30 * NS_PER_S


def test_no_serve_stale_by_default() -> None:
    cache = NodeLocalCache()
    cache.store(NAME, "A", dns_address("192.0.2.22"), 0)
    assert cache.lookup(NAME, "A", 30 * NS_PER_S) is None
    assert cache.stats().stale_hits == 0


def test_serve_stale_serves_expired_entries_with_ttl_zero_for_its_window() -> None:
    cache = NodeLocalCache(NodeCacheConfig(serve_stale_s=60))
    cache.store(NAME, "A", dns_address("192.0.2.22"), 0)
    stale = cache.lookup(NAME, "A", 31 * NS_PER_S)
    assert stale is not None
    assert stale.stale
    assert stale.answer.ttl_s == 0
    assert stale.answer.addresses == ("192.0.2.22",)
    assert cache.lookup(NAME, "A", 90 * NS_PER_S) is None  # 30 s TTL + 60 s window
    stats = cache.stats()
    assert (stats.hits, stats.stale_hits, stats.expired) == (1, 1, 1)


def test_names_match_case_insensitively_with_or_without_the_trailing_dot() -> None:
    cache = NodeLocalCache()
    cache.store("Svc-2.App-1.svc.cluster.local", "a", dns_address("192.0.2.22"), 0)
    assert cache.lookup(NAME, "A", 0) is not None
    assert cache.lookup(NAME, "AAAA", 0) is None


def test_fresh_answer_replaces_a_cached_denial() -> None:
    cache = NodeLocalCache()
    cache.store(NAME, "A", dns_nxdomain(), 0)
    cache.store(NAME, "A", dns_address("192.0.2.22"), NS_PER_S)
    hit = cache.lookup(NAME, "A", 10 * NS_PER_S)  # past the denial's 5 s: the success serves
    assert hit is not None
    assert hit.answer.addresses == ("192.0.2.22",)
    assert cache.stats().entries == 1


def test_full_store_evicts_its_oldest_entry_and_leaves_the_other_store_alone() -> None:
    cache = NodeLocalCache(NodeCacheConfig(capacity=2))
    for i in range(3):
        cache.store(f"svc-{i}.default.svc.cluster.local.", "A", dns_address("192.0.2.22"), i)
    cache.store("gone.default.svc.cluster.local.", "A", dns_nxdomain(), 0)
    assert cache.lookup("svc-0.default.svc.cluster.local.", "A", 3) is None
    assert cache.lookup("svc-1.default.svc.cluster.local.", "A", 3) is not None
    assert cache.lookup("svc-2.default.svc.cluster.local.", "A", 3) is not None
    assert cache.lookup("gone.default.svc.cluster.local.", "A", 3) is not None
    stats = cache.stats()
    assert (stats.evictions, stats.entries) == (1, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"servfail_ttl_s": 301}, id="servfail-over-5-minutes"),
        pytest.param({"capacity": 0}, id="no-capacity"),
        pytest.param({"serve_stale_s": -1}, id="negative-stale-window"),
        pytest.param({"success_ttl_cap_s": -1}, id="negative-cap"),
    ],
)
def test_config_rejects_impossible_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        NodeCacheConfig(**kwargs)
