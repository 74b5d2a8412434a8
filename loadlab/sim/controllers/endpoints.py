"""What a Service's EndpointSlices should hold: pure functions over a Service, its pods and the
slices it has (no store, no clock).

Faithful to the EndpointSlice controller of Kubernetes 1.32 (staging/src/k8s.io/endpointslice
utils.go podToEndpoint, getEndpointPorts, FindPort, setEndpointSliceLabels; util
ShouldPodBeInEndpoints, ShouldSetHostname; reconciler.go): a pod counts once it has an IP and
is neither terminal nor being deleted; ``ready`` follows its Ready condition (or the Service's
``publishNotReadyAddresses``); ports come from the Service, a named targetPort looked up in the
pod's containers; at most 100 endpoints a slice (--max-endpoints-per-slice); endpoints stay in
the slice that holds them, new ones fill the fullest slice with room, then new slices; a Service
without endpoints keeps one empty placeholder slice; slices carry the Service's labels, the
``kubernetes.io/service-name`` and ``managed-by`` labels, and an owner reference to it.

Simplifications, on purpose: IPv4 only (the sim hands out no IPv6); no topology hints or zones;
no ``endpoints.kubernetes.io/last-change-trigger-time`` annotation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL, JsonObj
from loadlab.sim.k8s.strategies import HEADLESS

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100
"""kube-controller-manager --max-endpoints-per-slice, default 100."""
_RESERVED_LABELS = frozenset({SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL})
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

Key = tuple[str, str]
"""(namespace, name)."""
# Every endpoint with the same conditions shares one dict: stored objects are never changed in
# place, and 150,000 endpoints hold only eight distinct ones.
_CONDITIONS = {
    (ready, serving, terminating): {"ready": ready, "serving": serving, "terminating": terminating}
    for ready in (False, True)
    for serving in (False, True)
    for terminating in (False, True)
}


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def selector_of(service: Mapping[str, Any]) -> dict[str, str]:
    """The Service's selector; empty means the controller leaves the Service's slices alone."""
    return dict((service.get("spec") or {}).get("selector") or {})


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Whether a Pod's or a Node's ``Ready`` condition is ``True`` (conditions are unique by
    type: their merge key)."""
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def in_endpoints(pod: Mapping[str, Any]) -> bool:
    """util.ShouldPodBeInEndpoints: an IP, not Succeeded or Failed, not being deleted."""
    status = pod.get("status") or {}
    if status.get("phase") in _TERMINAL_PHASES:
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return not (pod.get("metadata") or {}).get("deletionTimestamp")


def pod_addresses(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return [ip for ip in ips if ip and ":" not in ip]


def endpoint_of(pod: Mapping[str, Any], service: Mapping[str, Any]) -> JsonObj:
    """podToEndpoint for an IPv4 slice."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    serving = is_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    ready = publish or (serving and not terminating)
    endpoint: JsonObj = {
        "addresses": pod_addresses(pod),
        "conditions": _CONDITIONS[ready, serving, terminating],
    }
    svc_meta = service.get("metadata") or {}
    hostname = spec.get("hostname")
    if (
        hostname
        and spec.get("subdomain") == svc_meta.get("name")
        and meta.get("namespace") == svc_meta.get("namespace")
    ):
        endpoint["hostname"] = hostname
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    endpoint["targetRef"] = {
        "kind": "Pod",
        "namespace": meta.get("namespace") or "",
        "name": meta.get("name") or "",
        "uid": meta.get("uid") or "",
    }
    return endpoint


def ports_of(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[JsonObj]:
    """getEndpointPorts: one port per Service port whose target the pod has."""
    ports: list[JsonObj] = []
    for svc_port in (service.get("spec") or {}).get("ports") or []:
        number = _find_port(pod, svc_port)
        if number is None:
            continue
        port: JsonObj = {
            "name": svc_port.get("name") or "",
            "port": number,
            "protocol": svc_port.get("protocol") or "TCP",
        }
        if svc_port.get("appProtocol"):
            port["appProtocol"] = svc_port["appProtocol"]
        ports.append(port)
    return ports


def _find_port(pod: Mapping[str, Any], svc_port: Mapping[str, Any]) -> int | None:
    """FindPort: a numeric targetPort as it is, a named one from the pod's container ports."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = svc_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return number if isinstance(number, int) else None
    return None


def named_target_ports(service: Mapping[str, Any]) -> bool:
    """Whether the ports depend on the pod (a named targetPort), or are the same for every pod."""
    ports = (service.get("spec") or {}).get("ports") or []
    return any(isinstance(p.get("targetPort"), str) for p in ports)


def slice_labels(service: Mapping[str, Any]) -> dict[str, str]:
    """setEndpointSliceLabels: the Service's labels but the reserved ones, plus those."""
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _RESERVED_LABELS}
    # Headless for the slice's label also when no clusterIP was given (not only "None"), as
    # the EndpointSlice controller labels it.
    if spec.get("clusterIP") in (HEADLESS, "", None):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = meta.get("name") or ""
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def owner_reference(service: Mapping[str, Any]) -> JsonObj:
    meta = service.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": meta.get("name") or "",
        "uid": meta.get("uid") or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def managed_by_controller(endpoint_slice: Mapping[str, Any]) -> bool:
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME and SERVICE_NAME_LABEL in labels


@dataclass
class SlicePlan:
    """The writes that bring a Service's slices to what its pods say."""

    create: list[JsonObj] = field(default_factory=list)
    update: list[JsonObj] = field(default_factory=list)
    delete: list[JsonObj] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _ports_key(ports: list[JsonObj]) -> str:
    return json.dumps(sorted(ports, key=lambda p: (p.get("name") or "", p.get("port") or 0)))


def _target(endpoint: Mapping[str, Any]) -> str:
    return str((endpoint.get("targetRef") or {}).get("name") or "")


@dataclass
class _Slot:
    obj: JsonObj | None
    ports: list[JsonObj]
    endpoints: list[JsonObj]


def plan_slices(
    service: Mapping[str, Any],
    desired: Iterable[tuple[list[JsonObj], JsonObj]],
    existing: Iterable[JsonObj],
) -> SlicePlan:
    """reconciler.go reconcileByAddressType, for IPv4: ``desired`` holds (ports, endpoint) per
    pod; ``existing`` the slices the controller manages for ``service``."""
    groups: dict[str, tuple[list[JsonObj], dict[str, JsonObj]]] = {}
    keys: dict[int, str] = {}  # most pods share one ports list: encode it once
    for ports, endpoint in desired:
        key = keys.get(id(ports))
        if key is None:
            key = keys[id(ports)] = _ports_key(ports)
        groups.setdefault(key, (ports, {}))[1][_target(endpoint)] = endpoint
    slots: list[_Slot] = []
    for obj in sorted(existing, key=lambda s: str(s["metadata"]["name"])):
        ports = obj.get("ports") or []
        wanted = groups.get(_ports_key(ports), ([], {}))[1]
        kept = [wanted.pop(_target(e)) for e in obj.get("endpoints") or [] if _target(e) in wanted]
        slots.append(_Slot(obj, ports, kept))
    for key, (ports, left) in sorted(groups.items()):
        pending = [left[name] for name in sorted(left)]
        same = [s for s in slots if _ports_key(s.ports) == key]
        for slot in sorted(same, key=lambda s: -len(s.endpoints)):
            room = MAX_ENDPOINTS_PER_SLICE - len(slot.endpoints)
            if room > 0 and pending and slot.endpoints:
                slot.endpoints, pending = slot.endpoints + pending[:room], pending[room:]
        for slot in same:  # then the emptied ones, before making new slices
            room = MAX_ENDPOINTS_PER_SLICE - len(slot.endpoints)
            if room > 0 and pending:
                slot.endpoints, pending = slot.endpoints + pending[:room], pending[room:]
        while pending:
            slots.append(_Slot(None, ports, pending[:MAX_ENDPOINTS_PER_SLICE]))
            pending = pending[MAX_ENDPOINTS_PER_SLICE:]
    if any(s.endpoints for s in slots):
        return _writes(service, slots)
    # No endpoints: one empty placeholder slice stays (reconciler.go makes a new one; the sim
    # empties the first it has, one write instead of two).
    first = slots[0].obj if slots else None
    plan = _writes(service, [_Slot(first, [], [])], placeholder=True)
    plan.delete.extend(s.obj for s in slots[1:] if s.obj is not None)
    return plan


def _writes(service: Mapping[str, Any], slots: list[_Slot], placeholder: bool = False) -> SlicePlan:
    plan = SlicePlan()
    labels, owner = slice_labels(service), [owner_reference(service)]
    for slot in slots:
        if slot.obj is None:
            plan.create.append(_new_slice(service, slot, labels, owner))
        elif not slot.endpoints and not placeholder:
            plan.delete.append(slot.obj)
        else:
            meta = slot.obj["metadata"]
            if (
                slot.endpoints != (slot.obj.get("endpoints") or [])
                or slot.ports != (slot.obj.get("ports") or [])
                or meta.get("labels") != labels
                or meta.get("ownerReferences") != owner
            ):
                new_meta = {**meta, "labels": labels, "ownerReferences": owner}
                plan.update.append(
                    {
                        **slot.obj,
                        "metadata": new_meta,
                        "endpoints": slot.endpoints,
                        "ports": slot.ports,
                    }
                )
    return plan


def _new_slice(
    service: Mapping[str, Any], slot: _Slot, labels: dict[str, str], owner: list[JsonObj]
) -> JsonObj:
    meta = service.get("metadata") or {}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            # getEndpointSlicePrefix: "<service>-", the store adds five characters.
            "generateName": f"{meta.get('name')}-",
            "namespace": meta.get("namespace") or "",
            "labels": labels,
            "ownerReferences": owner,
        },
        "addressType": "IPv4",
        "endpoints": slot.endpoints,
        "ports": slot.ports,
    }
