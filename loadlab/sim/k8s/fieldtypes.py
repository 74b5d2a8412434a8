"""The served kinds as server-side apply sees them: the type of every field.

Each field is a scalar, a struct (declared fields), a map (any key), or a list that is atomic
(replaced whole), a set of scalars, or a map keyed by some of its items' fields; atomic structs
and maps are replaced whole too. The fields come from ``schema_table``; the list types from the
strategic merge keys of ``strategic.MERGE_KEYS`` (kube-openapi's schemaconv turns a
``patchStrategy: merge`` list into an associative list by its ``patchMergeKey``), corrected where
k8s.io/api v0.32 declares other ``+listType``/``+listMapKey`` markers (``_LIST_KEYS``); atomic
structs and maps from its ``+structType=atomic`` and ``+mapType=atomic`` markers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Final

from loadlab.sim.k8s import fieldpath
from loadlab.sim.k8s.fieldpath import Path
from loadlab.sim.k8s.objects import GROUP_PACKAGES, PODS, SERVICES, ResourceType
from loadlab.sim.k8s.schema_table import FIELDS
from loadlab.sim.k8s.strategic import MERGE_KEYS

Names = tuple[str, ...]
"""Field names from the object's root; list items add no step (as ``strategic.MergeKeys``)."""
_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
# k8s.io/api v0.32 markers where SSA's list type is not the strategic merge key alone:
# ``None`` atomic, ``()`` a set, else the list-map keys.
_ANY_KIND: dict[Names, tuple[str, ...] | None] = {
    ("metadata", "finalizers"): (),  # meta/v1 ObjectMeta: +listType=set
    ("metadata", "ownerReferences"): ("uid",),  # +listType=map +listMapKey=uid
}
_LIST_KEYS: dict[ResourceType, dict[Names, tuple[str, ...] | None]] = {
    PODS: {
        **{("spec", c, "ports"): ("containerPort", "protocol") for c in _CONTAINERS},
        **{("spec", c, "resources", "claims"): ("name",) for c in _CONTAINERS},
        ("spec", "topologySpreadConstraints"): ("topologyKey", "whenUnsatisfiable"),
        ("status", "hostIPs"): None,  # PodStatus.hostIPs: +listType=atomic
    },
    SERVICES: {("spec", "ports"): ("port", "protocol")},
}
# The OpenAPI defaults of key fields, which an item may leave out (ContainerPort.protocol and
# ServicePort.protocol default to TCP; typed/helpers.go getAssociativeKeyDefault).
_KEY_DEFAULTS: Final = {"protocol": "TCP"}
_UNSET: Final = object()
# +mapType=atomic maps and +structType=atomic structs of the served kinds.
_ATOMIC_MAPS: dict[ResourceType, frozenset[Names]] = {
    PODS: frozenset({("spec", "nodeSelector")}),
    SERVICES: frozenset({("spec", "selector")}),
}
_ATOMIC_STRUCTS = frozenset(
    {
        "meta.LabelSelector",
        "meta.OwnerReference",
        "core.ObjectReference",
        "core.LocalObjectReference",
        "core.TypedLocalObjectReference",
        "core.ConfigMapKeySelector",
        "core.SecretKeySelector",
        "core.FileKeySelector",
        "core.ObjectFieldSelector",
        "core.ResourceFieldSelector",
        "core.NodeSelector",
        "core.NodeSelectorTerm",
    }
)


@dataclass(frozen=True)
class Node:
    """The type of one field of one served kind."""

    rtype: ResourceType
    type: str
    """In ``schema_table`` notation: ``core.Container``, ``[core.EnvVar]``, ``{string}``."""
    names: Names
    kind: str
    """scalar, struct, map or list."""
    atomic: bool = False
    keys: tuple[str, ...] = ()
    """A non-atomic list's key fields; none: a set of scalars."""
    fields: dict[str, str] = field(default_factory=dict, compare=False)


@functools.cache
def _declared(type_name: str) -> dict[str, str]:
    return dict(f.split(":", 1) for f in FIELDS[type_name].split())


@functools.cache
def node(rtype: ResourceType, type_text: str, names: Names = ()) -> Node:
    if type_text.startswith("["):
        keys = _LIST_KEYS.get(rtype, {}).get(names, _UNSET)
        if keys is _UNSET:
            keys = _ANY_KIND.get(names, _UNSET)
        if keys is _UNSET:
            merge_key = MERGE_KEYS.get(rtype, {}).get(names)
            keys = None if merge_key is None else (merge_key,) if merge_key else ()
        if keys is None:
            return Node(rtype, type_text, names, "list", atomic=True)
        assert isinstance(keys, tuple)
        return Node(rtype, type_text, names, "list", keys=keys)
    if type_text.startswith("{"):
        atomic = names in _ATOMIC_MAPS.get(rtype, frozenset())
        return Node(rtype, type_text, names, "map", atomic=atomic)
    if type_text in FIELDS:
        atomic = type_text in _ATOMIC_STRUCTS
        return Node(rtype, type_text, names, "struct", atomic, fields=_declared(type_text))
    return Node(rtype, type_text, names, "scalar")


def root(rtype: ResourceType) -> Node:
    return node(rtype, f"{GROUP_PACKAGES[rtype.group]}.{rtype.kind}")


def child(parent: Node, name: str) -> Node | None:
    """The type of field ``name`` (None when a struct does not declare it)."""
    if parent.kind == "map":
        return node(parent.rtype, parent.type[1:-1], (*parent.names, "*"))
    declared = parent.fields.get(name)
    return None if declared is None else node(parent.rtype, declared, (*parent.names, name))


def item(parent: Node) -> Node:
    return node(parent.rtype, parent.type[1:-1], parent.names)


def below(parent: Node, element: str) -> Node | None:
    """The type a path element leads to: a field, or a list item."""
    if element.startswith("f:"):
        return child(parent, element[2:]) if parent.kind in ("struct", "map") else None
    return item(parent) if parent.kind == "list" else None


class TypedError(ValueError):
    """A value that does not fit its type (typed/validate.go words: ``.spec.x: <message>``)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{fieldpath.path_string(path)}: {message}")


class TypedErrors(TypedError):
    """Several problems, listed as ValidationErrors.Error lists them."""

    def __init__(self, errors: list[TypedError]) -> None:
        ValueError.__init__(self, "errors:\n  " + "\n  ".join(str(e) for e in errors))


def element_of(value: Any, list_node: Node, at: Path, i: int) -> str:
    """The path element of a list item: ``k:{...}`` by its keys (defaults filled in), ``v:...``
    for a set (typed/helpers.go listItemToPathElement)."""
    if not list_node.keys:
        if isinstance(value, dict | list):
            what = "map" if isinstance(value, dict) else "list"
            message = f"associative list without keys has an element that's a {what} type"
            raise TypedError(at, f"element {i}: {message}")
        return fieldpath.value(value)
    if not isinstance(value, dict):
        what = "a null element" if value is None else "non-map elements"
        raise TypedError(at, f"element {i}: associative list with keys may not have {what}")
    found = {k: value.get(k, _KEY_DEFAULTS.get(k)) for k in list_node.keys}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        keys = "[" + " ".join(f'"{k}"' for k in list_node.keys) + "]"
        raise TypedError(
            at,
            f"element {i}: associative list with keys has an element that "
            f"omits all key fields {keys} (and doesn't have default values for "
            "any key fields)",
        )
    return fieldpath.key(found)
