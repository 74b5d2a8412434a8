"""Strategic merge patch (``application/strategic-merge-patch+json``) for the kinds the sim serves.

Lists with a ``patchStrategy:"merge"`` tag in the Kubernetes ``types.go`` files (``MERGE_KEYS``)
are merged by their ``patchMergeKey`` (or, for lists of strings, as a set); every other list is
replaced. The directives ``$patch: replace|delete`` (in maps and list items),
``$deleteFromPrimitiveList``, ``$retainKeys`` and ``$setElementOrder`` are honoured. Errors follow
handlers/patch.go ``interpretStrategicMergePatchError``: a malformed directive is 400, a list item
without its merge key a 500 InternalError (apimachinery strategicpatch's plain error).

Simplified: ``$setElementOrder`` puts the listed items first in its order and the rest after them
(the real server interleaves them); the 500's message renders the item as Go's ``%v`` roughly.
Stored objects are never mutated: new containers are built along changed paths.
"""

from __future__ import annotations

from typing import Any

from loadlab.sim.k8s.objects import NAMESPACES, NODES, PODS, SERVICES, JsonObj, ResourceType
from loadlab.sim.k8s.validation import ApiError, bad_request

# (path of field names, list items adding no step) -> merge key, "" for a set of strings.
# From the patchStrategy/patchMergeKey tags of k8s.io/api core/v1/types.go and
# apimachinery pkg/apis/meta/v1/types.go (Kubernetes 1.32). Untagged lists (tolerations,
# node taints, containerStatuses, EndpointSlice endpoints and ports) are replaced.
MergeKeys = dict[tuple[str, ...], str]
_META: MergeKeys = {("metadata", "finalizers"): "", ("metadata", "ownerReferences"): "uid"}
_CONTAINER: MergeKeys = {
    ("ports",): "containerPort",
    ("env",): "name",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
}
_POD_SPEC: MergeKeys = {
    ("volumes",): "name",
    ("initContainers",): "name",
    ("containers",): "name",
    ("ephemeralContainers",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("topologySpreadConstraints",): "topologyKey",
    ("resourceClaims",): "name",
    ("schedulingGates",): "name",
}
for _list in ("initContainers", "containers", "ephemeralContainers"):
    _POD_SPEC.update({(_list, *path): key for path, key in _CONTAINER.items()})
_CONDITIONS: MergeKeys = {("status", "conditions"): "type"}
MERGE_KEYS: dict[ResourceType, MergeKeys] = {
    PODS: {
        **_META,
        **{("spec", *path): key for path, key in _POD_SPEC.items()},
        **_CONDITIONS,
        ("status", "podIPs"): "ip",
        ("status", "hostIPs"): "ip",
    },
    NODES: {
        **_META,
        ("spec", "podCIDRs"): "",
        **_CONDITIONS,
        ("status", "addresses"): "type",
    },
    SERVICES: {**_META, ("spec", "ports"): "port", **_CONDITIONS},
    NAMESPACES: {**_META, **_CONDITIONS},
}


_DELETE = object()  # a map whose patch said ``$patch: delete``
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge(doc: JsonObj, patch: JsonObj, rtype: ResourceType) -> JsonObj:
    """``doc`` with the strategic merge ``patch`` applied (new dicts along changed paths)."""
    merged = _merge_map(doc, patch, (), MERGE_KEYS.get(rtype, {}))
    if merged is _DELETE:
        return {}
    out: JsonObj = merged
    return out


def _go_value(value: Any) -> str:
    """Go's %v of a decoded JSON value (map keys sorted, as fmt prints them)."""
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def _internal(message: str) -> ApiError:
    """apimachinery NewInternalError: 500 InternalError, the cause's message in details."""
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def _merge_map(old: Any, patch: JsonObj, path: tuple[str, ...], keys: MergeKeys) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip(patch)
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    result: JsonObj = dict(old) if isinstance(old, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue  # directives, applied below
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = _merge_map(result.get(k), v, (*path, k), keys)
            if merged is _DELETE:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list) and (*path, k) in keys:
            result[k] = _merge_list(result.get(k), v, (*path, k), keys)
        else:
            result[k] = _strip(v)
    return _directives(result, patch, path, keys)


def _directives(result: JsonObj, patch: JsonObj, path: tuple[str, ...], keys: MergeKeys) -> JsonObj:
    """``$deleteFromPrimitiveList``, ``$retainKeys`` and ``$setElementOrder`` of one map."""
    for k, v in patch.items():
        if k.startswith(_DELETE_FROM):
            field = k[len(_DELETE_FROM) :]
            if not isinstance(v, list):
                raise bad_request("invalid patch format for primitive list")
            result[field] = [x for x in result.get(field) or [] if x not in v]
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise bad_request("invalid patch format for retainKeys")
        result = {k: v for k, v in result.items() if k in retain}
    for k, order in patch.items():
        if not k.startswith(_SET_ORDER):
            continue
        field = k[len(_SET_ORDER) :]
        current = result.get(field)
        if isinstance(order, list) and isinstance(current, list):
            result[field] = _reorder(current, order, keys.get((*path, field), ""))
    return result


def _merge_list(old: Any, patch: list[Any], path: tuple[str, ...], keys: MergeKeys) -> list[Any]:
    items = list(old) if isinstance(old, list) else []
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [_strip(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    key = keys[path]
    if not key:  # a set of strings (finalizers, podCIDRs)
        return items + [x for x in dict.fromkeys(patch) if x not in items]
    for item in patch:
        if not isinstance(item, dict):
            raise _internal(f"unable to find api field in struct for the list item {item}")
        if key not in item:
            raise _internal(f"map: {_go_value(item)} does not contain declared merge key: {key}")
        at = next(
            (i for i, x in enumerate(items) if isinstance(x, dict) and x.get(key) == item[key]),
            None,
        )
        merged = _merge_map(items[at] if at is not None else None, item, path, keys)
        if merged is _DELETE:
            if at is not None:
                del items[at]
        elif at is not None:
            items[at] = merged
        else:
            items.append(merged)
    return items


def _reorder(items: list[Any], order: list[Any], key: str) -> list[Any]:
    """``$setElementOrder``: the listed items first, in its order; the others after them."""

    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    first = [x for w in wanted for x in items if ident(x) == w]
    rest = [x for x in items if ident(x) not in wanted]
    return first + rest


def _strip(value: Any) -> Any:
    """A value as stored: directives removed, and nulls in maps dropped."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
