"""The sim API server over real HTTP on loopback: verbs, errors, selectors, paging, discovery."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from tests.sim.conftest import RunWithApi
from tests.sim.helpers import MERGE

pytestmark = pytest.mark.realtime


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def configmap(name: str, ns: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


def test_configmap_create_get_update_patch_delete_round_trip(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        base = f"{api.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as s:
            code, created = await call(s, "POST", base, configmap("cm1", a="1"))
            assert code == 201
            assert created["metadata"]["uid"]
            rv1 = created["metadata"]["resourceVersion"]
            code, got = await call(s, "GET", f"{base}/cm1")
            assert (code, got["data"]) == (200, {"a": "1"})
            got["data"] = {"a": "2"}
            code, updated = await call(s, "PUT", f"{base}/cm1", got)
            assert code == 200
            assert int(updated["metadata"]["resourceVersion"]) > int(rv1)
            code, patched = await call(s, "PATCH", f"{base}/cm1", {"data": {"b": "3"}}, MERGE)
            assert (code, patched["data"]) == (200, {"a": "2", "b": "3"})
            code, _ = await call(s, "DELETE", f"{base}/cm1")
            assert code == 200
            code, status = await call(s, "GET", f"{base}/cm1")
            assert (code, status["kind"], status["reason"]) == (404, "Status", "NotFound")

    run_with_api(body)


def test_update_with_stale_resource_version_is_a_409_conflict(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as s:
            _, created = await call(s, "POST", url, configmap("cm2", a="1"))
            await call(s, "PATCH", f"{url}/cm2", {"data": {"a": "2"}}, MERGE)
            stale = {**created, "data": {"a": "3"}}
            code, status = await call(s, "PUT", f"{url}/cm2", stale)
            assert (code, status["reason"], status["code"]) == (409, "Conflict", 409)
            unconditional = {**stale, "metadata": {**stale["metadata"], "resourceVersion": ""}}
            code, _ = await call(s, "PUT", f"{url}/cm2", unconditional)
            assert code == 200

    run_with_api(body)


def test_creating_an_existing_object_is_409_already_exists(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as s:
            await call(s, "POST", url, configmap("dup"))
            code, status = await call(s, "POST", url, configmap("dup"))
            assert (code, status["reason"]) == (409, "AlreadyExists")

    run_with_api(body)


def test_node_status_patch_changes_status_but_put_on_node_keeps_it(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/nodes/node-0"
        async with aiohttp.ClientSession() as s:
            patch = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
            code, node = await call(s, "PATCH", f"{url}/status", patch, MERGE)
            assert code == 200
            assert node["status"]["conditions"][0]["status"] == "False"
            node["status"]["conditions"][0]["status"] = "True"
            code, after = await call(s, "PUT", url, node)
            assert code == 200
            assert after["status"]["conditions"][0]["status"] == "False"

    run_with_api(body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("fieldSelector=spec.nodeName%3Dnode-2", 3, id="field-node-name"),
        pytest.param("fieldSelector=metadata.name%3Dnode-2-pod-1", 1, id="field-name"),
        pytest.param("labelSelector=app%3Dsvc-0", 4, id="label-equals"),
        pytest.param("labelSelector=app%20in%20(svc-0,svc-1)", 8, id="label-in"),
        pytest.param("labelSelector=app%20notin%20(svc-0)", 11, id="label-notin"),
        pytest.param("labelSelector=app", 15, id="label-exists"),
        pytest.param("labelSelector=!app", 0, id="label-not-exists"),
        pytest.param("labelSelector=app!%3Dsvc-0", 11, id="label-not-equals"),
    ],
)
def test_pod_list_selectors_filter_seeded_pods(
    run_with_api: RunWithApi, query: str, expected: int
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, lst = await call(s, "GET", f"{api.url}/api/v1/pods?{query}")
            assert code == 200
            assert lst["kind"] == "PodList"
            assert len(lst["items"]) == expected

    run_with_api(body)


def test_paging_with_limit_and_continue_returns_every_pod_once(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        names: list[str] = []
        token = ""
        async with aiohttp.ClientSession() as s:
            for _ in range(20):  # 15 pods in pages of 4: 4 pages
                url = f"{api.url}/api/v1/pods?limit=4" + (f"&continue={token}" if token else "")
                code, page = await call(s, "GET", url)
                assert code == 200
                assert len(page["items"]) <= 4
                names += [p["metadata"]["name"] for p in page["items"]]
                token = page["metadata"].get("continue", "")
                if not token:
                    break
        assert len(names) == 15
        assert len(set(names)) == 15

    run_with_api(body)


def test_list_in_a_namespace_returns_only_that_namespace(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            _, lst = await call(
                s, "GET", f"{api.url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
            )
        assert sorted(i["metadata"]["name"] for i in lst["items"]) == [
            f"node-{i}" for i in range(5)
        ]
        assert lst["apiVersion"] == "coordination.k8s.io/v1"

    run_with_api(body)


def test_unknown_resource_is_404_and_bad_selector_is_400(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, status = await call(s, "GET", f"{api.url}/api/v1/widgets")
            assert (code, status["reason"]) == (404, "NotFound")
            code, status = await call(s, "GET", f"{api.url}/api/v1/pods?labelSelector=a%20in%20")
            assert (code, status["reason"]) == (400, "BadRequest")

    run_with_api(body)


def test_discovery_health_version_and_metrics_are_served(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            _, apis = await call(s, "GET", f"{api.url}/apis")
            groups = {g["name"] for g in apis["groups"]}
            assert {"coordination.k8s.io", "discovery.k8s.io"} <= groups
            _, core = await call(s, "GET", f"{api.url}/api/v1")
            assert {"pods", "nodes", "nodes/status", "services"} <= {
                r["name"] for r in core["resources"]
            }
            _, version = await call(s, "GET", f"{api.url}/version")
            assert version["major"] == "1"
            for path in ("/healthz", "/livez", "/readyz"):
                async with s.get(api.url + path) as resp:
                    assert (resp.status, await resp.text()) == (200, "ok")
            await call(s, "GET", f"{api.url}/api/v1/nodes")
            async with s.get(f"{api.url}/metrics") as resp:
                text = await resp.text()
        assert (
            'apiserver_request_total{verb="LIST",dry_run="",group="",version="v1",'
            'resource="nodes",subresource="",scope="cluster",component="apiserver",code="200"} 1'
        ) in text
        assert "loadlab_sim_event_loop_lag_seconds" in text

    run_with_api(body)


def test_table_output_has_kubectl_columns_and_row_metadata(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        async with aiohttp.ClientSession() as s:
            _, tbl = await call(s, "GET", f"{api.url}/api/v1/nodes", headers=accept)
        assert tbl["kind"] == "Table"
        assert [c["name"] for c in tbl["columnDefinitions"]] == [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
        ]
        assert tbl["rows"][0]["cells"][:2] == ["node-0", "Ready"]
        assert tbl["rows"][0]["object"]["kind"] == "PartialObjectMetadata"

    run_with_api(body)
