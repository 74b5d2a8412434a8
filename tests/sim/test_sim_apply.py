"""Server-side apply and managedFields on plain dicts: FieldsV1, merge, ownership, conflicts.

The expected FieldsV1 documents, merge orders and messages are facts from the real code and real
objects; each test names its source.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadlab.sim.k8s import fieldpath, fieldtypes, structure
from loadlab.sim.k8s.apply import apply_patch, track_update
from loadlab.sim.k8s.fieldpath import FieldsError, FieldSet
from loadlab.sim.k8s.managedfields import (
    decode_managed,
    encode_managed,
    field_manager,
    prefix_from_user_agent,
)
from loadlab.sim.k8s.objects import CONFIGMAPS, PODS, SERVICES, JsonObj, ResourceType
from loadlab.sim.k8s.validation import ApiError

T0, T1 = "2022-08-22T23:08:23Z", "2022-08-23T23:08:23Z"


def compact(doc: Any) -> str:
    """JSON as Go writes it (compact, UTF-8 unescaped)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# structured-merge-diff fieldpath/serialize_test.go TestSerializeV1GoldenData: sets the real
# encoder wrote; decoding and encoding them again must give the same bytes.
GOLDEN = [
    '{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\\"name\\":\\"first'
    '\\"}":{},"k:{\\"name\\":\\"second\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{},'
    '"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:1":{},"v:2":{},"v:3":{},"v:\\"aa\\"":{},'
    '"v:\\"ab\\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},"i:4":{}}',
    '{"f:spec":{".":{},"f:apps":{".":{},"k:{\\"name\\":\\" app-💻\\"}":{".":{},"f:container":'
    '{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\\"name\\":\\"port 🔑\\"}":{".":{},'
    '"f:containerPort":{},"f:name":{}}}},"f:name":{}},"k:{\\"name\\":\\" app-🚀\\"}":{".":{},'
    '"f:container":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\\"name\\":\\"port-✅ '
    '\\"}":{".":{},"f:containerPort":{},"f:name":{}}}},"f:name":{}}}}}',
]


@pytest.mark.parametrize("doc", GOLDEN, ids=["every-element-kind", "nested-members"])
def test_fields_v1_golden_sets_round_trip_byte_for_byte(doc: str) -> None:
    assert compact(FieldSet.decode(json.loads(doc)).encode()) == doc


def test_fields_v1_decoding_normalizes_keys_as_the_real_reader() -> None:
    # serialize_test.go TestDeserializeForValidNonNormalized: spaces and key order inside
    # elements, and elements out of order, read as the normalized set.
    raw: JsonObj = {
        'k:{ "protocol":"udp","port":443}': {},
        "v: 3": {},
        "i:2": {},
        "f:b": {},
        "f:a": {},
    }
    expected = (
        '{"f:a":{},"f:b":{},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:3":{},"i:2":{}}'
    )
    assert compact(FieldSet.decode(raw).encode()) == expected


def test_fields_v1_members_children_and_unknown_elements() -> None:
    fields = FieldSet.decode({"f:data": {".": {}, "f:a": {}}, "f:spec": {"f:x": {}}, "z:?": {}})
    assert fields.has(("f:data",))
    assert fields.has(("f:data", "f:a"))
    assert not fields.has(("f:spec",))  # a node with children only
    assert fields.has(("f:spec", "f:x"))
    assert [fieldpath.path_string(p) for p in fields.paths()] == [".data", ".data.a", ".spec.x"]
    with pytest.raises(FieldsError):
        FieldSet.decode({"k:{not json": {}})
    with pytest.raises(FieldsError):
        FieldSet.decode({"fx": {}})


def test_path_elements_print_as_conflicts_name_them() -> None:
    path = ("f:spec", "f:ports", fieldpath.key({"protocol": "TCP", "port": 80}), "f:name")
    assert fieldpath.path_string(path) == '.spec.ports[port=80,protocol="TCP"].name'
    assert fieldpath.path_string(("f:finalizers", fieldpath.value("a<b"))) == '.finalizers[="a<b"]'
    assert fieldpath.value("a<b") == 'v:"a\\u003cb"'  # Go's encoding/json escapes <, > and &


# client-go util/csaupgrade/upgrade_test.go ("csa-basic-direct-conversion"): the entry
# kube-apiserver wrote for ``kubectl apply`` (client-side) creating this ConfigMap.
CSA_ENTRY = {
    "manager": "kubectl-client-side-apply",
    "operation": "Update",
    "apiVersion": "v1",
    "time": T0,
    "fieldsType": "FieldsV1",
    "fieldsV1": {
        "f:data": {".": {}, "f:key": {}, "f:legacy": {}},
        "f:metadata": {
            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}
        },
    },
}


def configmap(data: dict[str, str] | None = None, **meta: Any) -> JsonObj:
    obj: JsonObj = {"apiVersion": "v1", "kind": "ConfigMap"}
    obj["metadata"] = {"name": "test", "namespace": "default", **meta}
    if data is not None:
        obj["data"] = data
    return obj


def test_a_create_records_the_entry_the_real_server_records() -> None:
    last = {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}
    body = configmap({"key": "value", "legacy": "unused"}, annotations=last)
    created = track_update(None, body, CONFIGMAPS, manager="kubectl-client-side-apply", now=T0)
    assert created["metadata"]["managedFields"] == [CSA_ENTRY]
    assert compact(encode_managed(decode_managed([CSA_ENTRY]))) == compact([CSA_ENTRY])


def test_a_pod_created_by_curl_records_what_kube_apiserver_recorded() -> None:
    # kube-apiserver's answer to ``curl -XPOST .../namespaces/default/pods`` (a published session
    # transcript): the pod as stored before admission added volumes, and its one entry. The
    # manager is the User-Agent's first token.
    spec = {
        "containers": [
            {
                "name": "nginx",
                "image": "nginx:1.7.9",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx1"}, "spec": spec}
    manager = prefix_from_user_agent("curl/7.81.0")
    entry = track_update(None, pod, PODS, manager=manager, now=T0)["metadata"]["managedFields"]
    expected = (
        '{"f:spec":{"f:containers":{"k:{\\"name\\":\\"nginx\\"}":{".":{},"f:image":{},'
        '"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\\"containerPort\\":80,'
        '\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},'
        '"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},'
        '"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},'
        '"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}'
    )
    assert (entry[0]["manager"], compact(entry[0]["fieldsV1"])) == ("curl", expected)


# structured-merge-diff typed/merge_test.go ("struct grab bag", setStr): live, applied, merged.
SET_MERGES = [
    (["a", "b", "c"], ["a", "b"], ["a", "b", "c"]),
    (["a", "b"], ["b", "a"], ["b", "a"]),
    (["a", "b", "c", "g", "f"], ["c", "d", "e", "f"], ["a", "b", "c", "g", "d", "e", "f"]),
    (["c", "d", "e", "f"], ["a", "c", "e"], ["a", "c", "d", "e", "f"]),
    (["a", "b", "c", "d"], ["d", "e", "f", "a"], ["b", "c", "d", "e", "f", "a"]),
    (
        list("abcdefghij"),
        ["1", "b", "2", "h", "3", "e", "4", "k", "l"],
        ["a", "1", "b", "c", "d", "f", "g", "2", "h", "i", "j", "3", "e", "4", "k", "l"],
    ),
]


@pytest.mark.parametrize(("live", "applied", "merged"), SET_MERGES)
def test_set_items_merge_in_the_libraries_order(
    live: list[str], applied: list[str], merged: list[str]
) -> None:
    meta = fieldtypes.child(fieldtypes.root(CONFIGMAPS), "metadata")
    assert meta is not None
    finalizers = fieldtypes.child(meta, "finalizers")  # +listType=set
    assert finalizers is not None
    assert structure.merge(live, applied, finalizers) == merged


def apply(live: JsonObj | None, config: JsonObj, manager: str, **kw: Any) -> JsonObj:
    rtype: ResourceType = kw.pop("rtype", CONFIGMAPS)
    return apply_patch(live, config, rtype, manager=manager, force=kw.pop("force", False), now=T1)


def owners(obj: JsonObj) -> dict[str, list[str]]:
    found = decode_managed(obj["metadata"].get("managedFields"))
    return {
        who.manager: [fieldpath.path_string(p) for p in own.fields.paths()]
        for who, own in found.items()
    }


def conflict(live: JsonObj, config: JsonObj, manager: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        apply(live, config, manager)
    return caught.value


def test_apply_creates_then_shares_then_conflicts_then_forces() -> None:
    mine = apply(None, configmap({"color": "blue", "size": "L"}), "kubectl")
    assert owners(mine) == {"kubectl": [".data.color", ".data.size"]}
    shared = apply(mine, configmap({"color": "blue"}), "other")  # same value: no conflict
    assert owners(shared) == {"kubectl": [".data.color", ".data.size"], "other": [".data.color"]}
    refused = conflict(shared, configmap({"size": "XL"}), "other")
    assert (refused.code, refused.reason) == (409, "Conflict")
    assert str(refused) == 'Apply failed with 1 conflict: conflict with "kubectl": .data.size'
    cause = {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"'}
    assert refused.details == {"causes": [{**cause, "field": ".data.size"}]}
    forced = apply(shared, configmap({"size": "XL"}), "other", force=True)
    assert forced["data"] == {"color": "blue", "size": "XL"}
    assert owners(forced) == {"kubectl": [".data.color"], "other": [".data.size"]}


def test_conflicts_with_several_managers_are_listed_by_manager() -> None:
    created = track_update(
        None, configmap({"a": "1"}), CONFIGMAPS, manager="kubectl-create", now=T0
    )
    both = apply(created, configmap({"a": "1", "b": "2"}), "kubectl")
    refused = conflict(both, configmap({"a": "x", "b": "y"}), "helm")
    assert str(refused) == (
        'Apply failed with 3 conflicts: conflicts with "kubectl":\n- .data.a\n- .data.b\n'
        'conflicts with "kubectl-create" using v1:\n- .data.a'
    )


def test_a_field_no_longer_applied_goes_unless_someone_else_owns_it() -> None:
    mine = apply(None, configmap({"a": "1", "b": "2", "c": "3"}), "kubectl")
    theirs = apply(mine, configmap({"c": "3"}), "other")
    pruned = apply(theirs, configmap({"a": "1"}), "kubectl")
    assert pruned["data"] == {"a": "1", "c": "3"}
    assert apply(pruned, configmap(), "kubectl").get("data") == {"c": "3"}


def test_an_update_takes_the_fields_it_changes_and_moves_its_time() -> None:
    applied = apply(None, configmap({"a": "1", "b": "2"}), "kubectl")
    edited = configmap(
        {"a": "changed", "b": "2"}, managedFields=applied["metadata"]["managedFields"]
    )
    after = track_update(
        applied, edited, CONFIGMAPS, manager="kubectl-edit", now="2030-01-01T00:00:00Z"
    )
    assert owners(after) == {"kubectl": [".data.b"], "kubectl-edit": [".data.a"]}
    same = track_update(
        after, dict(after), CONFIGMAPS, manager="kubectl-edit", now="2031-01-01T00:00:00Z"
    )
    times = [e.get("time") for e in same["metadata"]["managedFields"]]
    assert times == [T1, "2030-01-01T00:00:00Z"]  # a write that changed nothing keeps the times


def test_objects_without_managed_fields_stay_untracked_until_applied() -> None:
    seeded = configmap({"a": "1"}, uid="u")
    updated = track_update(
        seeded, configmap({"a": "2"}), CONFIGMAPS, manager="kubectl-edit", now=T0
    )
    assert "managedFields" not in updated["metadata"]
    refused = conflict(updated, configmap({"a": "3"}), "kubectl")
    assert str(refused) == (
        'Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.a'
    )


def test_more_than_ten_updaters_merge_the_oldest_into_ancient_changes() -> None:
    obj = track_update(None, configmap({"k0": "v"}), CONFIGMAPS, manager="m00", now=T0)
    for i in range(1, 12):
        body = configmap(
            {**obj["data"], f"k{i}": "v"}, managedFields=obj["metadata"]["managedFields"]
        )
        obj = track_update(
            obj, body, CONFIGMAPS, manager=f"m{i:02}", now=f"2023-01-01T00:00:{i:02}Z"
        )
    names = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(names) == 10
    assert names[0] == "ancient-changes"  # m00 and m01, the oldest, merged
    assert "m00" not in names


def pod(*containers: JsonObj, **spec: Any) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": list(containers), **spec},
    }


def test_containers_merge_by_name_and_ports_by_port_and_protocol() -> None:
    app = {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}
    mine = apply(None, pod(app), "kubectl", rtype=PODS)
    side = {"name": "side", "image": "s:1", "ports": [{"containerPort": 80, "protocol": "UDP"}]}
    both = apply(mine, pod(side), "sidecar", rtype=PODS)
    assert [c["name"] for c in both["spec"]["containers"]] == ["app", "side"]
    port = '.spec.containers[name="side"].ports[containerPort=80,protocol="UDP"]'
    assert {port, f"{port}.containerPort", f"{port}.protocol"} <= set(owners(both)["sidecar"])
    upgraded = apply(both, pod({"name": "app", "image": "a:2"}), "kubectl", rtype=PODS)
    assert upgraded["spec"]["containers"][0] == {"name": "app", "image": "a:2"}
    assert upgraded["spec"]["containers"][1] == side


def test_status_is_not_owned_on_the_main_resource() -> None:
    config = {**pod({"name": "app", "image": "a"}), "status": {"phase": "Running"}}
    assert owners(apply(None, config, "kubectl", rtype=PODS))["kubectl"] == [
        '.spec.containers[name="app"]',
        '.spec.containers[name="app"].image',
        '.spec.containers[name="app"].name',
    ]


@pytest.mark.parametrize(
    ("config", "code", "message"),
    [
        (
            {**configmap(), "apiVersion": "apps/v1"},
            400,
            "Incorrect version specified in apply patch. Specified patch version: apps/v1, "
            "expected: v1",
        ),
        (configmap(managedFields=[]), 400, "metadata.managedFields must be nil"),
        (
            {**configmap(), "spec": {}},
            500,
            "failed to create typed patch object (default/test; /v1, Kind=ConfigMap): .spec: "
            "field not declared in schema",
        ),
    ],
    ids=["wrong-version", "managed-fields", "undeclared-field"],
)
def test_configurations_the_real_server_refuses(config: JsonObj, code: int, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        apply(None, config, "kubectl")
    assert (caught.value.code, str(caught.value)) == (code, message)


def test_duplicate_keys_in_a_configuration_are_refused() -> None:
    twice = pod({"name": "a", "image": "x"}, {"name": "a", "image": "y"})
    with pytest.raises(
        ApiError, match=r'\.spec\.containers: duplicate entries for key \[name="a"\]'
    ):
        apply(None, twice, "kubectl", rtype=PODS)


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"}}
    svc["spec"] = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}
    assert owners(apply(None, svc, "kubectl", rtype=SERVICES))["kubectl"][0:2] == [
        '.spec.ports[port=53,protocol="TCP"]',
        '.spec.ports[port=53,protocol="TCP"].port',
    ]


@pytest.mark.parametrize(
    ("query", "options", "apply_patch_type", "message"),
    [
        ({}, "PatchOptions", True, "fieldManager: Required value: is required for apply patch"),
        (
            {"fieldManager": "x" * 129},
            "CreateOptions",
            False,
            "fieldManager: Too long: may not be more than 128 bytes",
        ),
        (
            {"force": "true"},
            "PatchOptions",
            False,
            "force: Forbidden: may not be specified for non-apply patch",
        ),
    ],
    ids=["apply-without-manager", "too-long", "force-without-apply"],
)
def test_write_options_are_validated_as_the_real_server(
    query: dict[str, str], options: str, apply_patch_type: bool, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        field_manager(query, "kubectl/v1.32", options_kind=options, apply=apply_patch_type)
    assert caught.value.code == 422
    assert str(caught.value) == f'{options}.meta.k8s.io "" is invalid: {message}'


def test_the_manager_defaults_to_the_user_agents_first_token() -> None:
    ua = "kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07"
    assert field_manager({}, ua, options_kind="CreateOptions", apply=False) == "kubectl"
    assert (
        field_manager(
            {"fieldManager": "kubectl-create"}, ua, options_kind="CreateOptions", apply=False
        )
        == "kubectl-create"
    )
    assert prefix_from_user_agent("\x07bell/1") == "bell"
