"""Kubernetes protobuf bodies: the codec against kubectl's own bytes, every served kind
round-tripped, the sim's content negotiation over HTTP, and kubectl 1.32's default writes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadlab.sim.k8s.objects import CONFIGMAPS, RESOURCE_TYPES, JsonObj
from loadlab.sim.k8s.protobuf import (
    MEDIA_TYPE,
    ProtobufError,
    decode_object,
    encode_object,
    wire_fields,
)
from loadlab.sim.server import SimEndpoints, seeded_store
from loadlab.sim.storage.selection import FieldSelector, LabelSelector
from tests.sim.conftest import small_sim_config
from tests.sim.helpers import kubectl_installed, run_kubectl

DATA = Path(__file__).parent / "data"
TIMEOUT_S = 30.0
JSON = "application/json"


MAP_FIELDS = frozenset({"labels", "annotations", "data", "nodeSelector", "matchLabels"})
"""Fields that are protobuf maps, not messages: an entry whose value is "" is on the wire."""


def _without_zeros(value: Any, *, is_map: bool = False) -> Any:
    """``value`` less what the wire cannot tell from unset: "", 0, false, [] and {} scalars'
    containers. Empty objects stay: a message field that is present reads back as {}. A map's
    entries all stay (the key is on the wire even when the value is "")."""
    if isinstance(value, dict):
        return {
            k: _without_zeros(v, is_map=k in MAP_FIELDS)
            for k, v in value.items()
            if is_map or isinstance(v, dict) or v not in ("", 0, False, [])
        }
    if isinstance(value, list):
        return [_without_zeros(v) for v in value]
    return value


def _served_objects() -> list[JsonObj]:
    store = seeded_store(small_sim_config(services=3, headless_services=1))
    objects = []
    for rtype in RESOURCE_TYPES:
        listed = store.list_objects(
            rtype,
            None,
            labels=LabelSelector.parse(None),
            fields=FieldSelector.parse(None),
            limit=0,
            continue_token=None,
        )
        objects.extend(listed.items)
    return objects


# -- the codec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capture", "decoded"),
    [
        pytest.param(
            "kubectl-1.32.4-create-configmap.pb",
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": "x"},
                "data": {"a": "b"},
            },
            id="configmap",
        ),
        pytest.param(
            "kubectl-1.32.4-create-namespace.pb",
            {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": "y"},
                "spec": {},
                "status": {},
            },
            id="namespace",
        ),
    ],
)
def test_decodes_the_body_kubectl_1_32_sent(capture: str, decoded: JsonObj) -> None:
    assert decode_object((DATA / capture).read_bytes()) == decoded


def test_every_served_kind_round_trips_through_protobuf() -> None:
    objects = _served_objects()
    assert {o["kind"] for o in objects} == {rt.kind for rt in RESOURCE_TYPES}
    for obj in objects:
        expected = _without_zeros(obj)
        assert decode_object(encode_object(obj)) == expected, obj["metadata"]["name"]


def test_a_list_round_trips_with_its_items_typeless() -> None:
    pods = [o for o in _served_objects() if o["kind"] == "Pod"]
    body = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 3},
        "items": pods,
    }
    back = decode_object(encode_object(body))
    assert back["metadata"] == body["metadata"]
    typeless = [{k: v for k, v in p.items() if k not in ("kind", "apiVersion")} for p in pods]
    assert back["items"] == [_without_zeros(p) for p in typeless]


@pytest.mark.parametrize(
    ("kind", "api_version", "fields"),
    [
        pytest.param(
            "Lease",
            "coordination.k8s.io/v1",
            {"spec": {"renewTime": "2026-11-30T23:01:02.123456Z", "leaseDurationSeconds": -1}},
            id="microtime-and-negative-int32",
        ),
        pytest.param(
            "Service",
            "v1",
            {
                "spec": {
                    "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8}]
                }
            },
            id="int-or-string",
        ),
        pytest.param(
            "Node",
            "v1",
            {"status": {"capacity": {"cpu": "250m", "memory": "1Gi"}}},
            id="quantity-map",
        ),
        pytest.param(
            "ConfigMap", "v1", {"binaryData": {"b": "AAEC/w=="}, "immutable": True}, id="bytes"
        ),
    ],
)
def test_special_types_round_trip(kind: str, api_version: str, fields: JsonObj) -> None:
    obj = {"kind": kind, "apiVersion": api_version, "metadata": {"name": "n"}, **fields}
    assert decode_object(encode_object(obj)) == obj


def test_field_numbers_are_those_of_generated_proto() -> None:
    """ConfigMap: metadata=1, data=2; ObjectMeta: name=1, namespace=3 (core/v1 generated.proto)."""
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "namespace": "b"}}
    obj["data"] = {"k": "v"}
    envelope = {n: v for n, _, v in wire_fields(encode_object(obj)[4:])}
    raw = envelope[2]
    assert isinstance(raw, bytes)
    top = list(wire_fields(raw))
    assert [n for n, _, _ in top] == [1, 2]
    meta = top[0][2]
    assert isinstance(meta, bytes)
    assert list(wire_fields(meta)) == [(1, 2, b"a"), (3, 2, b"b")]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"kind":"ConfigMap"}', id="json-not-protobuf"),
        pytest.param(b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\xff", id="truncated"),
        pytest.param(b"k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\x00", id="unserved-kind"),
    ],
)
def test_unreadable_protobuf_is_refused(raw: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode_object(raw)


# -- negotiation over HTTP ---------------------------------------------------------------------


def _call(
    url: str, accept: str, *, method: str = "GET", body: bytes | None = None, ctype: str = JSON
) -> tuple[int, str, bytes]:
    headers = {"Accept": accept, "Content-Type": ctype}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("accept", "media"),
    [
        pytest.param(MEDIA_TYPE, MEDIA_TYPE, id="protobuf"),
        pytest.param(JSON, JSON, id="json"),
        pytest.param(f"{MEDIA_TYPE}, {JSON}", MEDIA_TYPE, id="protobuf-first"),
        pytest.param(f"{MEDIA_TYPE};q=0.5, {JSON}", JSON, id="json-by-quality"),
        pytest.param("application/yaml", "application/yaml", id="yaml"),
        pytest.param("*/*", JSON, id="anything"),
    ],
)
def test_get_answers_in_the_media_type_accept_prefers(
    sim_thread: SimEndpoints, accept: str, media: str
) -> None:
    url = f"{sim_thread.api_url}/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
    status, ctype, body = _call(url, accept)
    assert (status, ctype.split(";")[0]) == (200, media)
    decoders: dict[str, Callable[[bytes], Any]] = {
        MEDIA_TYPE: decode_object,
        JSON: json.loads,
        "application/yaml": yaml.safe_load,
    }
    decoded = decoders[media](body)
    assert decoded["data"] == {"ca.crt": "simulated"}


@pytest.mark.realtime
def test_lists_and_errors_are_protobuf_too(sim_thread: SimEndpoints) -> None:
    api = sim_thread.api_url
    status, _, body = _call(f"{api}/api/v1/pods", MEDIA_TYPE)
    assert status == 200
    pods = decode_object(body)
    assert pods["kind"] == "PodList"
    assert len(pods["items"]) == 15
    status, ctype, body = _call(f"{api}/api/v1/namespaces/default/configmaps/nope", MEDIA_TYPE)
    assert (status, ctype) == (404, MEDIA_TYPE)
    assert decode_object(body) | {"message": ""} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "",
        "reason": "NotFound",
        "code": 404,
    }


@pytest.mark.realtime
def test_an_accept_the_sim_cannot_serve_is_406(sim_thread: SimEndpoints) -> None:
    url = f"{sim_thread.api_url}/api/v1/namespaces/default/configmaps"
    status, _, body = _call(url, "text/html")
    assert status == 406
    assert json.loads(body)["reason"] == "NotAcceptable"
    status, _, _ = _call(url + "?watch=1", "application/yaml")
    assert status == 406  # YAML has no stream serializer


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("ctype", "body", "code"),
    [
        pytest.param(
            MEDIA_TYPE, (DATA / "kubectl-1.32.4-create-configmap.pb").read_bytes(), 201, id="pb"
        ),
        pytest.param(
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {t: 2026-01-01}\n",
            201,
            id="yaml",
        ),
        pytest.param("text/plain", b"x=1", 415, id="unreadable-media-type"),
        pytest.param(MEDIA_TYPE, b"k8s\x00\xff", 400, id="broken-protobuf"),
    ],
)
def test_create_reads_the_body_by_content_type(
    sim_thread: SimEndpoints, ctype: str, body: bytes, code: int
) -> None:
    url = f"{sim_thread.api_url}/api/v1/namespaces/default/configmaps"
    status, _, answer = _call(url, JSON, method="POST", body=body, ctype=ctype)
    assert status == code, answer
    if code == 201:
        stored = json.loads(answer)
        assert stored["metadata"]["name"] == "x"
        assert stored["kind"] == CONFIGMAPS.kind


# -- kubectl 1.32, default flags ---------------------------------------------------------------


@pytest.mark.needs_kubectl
@pytest.mark.realtime
@kubectl_installed
def test_kubectl_creates_with_its_default_protobuf_bodies(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    def k(*args: str) -> str:
        out = run_kubectl(*args, cache=tmp_path, server=sim_thread.api_url)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "configmap/x created" in k("create", "configmap", "x", "--from-literal=a=b")
    assert "namespace/y created" in k("create", "namespace", "y")
    shown = yaml.safe_load(k("get", "configmap", "x", "-o", "yaml"))
    assert shown["data"] == {"a": "b"}
    assert k("get", "namespace", "y", "-o", "jsonpath={.metadata.name}") == "y"


@pytest.mark.realtime
def test_delete_reads_protobuf_delete_options(sim_thread: SimEndpoints) -> None:
    """client-go's typed Delete sends its DeleteOptions as a protobuf body."""
    url = f"{sim_thread.api_url}/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
    options = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}
    body = encode_object(options)
    status, ctype, answer = _call(url, MEDIA_TYPE, method="DELETE", body=body, ctype=MEDIA_TYPE)
    assert (status, ctype) == (200, MEDIA_TYPE), answer
    assert _call(url, JSON)[0] == 200  # a dry run: still there
