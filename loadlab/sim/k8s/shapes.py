"""Decoding a request body as kube-apiserver does: JSON with bounded nesting, then the Go types of
the fields the sim reads, so ``metadata: "x"`` or ``metadata.labels: [1]`` never reach the store.

Only the fields something in the sim reads are typed (metadata; what the tables, selectors and
cluster DNS read); unknown fields pass, as with ``fieldValidation=Warn``, kube-apiserver's default.
A ``null`` decodes as Go's zero value: the key is dropped (a missing field reads as its zero), a
``null`` item of a list of objects becomes ``{}`` and of a list or map of strings ``""``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loadlab.sim.k8s.objects import (
    CONFIGMAPS,
    ENDPOINTSLICES,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    JsonObj,
    ResourceType,
)

# Go's encoding/json (and sigs.k8s.io/json, kube-apiserver's decoder) stop at 10,000 levels
# (scanner.go maxNestingDepth). The sim parses, merges and encodes recursively in Python, whose
# default recursion limit is 1,000 frames, so it refuses past 512: far deeper than any real
# Kubernetes object, and well inside Python's limit with the server's own frames on the stack.
MAX_JSON_DEPTH = 512
_DEPTH_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Go's int32 and int64 ranges: a number outside them does not decode.
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# apimachinery pkg/apis/meta/v1 Time: time.RFC3339 (fractional seconds accepted on parse).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"
# apimachinery pkg/api/resource/quantity.go: splitREString
_QUANTITY_FMT = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(_QUANTITY_FMT, re.ASCII)


@dataclass(frozen=True)
class Shape:
    """A Go type as JSON sees it."""

    go: str
    """The type's name in Go's decode errors: ``string``, ``[]v1.Container``, ``v1.ObjectMeta``."""
    kind: str
    """string, int32, int64, bool, intstr, quantity, time, list, map or struct."""
    item: Shape | None = None
    """The element of a list, the value of a map."""
    fields: Mapping[str, Shape] = field(default_factory=dict)
    """A struct's typed fields by JSON name."""


STRING = Shape("string", "string")
INT32 = Shape("int32", "int32")
INT64 = Shape("int64", "int64")
BOOL = Shape("bool", "bool")
TIME = Shape("v1.Time", "time")
MICRO_TIME = Shape("v1.MicroTime", "time")
INT_OR_STRING = Shape("intstr.IntOrString", "intstr")
QUANTITY = Shape("resource.Quantity", "quantity")


def _alias(go: str) -> Shape:
    """A named string type: ``v1.PodPhase``."""
    return Shape(go, "string")


def _list(item: Shape) -> Shape:
    return Shape(f"[]{item.go}", "list", item=item)


def _map(value: Shape, go: str = "") -> Shape:
    return Shape(go or f"map[string]{value.go}", "map", item=value)


def _struct(go: str, **fields: Shape) -> Shape:
    return Shape(go, "struct", fields=fields)


# -- the body, as JSON ----------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (one pass, bounded by size)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets: the usual, cheap answer
    depth = 0
    for m in _DEPTH_TOKEN.finditer(raw):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _replace_surrogates(value: Any) -> Any:
    """Lone UTF-16 surrogates (``"\\ud800"``) become U+FFFD, as Go's decoder makes them; Python
    keeps them, and they could not be encoded as UTF-8 in any later answer."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


class BodyError(ValueError):
    """A request body that is not a JSON object (the API server answers 400 BadRequest)."""


def parse_body(raw: bytes) -> JsonObj:
    """The request body as a JSON object, or ``BodyError``."""
    if _depth_exceeds(raw, MAX_JSON_DEPTH):
        raise BodyError(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(
            raw, parse_constant=_reject_constant, parse_float=_finite_float
        )  # C decoder: recursion-checked, so a RecursionError is a clean refusal too
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BodyError("the request body must be a JSON object")
    if _LONE_SURROGATE_ESCAPE.search(raw):
        cleaned: JsonObj = _replace_surrogates(body)
        return cleaned
    return body


# -- the Go types -------------------------------------------------------------------------

_PROTOCOL = _alias("v1.Protocol")
_CONDITION = {
    "status": _alias("v1.ConditionStatus"),
    "reason": STRING,
    "message": STRING,
    "lastTransitionTime": TIME,
}
_META = _struct(
    "v1.ObjectMeta",
    name=STRING,
    generateName=STRING,
    namespace=STRING,
    uid=_alias("types.UID"),
    resourceVersion=STRING,
    generation=INT64,
    creationTimestamp=TIME,
    deletionTimestamp=TIME,
    deletionGracePeriodSeconds=INT64,
    labels=_map(STRING),
    annotations=_map(STRING),
    ownerReferences=_list(
        _struct(
            "v1.OwnerReference",
            apiVersion=STRING,
            kind=STRING,
            name=STRING,
            uid=_alias("types.UID"),
            controller=BOOL,
            blockOwnerDeletion=BOOL,
        )
    ),
    finalizers=_list(STRING),
)
_POD_SPEC = _struct(
    "v1.PodSpec",
    nodeName=STRING,
    containers=_list(_struct("v1.Container", name=STRING, image=STRING)),
    restartPolicy=_alias("v1.RestartPolicy"),
    schedulerName=STRING,
    hostNetwork=BOOL,
)
_POD_STATUS = _struct(
    "v1.PodStatus",
    phase=_alias("v1.PodPhase"),
    hostIP=STRING,
    podIP=STRING,
    podIPs=_list(_struct("v1.PodIP", ip=STRING)),
    conditions=_list(_struct("v1.PodCondition", type=_alias("v1.PodConditionType"), **_CONDITION)),
    startTime=TIME,
)
_NODE_STATUS = _struct(
    "v1.NodeStatus",
    capacity=_map(QUANTITY, "v1.ResourceList"),
    allocatable=_map(QUANTITY, "v1.ResourceList"),
    conditions=_list(
        _struct(
            "v1.NodeCondition",
            type=_alias("v1.NodeConditionType"),
            lastHeartbeatTime=TIME,
            **_CONDITION,
        )
    ),
    addresses=_list(_struct("v1.NodeAddress", type=_alias("v1.NodeAddressType"), address=STRING)),
    nodeInfo=_struct("v1.NodeSystemInfo", kubeletVersion=STRING, kubeProxyVersion=STRING),
)
_SERVICE_SPEC = _struct(
    "v1.ServiceSpec",
    type=_alias("v1.ServiceType"),
    clusterIP=STRING,
    clusterIPs=_list(STRING),
    ipFamilies=_list(_alias("v1.IPFamily")),
    ports=_list(
        _struct(
            "v1.ServicePort",
            name=STRING,
            protocol=_PROTOCOL,
            port=INT32,
            targetPort=INT_OR_STRING,
            nodePort=INT32,
        )
    ),
    selector=_map(STRING),
    externalName=STRING,
)
_SLICE_FIELDS = {
    "addressType": _alias("v1.AddressType"),
    "endpoints": _list(
        _struct(
            "v1.Endpoint",
            addresses=_list(STRING),
            hostname=STRING,
            nodeName=STRING,
            conditions=_struct("v1.EndpointConditions", ready=BOOL, serving=BOOL, terminating=BOOL),
        )
    ),
    "ports": _list(
        _struct("v1.EndpointPort", name=STRING, protocol=_PROTOCOL, port=INT32, appProtocol=STRING)
    ),
}
_LEASE_SPEC = _struct(
    "v1.LeaseSpec",
    holderIdentity=STRING,
    leaseDurationSeconds=INT32,
    acquireTime=MICRO_TIME,
    renewTime=MICRO_TIME,
    leaseTransitions=INT32,
)


def _top(rtype: ResourceType, **fields: Shape) -> Shape:
    return _struct(f"v1.{rtype.kind}", apiVersion=STRING, kind=STRING, metadata=_META, **fields)


SHAPES: dict[ResourceType, Shape] = {
    PODS: _top(PODS, spec=_POD_SPEC, status=_POD_STATUS),
    NODES: _top(
        NODES,
        spec=_struct("v1.NodeSpec", podCIDR=STRING, unschedulable=BOOL, providerID=STRING),
        status=_NODE_STATUS,
    ),
    SERVICES: _top(
        SERVICES,
        spec=_SERVICE_SPEC,
        status=_struct("v1.ServiceStatus", loadBalancer=_struct("v1.LoadBalancerStatus")),
    ),
    ENDPOINTSLICES: _top(ENDPOINTSLICES, **_SLICE_FIELDS),
    LEASES: _top(LEASES, spec=_LEASE_SPEC),
    NAMESPACES: _top(
        NAMESPACES,
        spec=_struct("v1.NamespaceSpec", finalizers=_list(_alias("v1.FinalizerName"))),
        status=_struct("v1.NamespaceStatus", phase=_alias("v1.NamespacePhase")),
    ),
    CONFIGMAPS: _top(
        CONFIGMAPS, data=_map(STRING), binaryData=_map(Shape("[]uint8", "string")), immutable=BOOL
    ),
}


def json_kind(value: Any) -> str:
    """How Go's UnmarshalTypeError names a JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _scalar_error(value: Any, shape: Shape, struct: str, path: str) -> str | None:
    """Go's error for ``value`` decoded into the scalar ``shape``, or None when it decodes."""
    kind = shape.kind
    if kind == "string":
        return None if isinstance(value, str) else _mismatch(value, shape, struct, path)
    if kind == "bool":
        return None if isinstance(value, bool) else _mismatch(value, shape, struct, path)
    if kind in _INT_RANGES or kind == "intstr":
        if kind == "intstr" and isinstance(value, str):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _mismatch(value, shape, struct, path)
        low, high = _INT_RANGES.get(kind, _INT_RANGES["int32"])
        if isinstance(value, float) or not low <= value <= high:
            return _mismatch(value, shape, struct, path, f"number {value}")
        return None
    if kind == "quantity":  # resource.Quantity's own UnmarshalJSON: a string or a number
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok or (isinstance(value, str) and _QUANTITY.match(value.strip())):
            return None
        return f"quantities must match the regular expression '{_QUANTITY_FMT}'"
    if kind == "time":  # metav1.Time's own UnmarshalJSON: a string, then time.Parse
        if not isinstance(value, str):
            return f"json: cannot unmarshal {json_kind(value)} into Go value of type string"
        if _RFC3339.fullmatch(value):
            return None
        return f'parsing time "{value}" as "{_RFC3339_LAYOUT}": cannot parse "{value}" as "2006"'
    return None


def _zero(shape: Shape) -> Any:
    return {} if shape.kind == "struct" else "" if shape.kind == "string" else None


def _check(value: Any, shape: Shape, struct: str, path: str) -> str | None:  # noqa: C901 - one branch per JSON kind
    """The first decode error at or under ``value`` (in document order), or None. Nulls are
    replaced by Go's zero values in place (see the module docstring)."""
    kind = shape.kind
    if kind == "struct":
        if not isinstance(value, dict):
            return _mismatch(value, shape, struct, path)
        name = shape.go.rpartition(".")[2]
        nulls = []
        for key, sub in value.items():
            typed = shape.fields.get(key)
            if typed is None:
                continue
            if sub is None:
                nulls.append(key)
                continue
            error = _check(sub, typed, name, f"{path}.{key}" if path else key)
            if error is not None:
                return error
        for key in nulls:
            del value[key]
        return None
    if kind in ("list", "map"):
        item = shape.item
        assert item is not None
        if not isinstance(value, list if kind == "list" else dict):
            return _mismatch(value, shape, struct, path)
        keys = range(len(value)) if isinstance(value, list) else list(value)
        for k in keys:
            sub = value[k]
            if sub is None:
                zero = _zero(item)
                if zero is not None:
                    value[k] = zero
                continue
            error = _check(sub, item, struct, path)
            if error is not None:
                return error
        return None
    return _scalar_error(value, shape, struct, path)


def _mismatch(value: Any, shape: Shape, struct: str, path: str, described: str = "") -> str:
    """encoding/json UnmarshalTypeError.Error(): the value, the innermost struct, the field's
    path from the top and the Go type."""
    return (
        f"json: cannot unmarshal {described or json_kind(value)} into Go struct field "
        f"{struct}.{path} of type {shape.go}"
    )


def shape_error(rtype: ResourceType, obj: JsonObj) -> str | None:
    """Go's decode error for ``obj`` as a ``rtype`` (the first one, as Go reports it), or None;
    nulls in typed fields are replaced by zero values on the way."""
    return _check(obj, SHAPES[rtype], rtype.kind, "")
