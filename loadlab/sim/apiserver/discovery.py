"""Discovery documents: /api, /apis, /api/v1, /apis/<group>/<version>, /version.

The legacy (unaggregated) forms, served as plain ``application/json``: kubectl 1.32 asks for the
aggregated apidiscovery.k8s.io/v2 form first and falls back to these when the Content-Type says
they are not aggregated.
"""

from __future__ import annotations

from loadlab.sim.k8s.objects import KUBE_VERSION, RESOURCE_TYPES, JsonObj, ResourceType

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_STATUS_VERBS = ["get", "patch", "update"]


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group:
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
    return groups


def api_versions(server_address: str) -> JsonObj:
    """/api"""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_doc(name: str, versions: list[str]) -> JsonObj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> JsonObj:
    """/apis"""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_doc(name, versions) for name, versions in _groups().items()],
    }


def api_group(group: str) -> JsonObj | None:
    """/apis/<group>, or None if the group is not served."""
    versions = _groups().get(group)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def _resource_doc(rt: ResourceType) -> list[JsonObj]:
    doc: JsonObj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": _VERBS,
    }
    if rt.short_names:
        doc["shortNames"] = list(rt.short_names)
    if rt.plural in ("pods", "services"):
        doc["categories"] = ["all"]
    docs = [doc]
    if rt.has_status:
        docs.append(
            {
                "name": f"{rt.plural}/status",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _STATUS_VERBS,
            }
        )
    return docs


def api_resource_list(group: str, version: str) -> JsonObj | None:
    """/api/v1 (group "") or /apis/<group>/<version>; None if not served."""
    served = [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]
    if not served:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": version if not group else f"{group}/{version}",
        "resources": [d for rt in served for d in _resource_doc(rt)],
    }


def version_info() -> JsonObj:
    """/version"""
    major, minor, _ = KUBE_VERSION.lstrip("v").split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": KUBE_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
