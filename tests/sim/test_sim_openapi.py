"""/openapi/v2 and /openapi/v3 of the sim, read as kubectl reads them, and fieldValidation."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loadlab.sim.apiserver.openapi import group_version_key
from loadlab.sim.config import sim_config_from_dict
from loadlab.sim.k8s.objects import CONFIGMAPS, PODS, RESOURCE_TYPES
from loadlab.sim.k8s.schemas import field_validation, unknown_fields
from loadlab.sim.k8s.validation import ApiError
from loadlab.sim.server import SimEndpoints, seeded_store
from tests.sim.helpers import kubectl_installed, run_kubectl

TIMEOUT_S = 30.0
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, accept: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with opener.open(req, timeout=TIMEOUT_S) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str) -> Any:
    status, _, body = fetch(url)
    assert status == 200, body
    return json.loads(body)


# -- the documents, over HTTP ----------------------------------------------------------------


@pytest.mark.realtime
def test_v3_index_lists_exactly_the_group_versions_discovery_lists(
    sim_thread: SimEndpoints,
) -> None:
    api = sim_thread.api_url
    served = {"api/v1"} if "v1" in get_json(f"{api}/api")["versions"] else set()
    for group in get_json(f"{api}/apis")["groups"]:
        served |= {f"apis/{v['groupVersion']}" for v in group["versions"]}
    index = get_json(f"{api}/openapi/v3")["paths"]
    assert set(index) == served


@pytest.mark.realtime
def test_every_served_kind_is_in_its_group_version_document(sim_thread: SimEndpoints) -> None:
    api = sim_thread.api_url
    index = get_json(f"{api}/openapi/v3")["paths"]
    for rt in RESOURCE_TYPES:
        url = index[group_version_key(rt.group, rt.version)]["serverRelativeURL"]
        schemas = get_json(f"{api}{url}")["components"]["schemas"]
        kinds = {
            (g["group"], g["version"], g["kind"])
            for s in schemas.values()
            for g in s.get("x-kubernetes-group-version-kind", [])
        }
        assert (rt.group, rt.version, rt.kind) in kinds, rt.plural
        assert (rt.group, rt.version, rt.list_kind) in kinds, rt.plural
        # Every reference resolves inside the same document.
        text = json.dumps(schemas)
        for ref in {r.split('"')[0] for r in text.split('"$ref": "#/components/schemas/')[1:]}:
            assert ref in schemas, ref


@pytest.mark.realtime
def test_v3_document_hash_is_cacheable_and_a_stale_hash_redirects(
    sim_thread: SimEndpoints,
) -> None:
    api = sim_thread.api_url
    url = get_json(f"{api}/openapi/v3")["paths"]["api/v1"]["serverRelativeURL"]
    status, headers, body = fetch(f"{api}{url}")
    assert status == 200
    assert headers["Cache-Control"] == "public, immutable"
    assert headers["ETag"] == f'"{url.split("hash=")[1]}"'
    status, headers, _ = fetch(f"{api}/openapi/v3/api/v1?hash=0BAD")
    assert (status, headers["Location"]) == (301, url)
    status, headers, again = fetch(f"{api}/openapi/v3/api/v1")
    assert (status, again) == (200, body)
    assert "Cache-Control" not in headers


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("accept", "status"),
    [
        pytest.param("application/json", 200, id="json"),
        pytest.param(f"{PROTOBUF_V2}, application/json;q=0.9", 200, id="protobuf-or-json"),
        pytest.param(PROTOBUF_V2, 406, id="protobuf-only"),
    ],
)
def test_v2_is_served_as_json_when_the_client_accepts_it(
    sim_thread: SimEndpoints, accept: str, status: int
) -> None:
    got, _, body = fetch(f"{sim_thread.api_url}/openapi/v2", accept)
    assert got == status
    if status == 200:
        doc = json.loads(body)
        assert doc["swagger"] == "2.0"
        assert "io.k8s.api.core.v1.Pod" in doc["definitions"]


# -- strict field validation, as a function --------------------------------------------------


def test_every_seeded_object_has_only_known_fields() -> None:
    config = sim_config_from_dict({"nodes": 2, "pods_per_node": 2, "services": 2}, source="test")
    store = seeded_store(config)
    for rt in RESOURCE_TYPES:
        for obj in store.list_objects(rt, None).items:
            unknown = unknown_fields(rt, obj)
            assert unknown == [], (rt.plural, obj["metadata"]["name"])


BAD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "labelz": {}},
    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "Always"}]},
}


def test_strict_names_every_unknown_field_as_kube_apiserver_does() -> None:
    with pytest.raises(ApiError) as err:
        field_validation(PODS, BAD_POD, "Strict")
    assert err.value.code == 400
    assert str(err.value) == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
        'unknown field "metadata.labelz", unknown field "spec.containers[0].imagePullPolice"'
    )


@pytest.mark.parametrize(
    ("directive", "warnings"),
    [
        pytest.param(None, ['299 - "unknown field \\"dta\\""'], id="default-is-warn"),
        pytest.param("Warn", ['299 - "unknown field \\"dta\\""'], id="warn"),
        pytest.param("Ignore", [], id="ignore"),
    ],
)
def test_warn_and_ignore_let_the_object_through(directive: str | None, warnings: list[str]) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dta": {}}
    assert field_validation(CONFIGMAPS, cm, directive) == warnings


def test_an_unknown_directive_is_a_bad_request() -> None:
    with pytest.raises(ApiError, match="fieldValidation: Unsupported value"):
        field_validation(CONFIGMAPS, {}, "strict")


# -- kubectl, with default flags -------------------------------------------------------------


def kubectl(
    sim: SimEndpoints, tmp: Path, *args: str, editor: str = "false"
) -> subprocess.CompletedProcess[str]:
    editors = {"EDITOR": editor, "KUBE_EDITOR": editor}
    return run_kubectl(*args, cache=tmp / "cache", server=sim.api_url, env=editors)


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
data:
  a: "{value}"
"""


@pytest.mark.needs_kubectl
@pytest.mark.realtime
@kubectl_installed
def test_kubectl_create_apply_explain_edit_with_default_flags(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(CONFIGMAP.format(value="1"))
    assert "configmap/cm1 created" in ok(
        kubectl(sim_thread, tmp_path, "create", "-f", str(manifest))
    )
    manifest.write_text(CONFIGMAP.format(value="2"))
    ok(kubectl(sim_thread, tmp_path, "apply", "-f", str(manifest)))
    manifest.write_text(CONFIGMAP.format(value="3"))
    assert "configured" in ok(kubectl(sim_thread, tmp_path, "apply", "-f", str(manifest)))
    got = json.loads(ok(kubectl(sim_thread, tmp_path, "get", "cm", "cm1", "-o", "json")))
    assert got["data"] == {"a": "3"}

    explained = ok(kubectl(sim_thread, tmp_path, "explain", "pods.spec.containers"))
    assert "FIELD: containers <[]Container>" in explained
    for field in ("image\t<string>", "env\t<[]EnvVar>", "resources\t<ResourceRequirements>"):
        assert field in explained

    editor = tmp_path / "editor.sh"
    editor.write_text(
        '#!/bin/sh\nsed -i "s/name: cm1/name: cm1\\n  labels: {edited: \\"yes\\"}/" "$1"\n'
    )
    editor.chmod(0o755)
    ok(kubectl(sim_thread, tmp_path, "edit", "configmap", "cm1", editor=str(editor)))
    got = json.loads(ok(kubectl(sim_thread, tmp_path, "get", "cm", "cm1", "-o", "json")))
    assert got["metadata"]["labels"] == {"edited": "yes"}


@pytest.mark.needs_kubectl
@pytest.mark.realtime
@kubectl_installed
def test_kubectl_create_refuses_an_unknown_field_naming_it(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(CONFIGMAP.format(value="1") + "dta:\n  b: x\n")
    out = kubectl(sim_thread, tmp_path, "create", "-f", str(manifest))
    assert out.returncode == 1
    assert 'strict decoding error: unknown field "dta"' in out.stderr
