"""Hot store paths of the embedded control plane, in-process (pytest-benchmark; not a test suite).

Run: ``.venv/bin/pytest bench/test_bench_sim.py --benchmark-only``. The cluster is 1,000 nodes x
30 pods (30,000 pods): a fifth of the sim's 5,000 x 30 scale target, so the file runs in seconds.
The modelled service time is not here (it is awaited, not computed): these are the sim's own CPU
costs per request, the part that must stay well below the model's knee.
"""

from __future__ import annotations

from typing import Any

import pytest

from loadlab.sim.config import SimConfig
from loadlab.sim.k8s.objects import LEASES, NODE_LEASE_NAMESPACE, PODS
from loadlab.sim.server import seeded_store
from loadlab.sim.storage.selection import FieldSelector
from loadlab.sim.storage.store import Store

NODES = 1000
PODS_PER_NODE = 30
NODE = "node-500"
PAGE_LIMIT = 500


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(nodes=NODES, pods_per_node=PODS_PER_NODE)


@pytest.fixture(scope="module")
def store(config: SimConfig) -> Store:
    return seeded_store(config)


def test_bench_seed_1000_nodes_x_30_pods(benchmark: Any, config: SimConfig) -> None:
    seeded = benchmark.pedantic(seeded_store, args=(config,), rounds=3, iterations=1)
    assert seeded.count(PODS) == NODES * PODS_PER_NODE


def test_bench_node_filtered_pod_list(benchmark: Any, store: Store) -> None:
    fields = FieldSelector.parse(f"spec.nodeName={NODE}")
    result = benchmark(store.list_objects, PODS, None, fields=fields)
    assert len(result.items) == PODS_PER_NODE


def test_bench_node_filtered_pod_list_encoded(benchmark: Any, store: Store) -> None:
    """The list plus the JSON of its items, as the server sends it (cached per object)."""
    fields = FieldSelector.parse(f"spec.nodeName={NODE}")

    def list_and_encode() -> bytes:
        items = store.list_objects(PODS, None, fields=fields).items
        return b",".join(store.encoded(PODS, obj) for obj in items)

    assert benchmark(list_and_encode).count(b'"kind":"Pod"') == PODS_PER_NODE


def test_bench_cluster_pod_list_first_page(benchmark: Any, store: Store) -> None:
    result = benchmark(store.list_objects, PODS, None, limit=PAGE_LIMIT)
    assert len(result.items) == PAGE_LIMIT
    assert result.continue_token


def test_bench_get_lease(benchmark: Any, store: Store) -> None:
    lease = benchmark(store.get, LEASES, NODE_LEASE_NAMESPACE, NODE)
    assert lease["metadata"]["name"] == NODE


def test_bench_get_pod(benchmark: Any, store: Store) -> None:
    pod = store.list_objects(PODS, None, limit=1).items[0]
    meta = pod["metadata"]
    got = benchmark(store.get, PODS, meta["namespace"], meta["name"])
    assert got is pod


DNS_ENDPOINTS = 5000
DNS_SLICES = 50  # 100 endpoints a slice: kube-controller-manager --max-endpoints-per-slice


def test_bench_dns_build_one_headless_service_5000_endpoints_50_slices(benchmark: Any) -> None:
    """The cluster DNS building one big headless Service as its slices arrive one watch event at
    a time (what start-up and a rollout look like): a name, an A and an SRV record per endpoint.
    Each slice adds its own records only; re-reading the whole Service per slice made this
    quadratic (minutes at this size)."""
    from loadlab.sim.dns.records import RecordTable
    from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL

    per_slice = DNS_ENDPOINTS // DNS_SLICES
    port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    service = {"metadata": {"name": "big"}, "spec": {"clusterIP": "None", "ports": [port]}}
    slices = [
        {
            "metadata": {"name": f"big-{s}", "labels": {SERVICE_NAME_LABEL: "big"}},
            "endpoints": [
                {"addresses": [f"127.0.{i // 250}.{i % 250 + 1}"], "hostname": f"big-{i}"}
                for i in range(s * per_slice, (s + 1) * per_slice)
            ],
        }
        for s in range(DNS_SLICES)
    ]

    def build() -> RecordTable:
        table = RecordTable()
        table.upsert_service(service)
        for endpoint_slice in slices:
            table.upsert_endpoint_slice(endpoint_slice)
        return table

    table = benchmark.pedantic(build, rounds=3, iterations=1)
    assert table.record_count == 3 * DNS_ENDPOINTS
