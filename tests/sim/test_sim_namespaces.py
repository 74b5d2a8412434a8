"""Namespace deletion in the sim API server: Terminating, creates refused, then content and
namespace deleted with watch events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import NAMESPACES
from loadlab.sim.storage.store import Store
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST

pytestmark = pytest.mark.realtime

READ_TIMEOUT_S = 10.0
FINALIZE_S = 0.3


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


async def _events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        line = await asyncio.wait_for(resp.content.readline(), READ_TIMEOUT_S)
        event = json.loads(line)
        out.append((event["type"], event["object"]["metadata"]["name"]))
    return out


def _exists(api: SimApiServer, name: str) -> bool:
    return any(
        o["metadata"]["name"] == name for o in api.store.list_objects(NAMESPACES, None).items
    )


def test_deleting_a_namespace_terminates_it_then_deletes_its_content_and_itself(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        base = f"{api.url}/api/v1"
        async with aiohttp.ClientSession() as s:
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}
            async with s.post(f"{base}/namespaces", json=ns) as r:
                assert r.status == 201
            cms = f"{base}/namespaces/doomed/configmaps"
            for name in ("a", "b"):
                async with s.post(cms, json=_cm(name)) as r:
                    assert r.status == 201
            rv = api.store.resource_version
            async with s.get(f"{base}/configmaps?watch=1&resourceVersion={rv}") as cm_watch:
                async with s.delete(f"{base}/namespaces/doomed") as r:
                    assert r.status == 200
                    doomed = await r.json()
                assert doomed["status"]["phase"] == "Terminating"
                assert doomed["metadata"]["deletionTimestamp"]
                async with s.delete(f"{base}/namespaces/doomed") as r:  # again: no change
                    again = await r.json()
                    assert (r.status, again["metadata"]) == (200, doomed["metadata"])
                async with s.post(cms, json=_cm("late")) as r:
                    refused = await r.json()
                    assert r.status == 403
                assert refused["reason"] == "Forbidden"
                assert refused["message"] == (
                    'configmaps "late" is forbidden: unable to create new content in namespace '
                    "doomed because it is being terminated"
                )
                assert refused["details"]["causes"][0]["reason"] == "NamespaceTerminating"
                assert await _events(cm_watch, 2) == [("DELETED", "a"), ("DELETED", "b")]
            await wait_for(lambda: not _exists(api, "doomed"), "the purge")
            async with s.get(f"{base}/namespaces/doomed") as r:
                assert r.status == 404
            async with s.post(f"{base}/namespaces", json=ns) as r:
                assert r.status == 201
            async with s.get(cms) as r:
                assert (await r.json())["items"] == []  # nothing came back with it

    run_with_api(body, sim_config(api={"namespace_finalize_s": FINALIZE_S}))


def test_creating_in_a_missing_namespace_is_404_and_system_namespaces_are_kept(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        base = f"{api.url}/api/v1"
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/namespaces/nowhere/configmaps", json=_cm("x")) as r:
                missing = await r.json()
                assert r.status == 404
            async with s.delete(f"{base}/namespaces/kube-system") as r:
                kept = await r.json()
                assert r.status == 403
        assert missing["message"] == 'namespaces "nowhere" not found'
        assert missing["details"] == {"name": "nowhere", "kind": "namespaces"}
        assert kept["message"] == (
            'namespaces "kube-system" is forbidden: this namespace may not be deleted'
        )

    run_with_api(body, sim_config(overload={"cost": FREE_COST}))


def test_a_created_namespace_is_active() -> None:
    store = Store()
    made = store.create(NAMESPACES, {"metadata": {"name": "fresh"}})
    assert made["status"]["phase"] == "Active"
