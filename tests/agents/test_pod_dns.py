"""The pod-dns agent: one flow per pod, one cache per node, lookups reported at their cadence."""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics
from typing import Any, Literal

import pytest

from loadlab.agents.base import DnsQuery, Sleep
from loadlab.agents.pod_dns import PodDns, PodDnsConfig
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import CannedDns, Step, dns_address, dns_nodata, dns_timeout, reports
from loadlab.testing.agents import run_flow as run

KUBERNETES = "kubernetes.default.svc.cluster.local."
INTERVAL_NS = 10 * NS_PER_S


def cluster_dns() -> CannedDns:
    """The sim's cluster DNS, reduced to the one Service these tests look up."""
    return CannedDns(records={KUBERNETES: {"A": dns_address("192.0.2.1"), "AAAA": dns_nodata()}})


def sleeps(steps: list[Step]) -> list[int]:
    return [s.action.until_ns for s in steps if isinstance(s.action, Sleep)]


def queries(steps: list[Step]) -> list[DnsQuery]:
    return [s.action for s in steps if isinstance(s.action, DnsQuery)]


def test_agent_declares_its_kind_ops_and_identity() -> None:
    agent = PodDns(7)
    assert agent.kind == "pod-dns"
    assert agent.ops == ("lookup", "dns-wire")
    assert agent.qps is None
    assert agent.identity.user == "system:serviceaccount:default:pod"
    assert agent.identity.user_agent.endswith("node-7")


@pytest.mark.parametrize("pods", [0, 1, 10, 110], ids=["none", "one", "default", "max"])
def test_one_flow_per_pod(pods: int) -> None:
    agent = PodDns(0, PodDnsConfig(pods_per_node=pods))
    assert len(agent.flows(0, random.Random(1))) == pods


def test_first_lookups_fall_at_random_offsets_in_the_first_period() -> None:
    start_ns = 3 * NS_PER_S
    firsts = [flow.send(None) for flow in PodDns(0).flows(start_ns, random.Random(1))]
    assert all(isinstance(a, Sleep) for a in firsts)
    offsets = [a.until_ns - start_ns for a in firsts if isinstance(a, Sleep)]
    assert all(0 <= off < INTERVAL_NS for off in offsets)
    assert len(set(offsets)) == len(offsets)


def test_same_seed_same_flows() -> None:
    def first_sleeps(seed: int) -> list[object]:
        return [f.send(None) for f in PodDns(3).flows(0, random.Random(seed))]

    assert first_sleeps(5) == first_sleeps(5)
    assert first_sleeps(5) != first_sleeps(6)


@pytest.mark.parametrize(
    ("arrival", "low_s", "high_s"),
    [
        pytest.param("jittered", 9.0, 11.0, id="jittered-10pct"),
        pytest.param("poisson", 0.0, float("inf"), id="poisson"),
    ],
)
def test_lookups_follow_the_cadence(
    arrival: Literal["poisson", "jittered"], low_s: float, high_s: float
) -> None:
    config = PodDnsConfig(pods_per_node=1, names=(KUBERNETES,), arrival=arrival, max_lookups=1000)
    [flow] = PodDns(0, config).flows(0, random.Random(2))
    steps = run(flow, cluster_dns())
    due = sleeps(steps)
    assert len(due) == 1000
    gaps_s = [(b - a) / NS_PER_S for a, b in itertools.pairwise(due)]
    assert all(low_s <= gap <= high_s for gap in gaps_s)
    # Mean 10 s either way; over 999 gaps the Poisson mean is within 1 s (3 standard errors).
    assert 9.0 < statistics.mean(gaps_s) < 11.0


@pytest.mark.parametrize(
    ("name", "outcome", "wire_queries"),
    [
        pytest.param("kubernetes.default", Outcome.OK, 2, id="service-found-on-second-suffix"),
        pytest.param("example.com.", Outcome.NXDOMAIN, 1, id="outside-the-zone"),
    ],
)
def test_each_lookup_is_reported_from_its_intended_time(
    name: str, outcome: Outcome, wire_queries: int
) -> None:
    config = PodDnsConfig(pods_per_node=1, names=(name,), max_lookups=1)
    [flow] = PodDns(0, config).flows(0, random.Random(3))
    steps = run(flow, cluster_dns())
    [due] = sleeps(steps)
    [(reported_at, report)] = reports(steps)
    assert (report.op, report.outcome, report.started_ns) == ("lookup", outcome, due)
    assert len(queries(steps)) == wire_queries
    assert reported_at == due + wire_queries * NS_PER_MS  # CannedDns answers in 1 ms


def test_pods_of_a_node_share_its_cache() -> None:
    # A 1 s period puts both pods' first lookups within a second, inside every TTL.
    config = PodDnsConfig(
        pods_per_node=2, names=("kubernetes.default",), interval_s=1.0, max_lookups=1
    )
    agent = PodDns(0, config)
    first, second = agent.flows(0, random.Random(4))
    dns = cluster_dns()
    assert len(queries(run(first, dns))) == 2
    second_steps = run(second, dns)
    assert queries(second_steps) == []
    [(_, report)] = reports(second_steps)
    assert report.outcome is Outcome.OK
    assert agent.cache is not None
    assert agent.cache.stats().hits == 4  # two names, A and AAAA each


def test_a_lookup_that_overruns_its_period_delays_the_next_without_a_burst() -> None:
    # Every query times out: a short name costs its first suffix and the bare name, 2 tries of
    # 5 s each, 20 s per lookup against a 10 s period.
    config = PodDnsConfig(
        pods_per_node=1, names=("svc-2.app-1",), arrival="jittered", jitter=0.0, max_lookups=3
    )
    [flow] = PodDns(0, config).flows(0, random.Random(5))
    steps = run(flow, CannedDns(default=dns_timeout()))
    first, second, third = sleeps(steps)
    assert second - first == 20 * NS_PER_S
    assert third - second == 20 * NS_PER_S
    assert [r.outcome for _, r in reports(steps)] == [Outcome.TIMEOUT] * 3
    assert [r.started_ns for _, r in reports(steps)] == [first, second, third]


def test_pods_live_in_namespaces_spread_as_the_sim_spreads_them() -> None:
    # Node 1 with 2 pods holds pods 2 and 3 of the cluster: namespaces[2 % 3], namespaces[3 % 3].
    config = PodDnsConfig(
        pods_per_node=2,
        names=("kubernetes",),
        namespaces=("default", "app-0", "app-1"),
        max_lookups=1,
    )
    flows = PodDns(1, config).flows(0, random.Random(6))
    first_names = [queries(run(f, CannedDns()))[0].questions[0].name for f in flows]
    assert first_names == ["kubernetes.app-1.svc.cluster.local.", KUBERNETES]


def test_without_a_node_cache_every_lookup_goes_on_the_wire() -> None:
    config = PodDnsConfig(
        pods_per_node=1, names=("kubernetes.default",), node_cache=False, max_lookups=2
    )
    agent = PodDns(0, config)
    assert agent.cache is None
    [flow] = agent.flows(0, random.Random(7))
    assert len(queries(run(flow, cluster_dns()))) == 4


def test_node_search_domains_follow_the_cluster_ones() -> None:
    config = PodDnsConfig(node_search=("corp.example",))
    assert config.search_list("app-0") == (
        "app-0.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "corp.example",
    )


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"pods_per_node": 111}, id="over-110-pods"),
        pytest.param({"names": ()}, id="no-names"),
        pytest.param({"interval_s": 0.0}, id="no-interval"),
        pytest.param({"jitter": 1.0}, id="jitter-100pct"),
        pytest.param({"max_lookups": -1}, id="negative-lookups"),
    ],
)
def test_config_rejects_impossible_settings(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        dataclasses.replace(PodDnsConfig(), **config)
