"""Writes the sim refuses or shapes as kube-apiserver 1.32 does, over real HTTP on loopback:
invalid names (422), a bound pod's node (422), DELETE preconditions (409), ClusterIPs, a created
pod's status, EndpointSlice generations. Messages are the real server's, written out here."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from tests.sim.conftest import RunWithApi
from tests.sim.helpers import MERGE

pytestmark = pytest.mark.realtime

JSON = {"Content-Type": "application/json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
DEFAULT = "/api/v1/namespaces/default"
POD_0 = f"{DEFAULT}/pods/node-0-pod-0"
SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
POD_UPDATE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
    "to 1 if it was previously negative)\n"
)


async def call(
    s: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    async with s.request(method, path, data=data, headers=headers or JSON) as resp:
        return resp.status, await resp.json()


def exchange(run_with_api: RunWithApi, *requests: tuple[Any, ...]) -> list[tuple[int, Any]]:
    """Send ``requests`` (method, path, body?, headers?) in order; their codes and bodies."""
    answers: list[tuple[int, Any]] = []

    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession(base_url=api.url) as s:
            for request in requests:
                answers.append(await call(s, *request))

    run_with_api(body)
    return answers


def obj(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    version = "discovery.k8s.io/v1" if kind == "EndpointSlice" else "v1"
    return {"apiVersion": version, "kind": kind, "metadata": {"name": name}, **fields}


def pod(name: str, **spec: Any) -> dict[str, Any]:
    containers = [{"name": "app", "image": "registry.example/app:1.0"}]
    return obj("Pod", name, spec={"containers": containers, **spec})


def service(name: str, **spec: Any) -> dict[str, Any]:
    return obj("Service", name, spec={"ports": [{"port": 80}], **spec})


def assert_status(status: Any, code: int, reason: str, message: str) -> None:
    assert status["kind"] == "Status"
    assert status["status"] == "Failure"
    assert (status["code"], status["reason"]) == (code, reason)
    assert status["message"] == message


@pytest.mark.parametrize(
    ("collection", "body", "kind", "detail"),
    [
        pytest.param(f"{DEFAULT}/pods", pod("Bad_Name"), "Pod", SUBDOMAIN, id="pod"),
        pytest.param(
            "/api/v1/namespaces",
            obj("Namespace", "bad.ns"),
            "Namespace",
            "must not contain dots",
            id="namespace",
        ),
        pytest.param(f"{DEFAULT}/services", service("1svc"), "Service", DNS1035, id="service"),
        pytest.param(
            f"{DEFAULT}/configmaps",
            obj("ConfigMap", "c" * 254),
            "ConfigMap",
            "must be no more than 253 characters",
            id="configmap-too-long",
        ),
    ],
)
def test_an_invalid_name_is_422_with_its_cause_and_nothing_is_stored(
    run_with_api: RunWithApi, collection: str, body: Any, kind: str, detail: str
) -> None:
    name = body["metadata"]["name"]
    (code, status), (after, _) = exchange(
        run_with_api, ("POST", collection, body), ("GET", f"{collection}/{name}")
    )
    assert code == 422
    shown = f'Invalid value: "{name}": {detail}'
    assert_status(status, 422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: {shown}')
    assert status["details"] == {
        "name": name,
        "kind": kind,
        "causes": [{"reason": "FieldValueInvalid", "message": shown, "field": "metadata.name"}],
    }
    assert after == 404


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        pytest.param("PATCH", {"spec": {"nodeName": "node-1"}}, MERGE, id="merge-patch"),
        pytest.param("PATCH", {"spec": {"nodeName": "node-1"}}, STRATEGIC, id="strategic-patch"),
        pytest.param(
            "PATCH",
            [{"op": "replace", "path": "/spec/nodeName", "value": "node-1"}],
            JSON_PATCH,
            id="json-patch",
        ),
        pytest.param("PUT", None, JSON, id="update"),
    ],
)
def test_moving_a_bound_pod_to_another_node_is_422_and_changes_nothing(
    run_with_api: RunWithApi, method: str, body: Any, headers: dict[str, str]
) -> None:
    async def put_body(api: SimApiServer) -> None:
        nonlocal body
        async with aiohttp.ClientSession(base_url=api.url) as s:
            _, current = await call(s, "GET", POD_0)
            body = body or {**current, "spec": {**current["spec"], "nodeName": "node-1"}}
            answers.append(await call(s, method, POD_0, body, headers))
            answers.append(await call(s, "GET", POD_0))
            relabel = {"metadata": {"labels": {"moved": "no"}}}
            answers.append(await call(s, "PATCH", POD_0, relabel, MERGE))

    answers: list[tuple[int, Any]] = []
    run_with_api(put_body)
    (code, status), (_, after), (relabelled, _) = answers
    assert code == 422
    assert status["message"].startswith(
        f'Pod "node-0-pod-0" is invalid: spec: Forbidden: {POD_UPDATE}'
    )
    [cause] = status["details"]["causes"]
    assert (cause["reason"], cause["field"]) == ("FieldValueForbidden", "spec")
    assert cause["message"].startswith(f"Forbidden: {POD_UPDATE}")
    assert '- \tNodeName: "node-0",\n+ \tNodeName: "node-1",' in cause["message"]
    assert after["spec"]["nodeName"] == "node-0"
    assert relabelled == 200  # the rule is about the node, not about every write


@pytest.mark.parametrize(
    ("path", "resource", "key", "group"),
    [
        pytest.param(POD_0, "pods", "/registry/pods/default/node-0-pod-0", "", id="pod"),
        pytest.param("/api/v1/nodes/node-4", "nodes", "/registry/minions/node-4", "", id="node"),
        pytest.param(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-3",
            "leases.coordination.k8s.io",
            "/registry/leases/kube-node-lease/node-3",
            "coordination.k8s.io",
            id="lease",
        ),
        pytest.param("/api/v1/namespaces/app-1", "namespaces", None, "", id="namespace"),
    ],
)
@pytest.mark.parametrize("field", ["uid", "resourceVersion"])
def test_a_delete_whose_precondition_fails_is_409_and_the_object_stays(
    run_with_api: RunWithApi, path: str, resource: str, key: str | None, group: str, field: str
) -> None:
    stale = {"uid": "0badcafe-0000-4000-8000-000000000000", "resourceVersion": "1"}[field]
    (_, current), (code, status), (_, after) = exchange(
        run_with_api,
        ("GET", path),
        ("DELETE", path, {"preconditions": {field: stale}}),
        ("GET", path),
    )
    name = current["metadata"]["name"]
    label = {"uid": "UID", "resourceVersion": "ResourceVersion"}[field]
    failed = (
        f"Precondition failed: {label} in precondition: {stale}, {label} in object meta: "
        f"{current['metadata'][field]}"
    )
    if key is not None:  # storage's StorageError, wrapped; a namespace says it plainly
        failed = (
            f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
            f"AdditionalErrorMsg: {failed}"
        )
    assert code == 409
    message = f'Operation cannot be fulfilled on {resource} "{name}": {failed}'
    assert_status(status, 409, "Conflict", message)
    details = {"name": name, "kind": resource.partition(".")[0]} | (
        {"group": group} if group else {}
    )
    assert status["details"] == details
    assert after == current


def test_a_delete_whose_preconditions_hold_deletes(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession(base_url=api.url) as s:
            _, current = await call(s, "GET", POD_0)
            meta = current["metadata"]
            held = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            answers.append(await call(s, "DELETE", POD_0, {"preconditions": {"uid": 7}}))
            answers.append(await call(s, "DELETE", POD_0, {"preconditions": held}))
            answers.append(await call(s, "GET", POD_0))

    answers: list[tuple[int, Any]] = []
    run_with_api(body)
    assert [code for code, _ in answers] == [400, 200, 404]
    assert answers[0][1]["reason"] == "BadRequest"


def test_a_service_gets_a_free_cluster_ip_which_no_other_may_take_or_change(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession(base_url=api.url) as s:
            _, listed = await call(s, "GET", "/api/v1/services")
            taken.update(svc["spec"]["clusterIP"] for svc in listed["items"])
            answers.append(await call(s, "POST", f"{DEFAULT}/services", service("web")))
            ip = answers[-1][1]["spec"]["clusterIP"]
            twin = service("twin", clusterIP=ip)
            answers.append(await call(s, "POST", f"{DEFAULT}/services", twin))
            far = service("far", clusterIP="10.0.0.1")
            answers.append(await call(s, "POST", f"{DEFAULT}/services", far))
            _, current = await call(s, "GET", f"{DEFAULT}/services/web")
            spec = {k: v for k, v in current["spec"].items() if not k.startswith("clusterIP")}
            answers.append(
                await call(s, "PUT", f"{DEFAULT}/services/web", {**current, "spec": spec})
            )
            move = {"spec": {"clusterIP": "192.0.2.254"}}
            answers.append(await call(s, "PATCH", f"{DEFAULT}/services/web", move, MERGE))

    taken: set[str] = set()
    answers: list[tuple[int, Any]] = []
    run_with_api(body)
    (made, web), (twin, twin_status), (far, far_status), (put, kept), (moved, moved_status) = (
        answers
    )
    ip = web["spec"]["clusterIP"]
    assert made == 201
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("192.0.2.0/24")
    assert ip not in taken
    assert (web["spec"]["clusterIPs"], web["spec"]["ipFamilies"]) == ([ip], ["IPv4"])
    assert web["status"] == {"loadBalancer": {}}
    assert twin == 422
    assert twin_status["message"] == (
        f'Service "twin" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: '
        f"failed to allocate IP {ip}: provided IP is already allocated"
    )
    assert far == 422
    assert far_status["message"] == (
        'Service "far" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: '
        "failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. "
        "The range of valid IPs is 192.0.2.0/24"
    )
    assert (put, kept["spec"]["clusterIP"]) == (200, ip)
    assert moved == 422
    assert moved_status["message"] == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "192.0.2.254": '
        "may not change once set"
    )


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        pytest.param(None, "BestEffort", id="best-effort"),
        pytest.param(
            {"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed", id="guaranteed-by-limits"
        ),
        pytest.param({"requests": {"cpu": "100m"}}, "Burstable", id="burstable"),
    ],
)
def test_a_created_pod_starts_pending_with_its_qos_class_whatever_status_it_was_sent(
    run_with_api: RunWithApi, resources: Any, qos: str
) -> None:
    created = pod("fresh")
    if resources is not None:
        created["spec"]["containers"][0]["resources"] = resources
    created["status"] = {"phase": "Running", "podIP": "198.51.100.200"}
    [(code, made)] = exchange(run_with_api, ("POST", f"{DEFAULT}/pods", created))
    assert code == 201
    assert made["status"] == {"phase": "Pending", "qosClass": qos}
    assert made["spec"]["restartPolicy"] == "Always"
    assert {"uid", "creationTimestamp", "resourceVersion"} <= made["metadata"].keys()
    assert "generation" not in made["metadata"]  # pods have none before 1.33


def test_an_endpointslice_generation_starts_at_1_and_counts_content_and_label_changes(
    run_with_api: RunWithApi,
) -> None:
    url = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    made = obj("EndpointSlice", "hand", addressType="IPv4", endpoints=[], ports=[])
    made["metadata"]["generation"] = 7  # a client cannot set it

    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession(base_url=api.url) as s:
            seen.append(await call(s, "POST", url, made))
            current = seen[-1][1]
            endpoints = [{"addresses": ["198.51.100.7"]}]
            seen.append(await call(s, "PUT", f"{url}/hand", {**current, "endpoints": endpoints}))
            note = {"metadata": {"annotations": {"why": "metadata only"}}}
            seen.append(await call(s, "PATCH", f"{url}/hand", note, MERGE))
            seen.append(
                await call(s, "PATCH", f"{url}/hand", {"metadata": {"labels": {"a": "b"}}}, MERGE)
            )
            current = seen[-1][1]
            forced = {**current, "metadata": {**current["metadata"], "generation": 99}}
            seen.append(await call(s, "PUT", f"{url}/hand", forced))

    seen: list[tuple[int, Any]] = []
    run_with_api(body)
    assert [code for code, _ in seen] == [201, 200, 200, 200, 200]
    assert [answer["metadata"]["generation"] for _, answer in seen] == [1, 2, 2, 3, 3]
