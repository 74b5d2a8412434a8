"""DELETE's preconditions (``DeleteOptions.preconditions``): a ``uid`` or ``resourceVersion`` the
object no longer has refuses the delete with 409 Conflict, and the object stays.

kube-apiserver checks them in storage (apiserver pkg/storage/interfaces.go Preconditions.Check),
whose StorageError ("invalid object", code 4, with the object's etcd key) InterpretDeleteError
wraps in NewConflict, so the message carries the StorageError's text; a namespace checks them
itself before it starts terminating (pkg/registry/core/namespace/storage) and says it plainly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadlab.sim.k8s.objects import NAMESPACES, JsonObj, ResourceType
from loadlab.sim.k8s.shapes import json_kind
from loadlab.sim.k8s.validation import ApiError, bad_request

# kube-apiserver's storage prefixes (pkg/registry/*/storage): a Node is kept under "minions" and
# a Service under "services/specs", everything else under its resource name, all below /registry.
_PREFIXES = {"nodes": "minions", "services": "services/specs"}
# apiserver pkg/storage/errors.go: ErrCodeInvalidObj and its text.
_INVALID_OBJ_CODE = 4
_GO_TYPES = {"uid": "types.UID", "resourceVersion": "string"}


def storage_key(rtype: ResourceType, namespace: str, name: str) -> str:
    """The object's etcd key, as a StorageError names it."""
    prefix = _PREFIXES.get(rtype.plural, rtype.plural)
    if rtype.namespaced:
        return f"/registry/{prefix}/{namespace}/{name}"
    return f"/registry/{prefix}/{name}"


def preconditions_of(options: Mapping[str, Any]) -> dict[str, str]:
    """The ``uid`` and ``resourceVersion`` preconditions a DeleteOptions body sets (a key
    present with a string, even empty, is a precondition; ``null`` is none); 400 for a value
    that would not decode into metav1.Preconditions."""
    given = options.get("preconditions")
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise bad_request(
            f"json: cannot unmarshal {json_kind(given)} into Go struct field "
            "DeleteOptions.preconditions of type v1.Preconditions"
        )
    found: dict[str, str] = {}
    for key, go_type in _GO_TYPES.items():
        value = given.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad_request(
                f"json: cannot unmarshal {json_kind(value)} into Go struct field "
                f"Preconditions.preconditions.{key} of type {go_type}"
            )
        found[key] = value
    return found


def check_preconditions(
    rtype: ResourceType, obj: JsonObj, preconditions: Mapping[str, str]
) -> None:
    """409 Conflict when ``obj`` fails one of ``preconditions`` (uid first, as Check does)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        want = preconditions.get(key)
        if want is None or want == (meta.get(key) or ""):
            continue
        failure = (
            f"Precondition failed: {label} in precondition: {want}, {label} in object meta: "
            f"{meta.get(key) or ''}"
        )
        if rtype is not NAMESPACES:
            key_path = storage_key(rtype, meta.get("namespace") or "", name)
            failure = (
                f"StorageError: invalid object, Code: {_INVALID_OBJ_CODE}, Key: {key_path}, "
                f"ResourceVersion: 0, AdditionalErrorMsg: {failure}"
            )
        details = {"name": name, "group": rtype.group, "kind": rtype.plural}
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": {failure}',
            {k: v for k, v in details.items() if v},
        )
