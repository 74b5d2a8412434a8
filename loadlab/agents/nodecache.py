"""A node's DNS cache (NodeLocal DNSCache: CoreDNS's ``cache`` plugin), as a pure model. No I/O.

One ``NodeLocalCache`` per simulated node sits between that node's pods and the cluster DNS: a
pod's resolver asks it first (``lookup``) and hands it what the wire answered (``store``). Time is
passed in (``now_ns``, from the replies a flow receives); nothing here reads a clock.

What is faithful (docs/control-plane-model.md, "NodeLocal DNSCache" and "CoreDNS"; the cache
plugin's README, coredns/coredns ``plugin/cache/README.md``, CoreDNS 1.11):

- answers are kept for their TTL, clamped to [``min_ttl_s``, cap]: the stock node-local-dns
  Corefile caps success at **30 s** and denial at **5 s** (kubernetes ``nodelocaldns.yaml``,
  kubernetes#74093); the plugin's MINTTL defaults to **5 s**;
- denial (NXDOMAIN, and NOERROR without records: NODATA) is cached under the negative answer's
  TTL (the SOA's), in a store of its own;
- SERVFAIL *is* cached, for **5 s**: "If this option [``servfail``] is not set, SERVFAIL responses
  will be cached for 5 seconds" (cache README; the option came with coredns#5074, the caching
  itself with coredns#2574). So a pod's retry within 5 s gets the same SERVFAIL back;
- other errors (REFUSED, malformed) and timeouts are never cached (README: "a third category
  (``error``) ... never cached");
- no serve-stale unless configured (``serve_stale_s``; node-local-dns does not set it);
- a capacity of **9984** entries per store, success and denial each (README: "256 shards, each
  holding up to 39 items ... 9984 items").

Simplifications, on purpose:

- CoreDNS evicts at random within a full shard; this model evicts the oldest entry of a full
  store, so runs are deterministic;
- a stale answer is served, but the refresh CoreDNS then sends upstream is not modelled (the
  entry is replaced when a pod next stores a fresh answer, or dropped ``serve_stale_s`` after it
  expired);
- prefetch is not modelled (node-local-dns does not enable it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from loadlab.agents.base import DnsAnswer
from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome

# docs/control-plane-model.md, "NodeLocal DNSCache": nodelocaldns.yaml's `cache 30` with denial
# lowered to 5 s (kubernetes#74093).
SUCCESS_TTL_CAP_S = 30
DENIAL_TTL_CAP_S = 5
# CoreDNS cache plugin README: MINTTL "default 5"; SERVFAIL "cached for 5 seconds" unless the
# `servfail` option says otherwise; capacity 256 shards x 39 = 9984 per store.
MIN_TTL_S = 5
SERVFAIL_TTL_S = 5
CAPACITY_PER_STORE = 9984

_Key = tuple[str, str]  # (lower-cased absolute name, rdtype)


@dataclass(frozen=True)
class NodeCacheConfig:
    """How a node's DNS cache behaves; the defaults are node-local-dns's (see module docstring)."""

    success_ttl_cap_s: int = SUCCESS_TTL_CAP_S
    """Answers with records are kept at most this long."""
    denial_ttl_cap_s: int = DENIAL_TTL_CAP_S
    """NXDOMAIN and NODATA are kept at most this long."""
    min_ttl_s: int = MIN_TTL_S
    """Answers are kept at least this long (never longer than their cap)."""
    servfail_ttl_s: int = SERVFAIL_TTL_S
    """SERVFAIL is kept this long; 0 does not cache it (CoreDNS ``servfail 0``)."""
    serve_stale_s: int = 0
    """How long past expiry an entry is still served (with TTL 0); 0: never (the default)."""
    capacity: int = CAPACITY_PER_STORE
    """Entries per store (success, denial); a full store evicts its oldest entry."""

    def __post_init__(self) -> None:
        if min(self.success_ttl_cap_s, self.denial_ttl_cap_s, self.min_ttl_s) < 0:
            raise ValueError("cache TTLs must be >= 0")
        if not 0 <= self.servfail_ttl_s <= 300:  # README: "may not be greater than 5 minutes"
            raise ValueError("servfail_ttl_s must be within [0, 300]")
        if self.serve_stale_s < 0 or self.capacity < 1:
            raise ValueError("serve_stale_s must be >= 0 and capacity >= 1")


@dataclass(frozen=True)
class CachedAnswer:
    """What the cache holds for one question, as served at the moment of the lookup."""

    answer: DnsAnswer
    """The stored answer, its ``ttl_s`` set to the seconds left (0 when stale)."""
    expires_ns: int
    stale: bool
    """True when served past its expiry (only with ``serve_stale_s``)."""


@dataclass(frozen=True)
class NodeCacheStats:
    hits: int
    """Lookups answered from the cache, stale ones included."""
    misses: int
    """Lookups the cache could not answer (nothing stored, or only an expired entry)."""
    expired: int
    """Of the misses, those that found an entry past its expiry (and dropped it)."""
    stale_hits: int
    stores: int
    """Answers taken in (uncacheable ones are not counted)."""
    evictions: int
    entries: int


@dataclass(frozen=True)
class _Entry:
    answer: DnsAnswer
    expires_ns: int


class NodeLocalCache:
    """One node's DNS cache: ``lookup`` before the wire, ``store`` what the wire said."""

    def __init__(self, config: NodeCacheConfig | None = None) -> None:
        self.config = config or NodeCacheConfig()
        self._success: OrderedDict[_Key, _Entry] = OrderedDict()
        self._denial: OrderedDict[_Key, _Entry] = OrderedDict()
        self._hits = self._misses = self._expired = self._stale_hits = 0
        self._stores = self._evictions = 0

    def lookup(self, name: str, rdtype: str, now_ns: int) -> CachedAnswer | None:
        """The answer for ``name``/``rdtype`` if one is fresh (or stale and servable), else None."""
        key = _key(name, rdtype)
        # ``store`` keeps a question in one store at most, so the order of the checks is moot.
        store = self._denial if key in self._denial else self._success
        entry = store.get(key)
        if entry is None:
            self._misses += 1
            return None
        if now_ns < entry.expires_ns:
            self._hits += 1
            left_s = (entry.expires_ns - now_ns) // NS_PER_S
            return CachedAnswer(replace(entry.answer, ttl_s=left_s), entry.expires_ns, stale=False)
        if now_ns < entry.expires_ns + self.config.serve_stale_s * NS_PER_S:
            self._hits += 1
            self._stale_hits += 1
            # cache README: stale responses "have a TTL of 0".
            return CachedAnswer(replace(entry.answer, ttl_s=0), entry.expires_ns, stale=True)
        del store[key]
        self._misses += 1
        self._expired += 1
        return None

    def store(self, name: str, rdtype: str, answer: DnsAnswer, now_ns: int) -> None:
        """Keep ``answer`` for its clamped TTL; errors and timeouts are ignored (not cached)."""
        placed = self._placement(answer)
        if placed is None:
            return
        store, ttl_s = placed
        if ttl_s <= 0:
            return
        key = _key(name, rdtype)
        # A fresh answer replaces whatever the other store held for the question.
        self._success.pop(key, None)
        self._denial.pop(key, None)
        store[key] = _Entry(answer, now_ns + ttl_s * NS_PER_S)
        self._stores += 1
        if len(store) > self.config.capacity:
            store.popitem(last=False)
            self._evictions += 1

    def stats(self) -> NodeCacheStats:
        return NodeCacheStats(
            hits=self._hits,
            misses=self._misses,
            expired=self._expired,
            stale_hits=self._stale_hits,
            stores=self._stores,
            evictions=self._evictions,
            entries=len(self._success) + len(self._denial),
        )

    def _placement(self, answer: DnsAnswer) -> tuple[OrderedDict[_Key, _Entry], int] | None:
        """Which store ``answer`` goes to and for how long, or None if it is not cached."""
        config = self.config
        if answer.outcome is Outcome.SERVFAIL:
            return self._denial, config.servfail_ttl_s
        if answer.outcome is Outcome.OK and answer.addresses:
            return self._success, self._clamp(answer.ttl_s, config.success_ttl_cap_s)
        if answer.outcome in (Outcome.OK, Outcome.NXDOMAIN):  # NODATA or NXDOMAIN: a denial
            return self._denial, self._clamp(answer.ttl_s, config.denial_ttl_cap_s)
        return None  # REFUSED, malformed, timeouts: never cached

    def _clamp(self, ttl_s: int | None, cap_s: int) -> int:
        # No TTL to go by (a denial without SOA): CoreDNS falls back to its minimum TTL.
        floor_s = min(self.config.min_ttl_s, cap_s)
        if ttl_s is None:
            return floor_s
        return max(floor_s, min(ttl_s, cap_s))


def _key(name: str, rdtype: str) -> _Key:
    # DNS names compare case-insensitively; the cache keys on the absolute form.
    absolute = name if name.endswith(".") else name + "."
    return absolute.lower(), rdtype.upper()
