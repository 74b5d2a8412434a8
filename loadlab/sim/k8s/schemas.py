"""OpenAPI schemas of the kinds the sim serves, and strict field validation against them.

The schemas are built from ``schema_table`` (one line of fields per type) under the names the real
server gives them (``io.k8s.api.core.v1.Pod``, ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``)
so that kubectl finds each kind by its ``x-kubernetes-group-version-kind``, and ``explain`` and the
strategic-merge patch of ``apply`` read them as they read a real server's.

``unknown_fields`` is what kube-apiserver's strict decoder (sigs.k8s.io/json, the
``fieldValidation`` query) reports: every key that no field of the Go type takes, by its path
(``spec.containers[0].imagePullPolice``). Types described as an open object (FieldsV1) take any key.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from loadlab.sim.k8s.objects import GROUP_PACKAGES, RESOURCE_TYPES, JsonObj, ResourceType
from loadlab.sim.k8s.schema_table import FIELDS
from loadlab.sim.k8s.validation import bad_request, go_quote

_PACKAGES = {
    "core": "io.k8s.api.core.v1",
    "meta": "io.k8s.apimachinery.pkg.apis.meta.v1",
    "discovery": "io.k8s.api.discovery.v1",
    "coord": "io.k8s.api.coordination.v1",
}
META = _PACKAGES["meta"]
# The scalar types as the real documents describe them (kube-openapi's OpenAPIDefinition of each).
_SCALARS: dict[str, JsonObj] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "format": "int64"},
    "number": {"type": "number", "format": "double"},
    "boolean": {"type": "boolean"},
}
_NAMED: dict[str, JsonObj] = {
    f"{META}.Time": {
        "description": "Time is a wrapper around time.Time which supports correct marshaling to "
        "YAML and JSON, in RFC 3339 form.",
        "type": "string",
        "format": "date-time",
    },
    f"{META}.MicroTime": {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "type": "string",
        "format": "date-time",
    },
    f"{META}.FieldsV1": {
        "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON "
        "format.",
        "type": "object",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number, such as 100m or 1Gi.",
        "type": "string",
    },
    f"{META}.Patch": {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
        "request body.",
        "type": "object",
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "type": "string",
        "format": "int-or-string",
    },
}
_SHORT_NAMED = {
    "Time": f"{META}.Time",
    "MicroTime": f"{META}.MicroTime",
    "FieldsV1": f"{META}.FieldsV1",
    "Quantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "IntOrString": "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
}
# The strategic-merge keys of the lists a manifest commonly changes (the Go types' patchMergeKey
# tags); without them apply replaces these lists whole, which is still correct, only coarser.
# The same tags as ``strategic.MERGE_KEYS`` (what the server merges by), keyed here by schema.
_MERGE_KEYS = {
    ("io.k8s.api.core.v1.PodSpec", "containers"): "name",
    ("io.k8s.api.core.v1.PodSpec", "initContainers"): "name",
    ("io.k8s.api.core.v1.PodSpec", "volumes"): "name",
    ("io.k8s.api.core.v1.Container", "env"): "name",
    ("io.k8s.api.core.v1.Container", "ports"): "containerPort",
    ("io.k8s.api.core.v1.Container", "volumeMounts"): "mountPath",
    ("io.k8s.api.core.v1.ServiceSpec", "ports"): "port",
    (f"{META}.ObjectMeta", "ownerReferences"): "uid",
}
_REQUIRED = {
    "io.k8s.api.core.v1.Container": ["name"],
    "io.k8s.api.core.v1.PodSpec": ["containers"],
    "io.k8s.api.core.v1.EnvVar": ["name"],
    "io.k8s.api.core.v1.ServicePort": ["port"],
}
_TOP_FIELDS = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
    "metadata": "Standard object's metadata.",
    "spec": "The desired behaviour of the object.",
    "status": "The most recently observed status of the object. Read-only.",
    "items": "The objects of the list.",
}


def full_name(short: str) -> str:
    """``core.Pod`` -> ``io.k8s.api.core.v1.Pod``; ``Time`` -> the meta/v1 name."""
    if short in _SHORT_NAMED:
        return _SHORT_NAMED[short]
    package, _, name = short.partition(".")
    return f"{_PACKAGES[package]}.{name}"


def kind_schema_name(rtype: ResourceType) -> str:
    """The schema name of a served kind: ``io.k8s.api.coordination.v1.Lease``."""
    return f"{_PACKAGES[GROUP_PACKAGES[rtype.group]]}.{rtype.kind}"


def _gvk(rtype: ResourceType, kind: str) -> list[JsonObj]:
    return [{"group": rtype.group, "kind": kind, "version": rtype.version}]


def _ref(name: str, prefix: str) -> JsonObj:
    return {"$ref": f"{prefix}{name}"}


def _type_schema(text: str, prefix: str, v3: bool) -> JsonObj:
    """One field's schema from the table's notation: ``[core.EnvVar]``, ``{Quantity}``..."""
    if text.startswith("["):
        return {"type": "array", "items": _type_schema(text[1:-1], prefix, v3)}
    if text.startswith("{"):
        return {"type": "object", "additionalProperties": _type_schema(text[1:-1], prefix, v3)}
    if text in _SCALARS:
        return dict(_SCALARS[text])
    ref = _ref(full_name(text), prefix)
    # The real v3 documents wrap a reference in allOf so that it can carry a description.
    return {"allOf": [ref]} if v3 else ref


@functools.cache
def _parsed() -> dict[str, list[tuple[str, str]]]:
    return {
        full_name(short): [tuple(f.split(":", 1)) for f in line.split()]  # type: ignore[misc]
        for short, line in FIELDS.items()
    }


def _struct_schema(name: str, prefix: str, v3: bool) -> JsonObj:
    props: JsonObj = {}
    for field, text in _parsed()[name]:
        prop = _type_schema(text, prefix, v3)
        description = _TOP_FIELDS.get(field) if name.endswith(_KIND_SUFFIXES) else None
        if description:
            prop["description"] = description
        merge_key = _MERGE_KEYS.get((name, field))
        if merge_key:
            prop["x-kubernetes-patch-merge-key"] = merge_key
            prop["x-kubernetes-patch-strategy"] = "merge"
        props[field] = prop
    schema: JsonObj = {"type": "object", "properties": props}
    if name in _REQUIRED:
        schema["required"] = _REQUIRED[name]
    return schema


_KIND_SUFFIXES = tuple(f".{rt.kind}" for rt in RESOURCE_TYPES)


def _list_schema(rtype: ResourceType, prefix: str, v3: bool) -> JsonObj:
    item = _ref(kind_schema_name(rtype), prefix)
    meta = _ref(f"{META}.ListMeta", prefix)
    return {
        "description": f"{rtype.kind}List is a list of {rtype.kind} objects.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": _TOP_FIELDS["apiVersion"]},
            "items": {"type": "array", "items": item, "description": _TOP_FIELDS["items"]},
            "kind": {"type": "string", "description": _TOP_FIELDS["kind"]},
            "metadata": {"allOf": [meta]} if v3 else meta,
        },
        "x-kubernetes-group-version-kind": _gvk(rtype, rtype.list_kind),
    }


def _refs_in(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref":
                yield value.rpartition("/")[2]
            else:
                yield from _refs_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs_in(value)


def schemas_for(rtypes: list[ResourceType], prefix: str, *, v3: bool) -> dict[str, JsonObj]:
    """Every schema the kinds ``rtypes`` (and their lists, and Status) reach, by name; references
    start with ``prefix`` (``#/components/schemas/`` in v3, ``#/definitions/`` in v2)."""
    out: dict[str, JsonObj] = {}
    pending = [f"{META}.Status", f"{META}.Patch"]
    for rt in rtypes:
        out[f"{kind_schema_name(rt)}List"] = _list_schema(rt, prefix, v3)
        pending.extend(_refs_in(out[f"{kind_schema_name(rt)}List"]))
    kinds = {kind_schema_name(rt): rt for rt in rtypes}
    while pending:
        name = pending.pop()
        if name in out:
            continue
        schema = dict(_NAMED[name]) if name in _NAMED else _struct_schema(name, prefix, v3)
        kind = kinds.get(name)
        if kind is not None:
            schema["description"] = f"{kind.kind} ({kind.api_version}), as the sim serves it."
            schema["x-kubernetes-group-version-kind"] = _gvk(kind, kind.kind)
        out[name] = schema
        pending.extend(_refs_in(schema))
    return dict(sorted(out.items()))


# -- strict field validation -----------------------------------------------------------------


def _walk(value: Any, text: str, path: str, found: list[str]) -> None:
    """Collect the unknown keys under ``value`` decoded as the table type ``text``."""
    if text.startswith("["):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, text[1:-1], f"{path}[{i}]", found)
        return
    if text.startswith("{"):
        if isinstance(value, dict):
            for key, item in value.items():
                _walk(item, text[1:-1], f"{path}[{key}]", found)
        return
    if text in _SCALARS or text in _SHORT_NAMED or not isinstance(value, dict):
        return  # scalars and open objects take anything (type errors are shapes.py's)
    fields = dict(_parsed()[full_name(text)])
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        sub = fields.get(key)
        if sub is None:
            found.append(where)
        elif item is not None:
            _walk(item, sub, where, found)


def unknown_fields(rtype: ResourceType, obj: JsonObj) -> list[str]:
    """The paths of the keys of ``obj`` that no field of ``rtype``'s Go type takes, in document
    order, as sigs.k8s.io/json's strict decoder names them."""
    found: list[str] = []
    package = GROUP_PACKAGES[rtype.group]
    _walk(obj, f"{package}.{rtype.kind}", "", found)
    return found


FIELD_VALIDATION_DIRECTIVES = ("Ignore", "Warn", "Strict")
"""The values of the ``fieldValidation`` query; none given is Warn (apiserver handlers/rest.go)."""


def field_validation(
    rtype: ResourceType, obj: JsonObj, directive: str | None, *, patch: bool = False
) -> list[str]:
    """Apply the ``fieldValidation`` query to a create, update or (patched) object: the values of
    the ``Warning`` headers to send (Warn), or ``ApiError`` 400 (Strict, or a bad directive).

    The messages are kube-apiserver's: create and update wrap the strict decoding error as
    handlers/rest.go transformDecodeError does (``ConfigMap in version "v1" cannot be handled as
    a ConfigMap: strict decoding error: unknown field "dta"``); a patch reports it bare.
    """
    mode = directive or "Warn"
    if mode not in FIELD_VALIDATION_DIRECTIVES:
        supported = ", ".join(go_quote(d) for d in ("", *FIELD_VALIDATION_DIRECTIVES))
        raise bad_request(
            f"fieldValidation: Unsupported value: {go_quote(mode)}: supported values: {supported}"
        )
    if mode == "Ignore":
        return []
    unknown = [f"unknown field {go_quote(path)}" for path in unknown_fields(rtype, obj)]
    if not unknown:
        return []
    if mode == "Warn":
        # RFC 7234 warn-code 299, agent "-", the text quoted (apiserver pkg/warning).
        return ["299 - " + go_quote(text) for text in unknown]
    error = "strict decoding error: " + ", ".join(unknown)
    if patch:
        raise bad_request(error)
    version = rtype.version
    raise bad_request(
        f"{rtype.kind} in version {go_quote(version)} cannot be handled as a {rtype.kind}: {error}"
    )
