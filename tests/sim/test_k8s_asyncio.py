"""kubernetes-asyncio (the official async client) against the sim: typed decoding and a watch."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch

from loadlab.sim.apiserver.app import SimApiServer
from tests.sim.conftest import RunWithApi
from tests.sim.helpers import MERGE

pytestmark = pytest.mark.realtime


def api_client(url: str) -> Any:
    config = client.Configuration()
    config.host = url
    return client.ApiClient(configuration=config)


def test_client_lists_nodes_pods_leases_and_slices_as_typed_objects(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        async with api_client(api.url) as c:
            core = client.CoreV1Api(c)
            nodes = await core.list_node()
            pods = await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
            leases = await client.CoordinationV1Api(c).list_namespaced_lease("kube-node-lease")
            slices = await client.DiscoveryV1Api(c).list_endpoint_slice_for_all_namespaces()
            svc = await core.read_namespaced_service("kube-dns", "kube-system")
        assert [n.metadata.name for n in nodes.items] == [f"node-{i}" for i in range(5)]
        assert nodes.items[0].status.conditions[0].type == "Ready"
        assert {p.spec.node_name for p in pods.items} == {"node-1"}
        assert len(pods.items) == 3
        assert leases.items[0].spec.lease_duration_seconds == 40
        assert any(
            s.metadata.labels["kubernetes.io/service-name"] == "kube-dns" for s in slices.items
        )
        assert svc.spec.cluster_ip.startswith("192.0.2.")

    run_with_api(body)


def test_client_watch_sees_a_lease_renewal_made_by_another_client(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with api_client(api.url) as c:
            coord = client.CoordinationV1Api(c)
            listed = await coord.list_namespaced_lease("kube-node-lease")
            rv = listed.metadata.resource_version
            w = watch.Watch()
            url = f"{api.url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-2"
            renew = {"spec": {"renewTime": "2030-01-01T00:00:00.000000Z"}}

            async def renew_later() -> None:
                async with (
                    aiohttp.ClientSession() as s,
                    s.patch(url, json=renew, headers=MERGE) as r,
                ):
                    assert r.status == 200

            writer = asyncio.ensure_future(renew_later())
            seen: list[tuple[str, str]] = []
            async with (
                asyncio.timeout(10),
                w.stream(
                    coord.list_namespaced_lease,
                    "kube-node-lease",
                    resource_version=rv,
                    timeout_seconds=10,
                ) as stream,
            ):
                async for event in stream:
                    seen.append((event["type"], event["object"].metadata.name))
                    break
            await writer
        assert seen == [("MODIFIED", "node-2")]

    run_with_api(body)
