"""The pods of one node resolving names through the node's DNS cache: the ``pod-dns`` agent.

One ``PodDns`` is one node. Each of its ``pods_per_node`` pods is a flow that, every
``interval_s`` on average, looks a name up the way an application's ``getaddrinfo`` does
(``loadlab.agents.resolver``: the search list, ndots, A+AAAA, retries) through the node's one
``NodeLocalCache``. Two things are recorded: ``lookup``, what the application saw, end to end
(a ``Report``, latency from the lookup's intended time), and ``dns-wire``, each query that left the
node for the cluster DNS (the engine records every ``DnsQuery``). Their ratio is the amplification
the incident turned on: while the cache answers, the wire is quiet; once entries expire against a
failing server, every lookup walks the search list and retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from loadlab.agents.base import Flow, Identity, Report, Sleep, Woke, expect
from loadlab.agents.nodecache import NodeCacheConfig, NodeLocalCache
from loadlab.agents.resolver import ATTEMPTS, NDOTS, TIMEOUT_S, WIRE_OP, resolve
from loadlab.clock import NS_PER_S

LOOKUP_OP = "lookup"
"""The metric name of a whole lookup, as the application saw it."""

DEFAULT_NAMES = ("kubernetes.default", "svc-2.app-1", "svc-3.app-2", "svc-5.app-0")
"""Names the embedded control plane serves with its default seed (20 services ``svc-<i>`` spread
over the namespaces ``default``, ``app-0``, ``app-1``, ``app-2`` by ``i % 4``: ``svc-2`` lives in
``app-1``), so a short name is found on the second suffix as from another namespace. Every one
exists: a name that cannot resolve would be a failure in every lookup count, and a DNS SLO
(errors <= 0.1 %) could never be met. A profile that wants external names lists them itself
(``dns-ndots-storm``)."""

# docs/control-plane-model.md, "Supported scale": the sim's default is 10 pods per node, and a
# node holds at most 110.
PODS_PER_NODE = 10
MAX_PODS_PER_NODE = 110
INTERVAL_S = 10.0
"""Assumption (no source gives one): an application resolving one name every 10 s per pod."""


@dataclass(frozen=True)
class PodDnsConfig:
    """The pods of a node and how they resolve names."""

    pods_per_node: int = PODS_PER_NODE
    names: tuple[str, ...] = DEFAULT_NAMES
    """Each lookup picks one at random. A trailing dot makes a name absolute (no search list)."""
    interval_s: float = INTERVAL_S
    """Mean time between one pod's lookups."""
    arrival: Literal["poisson", "jittered"] = "poisson"
    """``poisson``: exponential gaps; ``jittered``: gaps of ``interval_s`` x [1 - j, 1 + j]."""
    jitter: float = 0.1
    """``j`` of ``jittered``."""
    namespaces: tuple[str, ...] = ("default",)
    """Pod k of node n lives in ``namespaces[(n * pods_per_node + k) % len]``, as the sim
    spreads its pods."""
    cluster_domain: str = "cluster.local"
    node_search: tuple[str, ...] = ()
    """The node's own search domains, which Kubernetes appends to every pod's list."""
    ndots: int = NDOTS
    timeout_s: float = TIMEOUT_S
    attempts: int = ATTEMPTS
    node_cache: bool = True
    """False: pods ask the cluster DNS directly (a cluster without NodeLocal DNSCache)."""
    cache: NodeCacheConfig = field(default_factory=NodeCacheConfig)
    max_lookups: int | None = None
    """Lookups per pod before its flow ends; None: until the engine stops it."""

    def __post_init__(self) -> None:
        if not 0 <= self.pods_per_node <= MAX_PODS_PER_NODE:
            raise ValueError(f"pods_per_node must be within [0, {MAX_PODS_PER_NODE}]")
        if not self.names or not self.namespaces:
            raise ValueError("names and namespaces must not be empty")
        if self.interval_s <= 0 or not 0 <= self.jitter < 1:
            raise ValueError("interval_s must be > 0 and jitter within [0, 1)")
        if self.max_lookups is not None and self.max_lookups < 0:
            raise ValueError("max_lookups must be >= 0")

    def search_list(self, namespace: str) -> tuple[str, ...]:
        """A pod's resolv.conf search list (kubelet ``pkg/kubelet/network/dns/dns.go``)."""
        domain = self.cluster_domain
        return (f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *self.node_search)


class PodDns:
    """The pods of node ``node_index`` resolving names: one flow per pod, one cache per node."""

    kind = "pod-dns"
    watches = 0
    """Pods only resolve names: no watch connection (``engine.agents.sockets_needed``)."""
    ops: tuple[str, ...] = (LOOKUP_OP, WIRE_OP)
    qps: float | None = None
    """DNS queries are not API requests: no client-side rate limit."""
    burst = 0

    def __init__(self, node_index: int, config: PodDnsConfig | None = None) -> None:
        if node_index < 0:
            raise ValueError("node_index must be >= 0")
        self.node_index = node_index
        self.config = config or PodDnsConfig()
        # The identity is unused (no API requests) but every agent carries one.
        self.identity = Identity(
            user="system:serviceaccount:default:pod",
            user_agent=f"pod-dns (loadlab) node-{node_index}",
        )
        self.cache = NodeLocalCache(self.config.cache) if self.config.node_cache else None
        """The node's cache, shared by its pods (None without NodeLocal DNSCache)."""

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        # One generator per pod, each seeded from ``rng`` in pod order, so a pod's choices do not
        # depend on how the engine interleaves the flows.
        return [
            self._pod(pod, start_ns, random.Random(rng.getrandbits(64)))
            for pod in range(self.config.pods_per_node)
        ]

    def _pod(self, pod: int, start_ns: int, rng: random.Random) -> Flow:
        config = self.config
        pod_index = self.node_index * config.pods_per_node + pod
        search = config.search_list(config.namespaces[pod_index % len(config.namespaces)])
        # The first lookup at a random offset in the first period, so a node's pods (and the
        # nodes) do not all ask at once.
        due_ns = start_ns + int(rng.uniform(0.0, config.interval_s) * NS_PER_S)
        done = 0
        while config.max_lookups is None or done < config.max_lookups:
            woke = expect((yield Sleep(due_ns)), Woke)
            result = yield from resolve(
                rng.choice(config.names),
                search,
                now_ns=woke.now_ns,
                cache=self.cache,
                ndots=config.ndots,
                timeout_s=config.timeout_s,
                attempts=config.attempts,
            )
            # Latency from the intended time: a late wake-up counts against the lookup.
            expect((yield Report(LOOKUP_OP, result.outcome, due_ns)), Woke)
            done += 1
            # A pod resolves one name at a time: after a lookup that overran the next due time,
            # the next starts when it ends, with no burst to catch up.
            due_ns = max(due_ns + self._gap_ns(rng), result.finished_ns)

    def _gap_ns(self, rng: random.Random) -> int:
        config = self.config
        if config.arrival == "poisson":
            gap_s = rng.expovariate(1.0 / config.interval_s)
        else:
            gap_s = config.interval_s * rng.uniform(1.0 - config.jitter, 1.0 + config.jitter)
        return int(gap_s * NS_PER_S)
