"""dryRun=All on every write of the sim API server: answered as if done, nothing kept, no event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import CONFIGMAPS
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST, MERGE

pytestmark = pytest.mark.realtime

CM_URL = "/api/v1/namespaces/default/configmaps"
READ_TIMEOUT_S = 10.0


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def _dry_runs(s: aiohttp.ClientSession, base: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(verb, status, body) of one dry run of each write verb on configmaps/pods."""
    out = []
    async with s.post(f"{base}{CM_URL}?dryRun=All", json=_cm("dry")) as r:
        out.append(("create", r.status, await r.json()))
    cur = _cm("kube-root-ca.crt")
    async with s.put(f"{base}{CM_URL}/kube-root-ca.crt?dryRun=All", json=cur) as r:
        out.append(("update", r.status, await r.json()))
    patch = {"data": {"extra": "1"}}
    url = f"{base}{CM_URL}/kube-root-ca.crt?dryRun=All"
    async with s.patch(url, json=patch, headers=MERGE) as r:
        out.append(("patch", r.status, await r.json()))
    async with s.delete(f"{base}{CM_URL}/kube-root-ca.crt", json={"dryRun": ["All"]}) as r:
        out.append(("delete", r.status, await r.json()))
    status = {"status": {"phase": "Failed"}}
    url = f"{base}/api/v1/namespaces/default/pods/node-0-pod-0/status?dryRun=All"
    async with s.patch(url, json=status, headers=MERGE) as r:
        out.append(("patch-status", r.status, await r.json()))
    return out


def test_dry_runs_answer_as_done_but_keep_nothing_and_send_no_event(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        rv_before = api.store.resource_version
        async with aiohttp.ClientSession() as s:
            url = f"{api.url}{CM_URL}?watch=1&resourceVersion={rv_before}"
            async with s.get(url) as watch:
                results = await _dry_runs(s, api.url)
                rv_after = api.store.resource_version
                # A real write after them: the first event the watch sees must be its.
                async with s.post(f"{api.url}{CM_URL}", json=_cm("sentinel")) as r:
                    assert r.status == 201
                line = await asyncio.wait_for(watch.content.readline(), READ_TIMEOUT_S)
            async with s.get(f"{api.url}{CM_URL}/dry") as r:
                assert r.status == 404
            async with s.get(f"{api.url}{CM_URL}/kube-root-ca.crt") as r:
                kept = await r.json()
            async with s.get(f"{api.url}/api/v1/namespaces/default/pods/node-0-pod-0") as r:
                pod = await r.json()
        assert rv_after == rv_before
        first = json.loads(line)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "sentinel")
        assert [(verb, code) for verb, code, _ in results] == [
            ("create", 201),
            ("update", 200),
            ("patch", 200),
            ("delete", 200),
            ("patch-status", 200),
        ]
        created = results[0][2]
        assert created["metadata"]["name"] == "dry"
        assert created["metadata"]["uid"]
        assert "resourceVersion" not in created["metadata"]  # registry/dryrun.go: not written
        assert results[2][2]["data"] == {"ca.crt": "simulated", "extra": "1"}
        assert results[2][2]["metadata"]["resourceVersion"] == kept["metadata"]["resourceVersion"]
        assert results[4][2]["status"]["phase"] == "Failed"
        assert kept["data"] == {"ca.crt": "simulated"}
        assert pod["status"]["phase"] == "Running"

    run_with_api(body, sim_config(overload={"cost": FREE_COST}))


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        pytest.param("POST", CM_URL, "CreateOptions", id="create"),
        pytest.param("PUT", f"{CM_URL}/kube-root-ca.crt", "UpdateOptions", id="update"),
        pytest.param("DELETE", f"{CM_URL}/kube-root-ca.crt", "DeleteOptions", id="delete"),
    ],
)
def test_a_dry_run_value_other_than_all_is_refused_as_validation_refuses_it(
    run_with_api: RunWithApi, method: str, path: str, kind: str
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            url = f"{api.url}{path}?dryRun=Some"
            data = None if method == "DELETE" else json.dumps(_cm("kube-root-ca.crt"))
            async with s.request(method, url, data=data) as r:
                assert r.status == 422
                status = await r.json()
        assert status["reason"] == "Invalid"
        assert status["message"] == (
            f'{kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{{"Some"}}: '
            'supported values: "All"'
        )
        assert api.store.get(CONFIGMAPS, "default", "kube-root-ca.crt")  # nothing was done

    run_with_api(body)


def test_a_dry_run_create_still_validates_and_finds_conflicts(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            url = f"{api.url}{CM_URL}?dryRun=All"
            async with s.post(url, json=_cm("kube-root-ca.crt")) as r:
                assert (r.status, (await r.json())["reason"]) == (409, "AlreadyExists")
            async with s.post(url, json=_cm("Bad_Name")) as r:
                assert (r.status, (await r.json())["reason"]) == (422, "Invalid")

    run_with_api(body)
