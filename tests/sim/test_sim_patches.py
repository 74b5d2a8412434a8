"""JSON patch, merge patch and strategic merge patch against the sim API server over HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from tests.sim.conftest import RunWithApi

pytestmark = pytest.mark.realtime

POD = "/api/v1/namespaces/default/pods/node-0-pod-0"
JSON = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def _patch(run_with_api: RunWithApi, headers: dict[str, str], patch: Any) -> tuple[int, Any]:
    result: list[tuple[int, Any]] = []

    async def body(api: SimApiServer) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.patch(f"{api.url}{POD}", json=patch, headers=headers) as r,
        ):
            result.append((r.status, await r.json()))

    run_with_api(body)
    return result[0]


SIDECAR = {"name": "side", "image": "registry.example/side:1"}


@pytest.mark.parametrize(
    ("ops", "check"),
    [
        pytest.param(
            [{"op": "add", "path": "/metadata/labels/tier", "value": "web"}],
            lambda p: p["metadata"]["labels"] == {"app": "svc-0", "tier": "web"},
            id="add",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/containers/-", "value": SIDECAR}],
            lambda p: [c["name"] for c in p["spec"]["containers"]] == ["app", "side"],
            id="append",
        ),
        pytest.param(
            [
                {"op": "test", "path": "/spec/nodeName", "value": "node-0"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "x:2"},
            ],
            lambda p: p["spec"]["containers"][0]["image"] == "x:2",
            id="test-then-replace",
        ),
        pytest.param(
            [
                {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
                {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/b~1c"},
            ],
            lambda p: (
                (p["metadata"]["annotations"], p["metadata"]["labels"])
                == ({"app": "svc-0"}, {"b/c": "svc-0"})
            ),
            id="copy-move-escaped",
        ),
        pytest.param(
            [{"op": "remove", "path": "/metadata/labels"}],
            lambda p: "labels" not in p["metadata"],
            id="remove",
        ),
    ],
)
def test_json_patch_operations_apply(run_with_api: RunWithApi, ops: Any, check: Any) -> None:
    code, pod = _patch(run_with_api, JSON, ops)
    assert code == 200, pod
    assert check(pod)


@pytest.mark.parametrize(
    ("ops", "code", "cause"),
    [
        pytest.param(
            [{"op": "test", "path": "/spec/nodeName", "value": "node-9"}],
            422,
            "testing value /spec/nodeName failed: test failed",
            id="test-fails",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/nope", "value": 1}],
            422,
            "replace operation does not apply: doc is missing key: /spec/nope: missing value",
            id="replace-missing",
        ),
        pytest.param(
            [{"op": "jump", "path": "/spec"}], 422, "Unexpected kind: jump", id="unknown-op"
        ),
    ],
)
def test_a_json_patch_that_does_not_apply_is_422_with_the_library_message(
    run_with_api: RunWithApi, ops: Any, code: int, cause: str
) -> None:
    status, body = _patch(run_with_api, JSON, ops)
    assert (status, body["reason"]) == (code, "Invalid")
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert body["details"]["causes"] == [{"message": cause}]


def test_a_json_patch_that_is_not_a_list_is_400(run_with_api: RunWithApi) -> None:
    status, body = _patch(run_with_api, JSON, {"op": "add"})
    assert (status, body["reason"]) == (400, "BadRequest")


def test_strategic_merge_merges_containers_by_name_where_merge_patch_replaces(
    run_with_api: RunWithApi,
) -> None:
    patch = {"spec": {"containers": [{"name": "app", "image": "x:2"}, SIDECAR]}}
    _, merged = _patch(run_with_api, STRATEGIC, patch)
    _, replaced = _patch(run_with_api, MERGE, patch)
    assert merged["spec"]["containers"] == [
        {"name": "app", "image": "x:2", "imagePullPolicy": "IfNotPresent"},
        SIDECAR,
    ]
    assert replaced["spec"]["containers"] == patch["spec"]["containers"]


@pytest.mark.parametrize(
    ("patch", "names"),
    [
        pytest.param(
            {"spec": {"containers": [{"name": "app", "$patch": "delete"}, SIDECAR]}},
            ["side"],
            id="delete-directive",
        ),
        pytest.param(
            {"spec": {"containers": [SIDECAR, {"$patch": "replace"}]}},
            ["side"],
            id="replace-directive",
        ),
        pytest.param(
            {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                "containers": [SIDECAR],
            },
            ["side", "app"],
            id="set-element-order",
        ),
    ],
)
def test_strategic_merge_directives(
    run_with_api: RunWithApi, patch: dict[str, Any], names: list[str]
) -> None:
    if "containers" in patch:  # the order directive sits beside its list, in spec
        patch = {"spec": patch}
    code, pod = _patch(run_with_api, STRATEGIC, patch)
    assert code == 200, pod
    assert [c["name"] for c in pod["spec"]["containers"]] == names


def test_strategic_merge_without_the_merge_key_is_a_500(run_with_api: RunWithApi) -> None:
    code, body = _patch(run_with_api, STRATEGIC, {"spec": {"containers": [{"image": "x"}]}})
    assert (code, body["reason"]) == (500, "InternalError")
    assert "does not contain declared merge key: name" in body["message"]
