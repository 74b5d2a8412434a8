"""Server-side printing: the meta.k8s.io/v1 Table objects ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns the
server defines; each resource gets the columns the real API server gives it (NAME, AGE...).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
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

Cells = list[Any]
_Column = tuple[str, str, int, str]  # name, type, priority, description

_NAME: _Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: _Column = ("Age", "string", 0, "CreationTimestamp is the time the object was created.")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """The apimachinery ``duration.HumanDuration`` format kubectl shows in the AGE column."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    h = m // 60
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    d = h // 24
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def _age(obj: JsonObj, now: datetime.datetime) -> str:
    stamp = obj["metadata"].get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return human_duration((now - created).total_seconds())


def _node_cells(obj: JsonObj) -> Cells:
    conditions = obj.get("status", {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    info = obj.get("status", {}).get("nodeInfo", {})
    return [status, "<none>", info.get("kubeletVersion", "")]


def _pod_cells(obj: JsonObj) -> Cells:
    containers = obj.get("spec", {}).get("containers") or []
    status = obj.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    n = len(containers)
    return [
        f"{n if ready else 0}/{n}",
        status.get("phase", "Unknown"),
        "0",
        status.get("podIP", "<none>"),
        obj.get("spec", {}).get("nodeName", "<none>"),
    ]


def _service_cells(obj: JsonObj) -> Cells:
    spec = obj.get("spec", {})
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", ""), "<none>", ports or "<none>"]


def _slice_cells(obj: JsonObj) -> Cells:
    ports = ",".join(str(p.get("port")) for p in obj.get("ports") or [])
    addrs = [a for e in obj.get("endpoints") or [] for a in e.get("addresses", [])]
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [obj.get("addressType", ""), ports or "<unset>", shown or "<unset>"]


def _lease_cells(obj: JsonObj) -> Cells:
    return [obj.get("spec", {}).get("holderIdentity", "")]


def _namespace_cells(obj: JsonObj) -> Cells:
    return [obj.get("status", {}).get("phase", "Active")]


def _configmap_cells(obj: JsonObj) -> Cells:
    return [len(obj.get("data") or {})]


_LAYOUTS: dict[ResourceType, tuple[tuple[_Column, ...], Callable[[JsonObj], Cells]]] = {
    NODES: (
        (("Status", "string", 0, "Node readiness."), ("Roles", "string", 0, "Node roles.")),
        _node_cells,
    ),
    PODS: (
        (
            ("Ready", "string", 0, "Ready containers / containers."),
            ("Status", "string", 0, "The pod phase."),
            ("Restarts", "string", 0, "Container restarts."),
            ("IP", "string", 1, "The pod IP."),
            ("Node", "string", 1, "The node the pod runs on."),
        ),
        _pod_cells,
    ),
    SERVICES: (
        (
            ("Type", "string", 0, "Service type."),
            ("Cluster-IP", "string", 0, "The cluster IP."),
            ("External-IP", "string", 0, "External IPs."),
            ("Port(s)", "string", 0, "Service ports."),
        ),
        _service_cells,
    ),
    ENDPOINTSLICES: (
        (
            ("AddressType", "string", 0, "Address type."),
            ("Ports", "string", 0, "Ports."),
            ("Endpoints", "string", 0, "Endpoint addresses."),
        ),
        _slice_cells,
    ),
    LEASES: ((("Holder", "string", 0, "Lease holder."),), _lease_cells),
    NAMESPACES: ((("Status", "string", 0, "Namespace phase."),), _namespace_cells),
    CONFIGMAPS: ((("Data", "integer", 0, "Number of data keys."),), _configmap_cells),
}


def _columns(rtype: ResourceType) -> list[_Column]:
    extra, _ = _LAYOUTS[rtype]
    cols = [_NAME, *extra, _AGE]
    if rtype is NODES:  # kubectl shows VERSION after AGE for nodes
        cols.append(("Version", "string", 0, "Kubelet version."))
    return cols


def _cells(rtype: ResourceType, obj: JsonObj, now: datetime.datetime) -> Cells:
    _, fn = _LAYOUTS[rtype]
    cells = fn(obj)
    if rtype is NODES:
        status, roles, version = cells
        return [obj["metadata"]["name"], status, roles, _age(obj, now), version]
    if rtype is PODS:  # AGE sits before the wide (priority 1) columns
        return [obj["metadata"]["name"], *cells[:3], _age(obj, now), *cells[3:]]
    return [obj["metadata"]["name"], *cells, _age(obj, now)]


def _row_object(obj: JsonObj, include: str) -> JsonObj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    rtype: ResourceType,
    items: Iterable[JsonObj],
    *,
    resource_version: str,
    continue_token: str | None = None,
    include_object: str = "Metadata",
    headers: bool = True,
) -> JsonObj:
    """A Table for ``items``; ``include_object`` is the request's includeObject (Metadata)."""
    if rtype is PODS:
        # ordered as the cells are: Name, Ready, Status, Restarts, Age, IP, Node
        extra = _LAYOUTS[PODS][0]
        cols = [_NAME, *extra[:3], _AGE, *extra[3:]]
    else:
        cols = _columns(rtype)
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for obj in items:
        row: JsonObj = {"cells": _cells(rtype, obj, now)}
        row_obj = _row_object(obj, include_object)
        if row_obj is not None:
            row["object"] = row_obj
        rows.append(row)
    meta: JsonObj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    result: JsonObj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    if headers:
        result["columnDefinitions"] = [
            {
                "name": n,
                "type": t,
                "format": "name" if n == "Name" else "",
                "description": d,
                "priority": p,
            }
            for n, t, p, d in cols
        ]
    result["rows"] = rows
    return result
