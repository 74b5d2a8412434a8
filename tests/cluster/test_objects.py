"""A run's namespace and the cleanup of everything it labelled, against the embedded control
plane over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from loadlab import runloop
from loadlab.cluster.objects import (
    RUN_LABEL,
    AdminClient,
    cleanup,
    create_run_namespace,
)
from loadlab.errors import TargetUnreachable
from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from loadlab.testing.ports import closed_tcp_port

pytestmark = pytest.mark.realtime

ADMIN = {"Authorization": "Bearer loadlab-admin"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with start_sim_process(["--nodes", "3", "--pods-per-node", "1"]) as process:
        yield process


def lease(name: str, namespace: str, run_id: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if run_id is not None:
        meta["labels"] = {RUN_LABEL: run_id}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {"holderIdentity": name},
    }


async def plant(client: AdminClient, run_id: str) -> None:
    """What a run leaves: its namespace, leases in it, a labelled node."""
    ns = await create_run_namespace(client, run_id)
    for i in range(3):
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        status, _ = await client.request("POST", path, lease(f"node-{i}", ns, run_id))
        assert status == 201
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"loadlab-{run_id}-node-0", "labels": {RUN_LABEL: run_id}},
    }
    status, _ = await client.request("POST", "/api/v1/nodes", node)
    assert status == 201


async def labelled(client: AdminClient, selector: str) -> dict[str, int]:
    counts = {}
    for kind, path in (
        ("leases", "/apis/coordination.k8s.io/v1/leases"),
        ("nodes", "/api/v1/nodes"),
        ("namespaces", "/api/v1/namespaces"),
    ):
        status, answer = await client.request("GET", path, params={"labelSelector": selector})
        assert status == 200
        counts[kind] = len(answer["items"])
    return counts


def test_cleanup_deletes_what_one_run_labelled_and_leaves_everything_else(sim: SimProcess) -> None:
    async def scenario() -> None:
        async with AdminClient(sim.api_url, ssl_context=None, headers=ADMIN) as client:
            await plant(client, "run1")
            await plant(client, "run2")
            node_leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
            status, theirs = await client.request("GET", node_leases)
            assert status == 200
            before = await labelled(client, RUN_LABEL)
            assert before == {"leases": 6, "nodes": 2, "namespaces": 2}
            done = await cleanup(client, "run1")
            assert done.deleted == {"leases": 3, "nodes": 1, "namespaces": 1}
            assert done.failed == []
            assert await labelled(client, f"{RUN_LABEL}=run1") == {
                "leases": 0,
                "nodes": 0,
                "namespaces": 0,
            }
            assert await labelled(client, f"{RUN_LABEL}=run2") == {
                "leases": 3,
                "nodes": 1,
                "namespaces": 1,
            }
            seeded = await labelled(client, "kubernetes.io/os=linux")
            assert seeded["nodes"] == 3  # the cluster's own nodes are untouched
            status, still = await client.request("GET", node_leases)
            assert len(still["items"]) == len(theirs["items"]) > 0  # and their leases
            everything = await cleanup(client, None)
            assert everything.total == 5
            assert "deleted 3 leases, 1 nodes, 1 namespaces" in everything.line("all runs")
            again = await cleanup(client, None)
            assert again.line("all runs") == "cleanup of all runs: nothing left to delete"

    runloop.run(scenario())


@pytest.mark.parametrize(
    ("behaviour", "failure"),
    [
        (HttpBehaviour.STATUS_500, "listing leases answered 500"),
        (HttpBehaviour.STATUS_429, "listing leases answered 429"),
    ],
)
def test_a_cleanup_the_cluster_refuses_says_so_and_does_not_wait(
    behaviour: HttpBehaviour, failure: str
) -> None:
    async def scenario() -> None:
        async with (
            HostileHttpServer(behaviour) as server,
            AdminClient(server.url, ssl_context=None, headers=ADMIN) as client,
        ):
            done = await cleanup(client, "run1")
        assert done.total == 0
        assert done.failed[0] == failure
        assert done.failed[-1] == f"listing namespaces answered {failure.split()[-1]}"
        assert "could not delete" in done.line("run run1")

    runloop.run(scenario())


def test_a_cleanup_against_a_dead_cluster_is_one_line_naming_it() -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{closed_tcp_port()}"
        async with AdminClient(url, ssl_context=None, headers=ADMIN) as client:
            with pytest.raises(TargetUnreachable, match=r"GET /apis/coordination.* failed"):
                await cleanup(client, "run1")

    runloop.run(scenario())
