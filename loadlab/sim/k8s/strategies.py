"""What kube-apiserver's registry does to a Pod, Service or EndpointSlice between decoding it and
storing it, so an object looks the same whether a client or one of the sim's controllers wrote it.

Faithful (Kubernetes 1.32): a created pod's status is reset to ``Pending`` with its QoS class and
the pod-level defaults kubectl relies on are filled in (pkg/registry/core/pod/strategy.go
PrepareForCreate, pkg/apis/core/v1/defaults.go); a created Service's status is reset and it gets
a ClusterIP from the service range, or a 422 for one taken or out of range, or a 500 when the
range is full (pkg/registry/core/service/storage/alloc.go, ipallocator); an update cannot set
``metadata.generation`` (apiserver registry/rest/update.go BeforeUpdate) and keeps the stored
ClusterIP; an EndpointSlice starts at generation 1, bumped by an update that changes more than
its metadata, or its labels (pkg/registry/discovery/endpointslice/strategy.go); a pod update may
not change ``spec.nodeName`` (pkg/apis/core/validation ValidatePodUpdate, message and all).

Simplifications, on purpose: the sim holds only ``spec.nodeName`` immutable (kubectl's patches of
containers that a real server refuses still pass, as the sim's own tests use them); the diff
after that message names the field but is not go-cmp's exact text; QoS compares quantities as
written; a new ClusterIP is the lowest free address above the allocator's static band (the real
one picks at random).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from loadlab.sim.k8s.objects import ENDPOINTSLICES, PODS, SERVICES, JsonObj, ResourceType
from loadlab.sim.k8s.validation import (
    ApiError,
    FieldError,
    field_invalid,
    go_quote,
    invalid,
)

SERVICE_CIDR = ipaddress.IPv4Network("192.0.2.0/24")
"""The sim's --service-cluster-ip-range: TEST-NET-1, where the seeded ClusterIPs live."""
# pkg/registry/core/service/ipallocator: the lower band kept for ClusterIPs a client asks for is
# min(max(16, size/16), 256) addresses; dynamic allocation prefers the addresses above it.
_STATIC_BAND = min(max(16, SERVICE_CIDR.num_addresses // 16), 256)
HEADLESS = "None"
# pkg/apis/core/validation/validation.go updatablePodSpecFields, joined with "," as it joins them.
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)
# pkg/apis/core/v1/defaults.go SetDefaults_PodSpec: the pod-level defaults.
_POD_SPEC_DEFAULTS: JsonObj = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
}
_COMPUTE = ("cpu", "memory")


def qos_class(spec: Mapping[str, Any]) -> str:
    """pkg/apis/core/helper/qos ComputePodQOS: BestEffort without any cpu or memory request or
    limit, Guaranteed when every container limits both and requests what it limits (a request
    defaults to its limit), Burstable otherwise."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    anything, guaranteed = False, True
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for name in _COMPUTE:
            limit, request = limits.get(name), requests.get(name, limits.get(name))
            anything = anything or limit is not None or request is not None
            guaranteed = guaranteed and limit is not None and str(request) == str(limit)
    if not anything:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def cluster_ips_in_use(services: Iterable[JsonObj]) -> set[str]:
    """Every ClusterIP ``services`` hold (the allocator's bitmap, read from the objects)."""
    taken: set[str] = set()
    for service in services:
        spec = service.get("spec") or {}
        taken.update(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip)
    taken.discard(HEADLESS)
    return taken


def allocate_cluster_ip(taken: Collection[str]) -> str:
    """The next free ClusterIP: above the static band first, then inside it; 500 when full."""
    hosts = list(SERVICE_CIDR.hosts())
    for ip in (*hosts[_STATIC_BAND:], *hosts[:_STATIC_BAND]):
        if str(ip) not in taken:
            return str(ip)
    raise ApiError(
        500,
        "InternalError",
        "Internal error occurred: failed to allocate a serviceIP: range is full",
    )


def prepare_create(rtype: ResourceType, obj: JsonObj, taken_ips: Collection[str] = ()) -> JsonObj:
    """``obj`` as the registry stores it on create; ``taken_ips`` are the ClusterIPs in use
    (Services only). Raises ``ApiError`` for a ClusterIP the allocator refuses."""
    if rtype is PODS:
        spec = {**_POD_SPEC_DEFAULTS, **(obj.get("spec") or {})}
        return {**obj, "spec": spec, "status": {"phase": "Pending", "qosClass": qos_class(spec)}}
    if rtype is SERVICES:
        return _service_for_create(obj, taken_ips)
    if rtype is ENDPOINTSLICES:
        return {**obj, "metadata": {**(obj.get("metadata") or {}), "generation": 1}}
    return obj


def _service_for_create(obj: JsonObj, taken: Collection[str]) -> JsonObj:
    spec = dict(obj.get("spec") or {})
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec["ports"] = [
        {"protocol": "TCP", **port, "targetPort": port.get("targetPort") or port.get("port")}
        for port in spec.get("ports") or []
    ]
    if kind != "ExternalName":
        asked = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), "")
        name = (obj.get("metadata") or {}).get("name") or ""
        ip = allocate_cluster_ip(taken) if not asked else _claim(name, asked, taken)
        spec.update(clusterIP=ip, clusterIPs=[ip])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    return {**obj, "spec": spec, "status": {"loadBalancer": {}}}


def _claim(name: str, asked: str, taken: Collection[str]) -> str:
    """A ClusterIP the client chose: 422 when it is no IPv4 address, outside the range or taken
    (ValidateService, then alloc.go allocIPs with ipallocator's ErrNotInRange and ErrAllocated)."""
    if asked == HEADLESS:
        return asked
    try:
        ip = ipaddress.IPv4Address(asked)
    except ValueError:
        detail = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        error = field_invalid("spec.clusterIPs[0]", asked, detail)
        raise invalid("", "Service", name, [error]) from None
    if ip not in SERVICE_CIDR or ip in (SERVICE_CIDR.network_address, SERVICE_CIDR[-1]):
        why = (
            f"the provided IP ({asked}) is not in the valid range. The range of valid IPs is "
            f"{SERVICE_CIDR}"
        )
    elif asked in taken:
        why = "provided IP is already allocated"
    else:
        return asked
    body = f'Invalid value: []string{{"{asked}"}}: failed to allocate IP {asked}: {why}'
    raise invalid("", "Service", name, [FieldError("FieldValueInvalid", "spec.clusterIPs", body)])


def prepare_update(
    rtype: ResourceType, new: JsonObj, old: JsonObj, *, subresource: str | None = None
) -> JsonObj:
    """``new`` as the registry stores it over ``old``: the stored generation (bumped for an
    EndpointSlice whose content changed), a Service's ClusterIP kept, a pod's node unchanged
    (422 otherwise). A ``new`` whose resourceVersion is stale is returned as it is: the store
    answers 409 Conflict, which the registry checks before it validates."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    stale = new_meta.get("resourceVersion")
    if stale and stale != old_meta.get("resourceVersion"):
        return new
    meta = {k: v for k, v in new_meta.items() if k != "generation"}
    if "generation" in old_meta:
        meta["generation"] = old_meta["generation"]
    new = {**new, "metadata": meta}
    if subresource == "status":
        return new
    if rtype is PODS:
        _check_node_name(new, old)
    elif rtype is SERVICES:
        new = _keep_cluster_ip(new, old)
    elif rtype is ENDPOINTSLICES and _slice_changed(new, old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return new


def _check_node_name(new: JsonObj, old: JsonObj) -> None:
    was = (old.get("spec") or {}).get("nodeName") or ""
    now = (new.get("spec") or {}).get("nodeName") or ""
    if was == now:
        return
    # go-cmp's diff of the two PodSpecs follows the message; the sim shows only the field.
    diff = (
        f"  core.PodSpec{{\n  \t... // 11 identical fields\n- \tNodeName: {go_quote(was)},\n"
        f"+ \tNodeName: {go_quote(now)},\n  \t... // 22 identical fields\n  }}\n"
    )
    body = (
        "Forbidden: pod updates may not change fields other than "
        + ",".join(UPDATABLE_POD_SPEC_FIELDS)
        + "\n"
        + diff
    )
    name = (new.get("metadata") or {}).get("name") or ""
    raise invalid("", "Pod", name, [FieldError("FieldValueForbidden", "spec", body)])


def _keep_cluster_ip(new: JsonObj, old: JsonObj) -> JsonObj:
    """service/storage/storage.go patchAllocatedValues: an update that leaves the ClusterIP out
    keeps the stored one; ValidateServiceUpdate: one that changes it is 422."""
    old_spec, spec = old.get("spec") or {}, dict(new.get("spec") or {})
    stored = old_spec.get("clusterIP")
    if not stored:
        return new
    asked = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), "")
    if asked and asked != stored:
        name = (new.get("metadata") or {}).get("name") or ""
        error = field_invalid("spec.clusterIPs[0]", asked, "may not change once set")
        raise invalid("", "Service", name, [error])
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if key in old_spec:
            spec[key] = old_spec[key]
    return {**new, "spec": spec}


def _slice_changed(new: JsonObj, old: JsonObj) -> bool:
    def content(obj: JsonObj) -> JsonObj:
        return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}

    labels = [(o.get("metadata") or {}).get("labels") or {} for o in (new, old)]
    return content(new) != content(old) or labels[0] != labels[1]
