"""Kubernetes JSON shapes the sim serves: resource types, object builders, and the seeded cluster.

Objects are plain dicts in exactly the shape the real API server sends, so kubectl and
kubernetes-asyncio decode them. Stored objects are never mutated in place (every write builds a new
dict), which lets seeded objects share their unchanging parts (container lists, capacity maps) to
keep a 5,000-node x 30-pod cluster small in memory.

Every address is TEST-NET (192.0.2.0/24 for ClusterIPs, 198.51.100.0/24 for nodes, pods and
endpoints) or loopback, so nothing the sim hands out can route anywhere real.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

JsonObj = dict[str, Any]

KUBE_VERSION = "v1.32.0"  # docs/control-plane-model.md: 1.32 is modelled
LEASE_DURATION_S = 40  # docs/control-plane-model.md: kubelet lease duration 40 s
NODE_LEASE_NAMESPACE = "kube-node-lease"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", NODE_LEASE_NAMESPACE)
KUBERNETES_SERVICE_IP = "192.0.2.1"
KUBE_DNS_SERVICE_IP = "192.0.2.10"
# The label tying an EndpointSlice to its Service (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# The recommended label a seeded Service selects, besides ``app``, to pick its serving pods.
COMPONENT_LABEL = "app.kubernetes.io/component"
SERVING_COMPONENT = "server"
COREDNS_SERVICE_ACCOUNT = "system:serviceaccount:kube-system:coredns"
"""Whom the cluster DNS watches the API as (also its token when the sim takes tokens as names)."""
GROUP_PACKAGES = {"": "core", "coordination.k8s.io": "coord", "discovery.k8s.io": "discovery"}
"""The short package name ``schema_table`` and ``proto_tables`` write before a type of each served
API group (``core.Pod``, ``coord.Lease``): k8s.io/api's core/v1, coordination/v1, discovery/v1."""


@dataclass(frozen=True)
class ResourceType:
    """One served resource (what discovery lists and the router resolves)."""

    group: str
    """API group; "" is the core (legacy /api) group."""
    version: str
    plural: str
    """The path segment and resource name: ``pods``."""
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    """Whether a ``/status`` subresource exists (PUT on the main resource then keeps status)."""
    indexed_fields: tuple[str, ...] = ()
    """Field paths with an index (the watch cache indexes pods by spec.nodeName)."""

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        """``pods``, ``leases.coordination.k8s.io``: how kube-apiserver names a resource in its
        storage metrics and Forbidden messages (schema.GroupResource.String())."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), has_status=True)
NODES = ResourceType("", "v1", "nodes", "Node", False, ("no",), has_status=True)
PODS = ResourceType(
    "", "v1", "pods", "Pod", True, ("po",), has_status=True, indexed_fields=("spec.nodeName",)
)
SERVICES = ResourceType("", "v1", "services", "Service", True, ("svc",), has_status=True)
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",))
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True)
ENDPOINTSLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    CONFIGMAPS,
    LEASES,
    ENDPOINTSLICES,
)


def now_timestamp() -> str:
    """RFC 3339 UTC, second precision: the format of metadata.creationTimestamp."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro_timestamp() -> str:
    """RFC 3339 UTC with microseconds: the MicroTime format of a lease's renewTime."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _meta(name: str, namespace: str | None, labels: dict[str, str] | None) -> JsonObj:
    meta: JsonObj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def namespace_obj(name: str) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(name, None, {"kubernetes.io/metadata.name": name}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node_ip(index: int) -> str:
    """Nodes live in 198.51.100.0/24; past 254 nodes the addresses repeat (TEST-NET only)."""
    return f"198.51.100.{index % 254 + 1}"


def pod_ip(index: int) -> str:
    """Pods share 198.51.100.0/24 with nodes; repeats are fine for a simulation."""
    return f"198.51.100.{index % 254 + 1}"


def cluster_ip(index: int) -> str:
    """Service ClusterIPs in 192.0.2.20-.249; .1 and .10 are kubernetes and kube-dns."""
    return f"192.0.2.{20 + index % 230}"


_NODE_CAPACITY: JsonObj = {"cpu": "8", "memory": "32Gi", "pods": "110"}  # the supported max


def _node_info(index: int) -> JsonObj:
    ident = f"{index:08x}-0000-4000-8000-000000000000"
    return {
        "architecture": "amd64",
        "bootID": ident,
        "containerRuntimeVersion": "containerd://1.7.0",
        "kernelVersion": "6.1.0",
        "kubeProxyVersion": KUBE_VERSION,
        "kubeletVersion": KUBE_VERSION,
        "machineID": ident.replace("-", ""),
        "operatingSystem": "linux",
        "osImage": "Debian GNU/Linux 12 (bookworm)",
        "systemUUID": ident,
    }


def node_conditions(ready: bool, heartbeat: str) -> list[JsonObj]:
    return [
        {
            "type": "Ready",
            "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting",
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": heartbeat,
        }
    ]


def node_obj(index: int, created: str) -> JsonObj:
    name = f"node-{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(
            name,
            None,
            {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        ),
        "spec": {},
        "status": {
            "capacity": _NODE_CAPACITY,
            "allocatable": _NODE_CAPACITY,
            "conditions": node_conditions(True, created),
            "addresses": [
                {"type": "InternalIP", "address": node_ip(index)},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": _node_info(index),
        },
    }


def lease_obj(node_name: str, renew_time: str) -> JsonObj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": _meta(node_name, NODE_LEASE_NAMESPACE, None),
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": renew_time,
        },
    }


_POD_CONTAINERS: list[JsonObj] = [
    {"name": "app", "image": "registry.example/app:1.0", "imagePullPolicy": "IfNotPresent"}
]


def pod_obj(
    name: str,
    namespace: str,
    node_name: str,
    ip: str,
    host_ip: str,
    app: str,
    hostname: str | None = None,
) -> JsonObj:
    """A bound, Running, Ready pod labelled ``app``. A ``hostname`` makes it one of the serving
    pods of the Service ``app``: the component label its selector asks for, and the stable DNS
    name a StatefulSet's pod has (spec.hostname, and spec.subdomain naming the Service)."""
    spec: JsonObj = {
        "nodeName": node_name,
        "containers": _POD_CONTAINERS,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
    }
    labels = {"app": app}
    if hostname is not None:
        spec["hostname"] = hostname
        spec["subdomain"] = app
        labels[COMPONENT_LABEL] = SERVING_COMPONENT
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, labels),
        "spec": spec,
        "status": {
            "phase": "Running",
            "hostIP": host_ip,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def service_obj(
    name: str, namespace: str, ip: str | None, ports: list[JsonObj], selector: dict[str, str]
) -> JsonObj:
    """A ClusterIP service; ``ip=None`` makes it headless (clusterIP "None")."""
    spec: JsonObj = {
        "type": "ClusterIP",
        "clusterIP": ip if ip is not None else "None",
        "clusterIPs": [ip if ip is not None else "None"],
        "ipFamilies": ["IPv4"],
        "ports": ports,
        "sessionAffinity": "None",
    }
    if selector:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, {"app": name} if selector else None),
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def endpointslice_obj(
    service: str, namespace: str, addresses: list[tuple[str, str]], ports: list[JsonObj]
) -> JsonObj:
    """One IPv4 slice for ``service``; ``addresses`` are (ip, hostname) pairs, all ready.
    ``ports`` may be the Service's: discovery/v1 EndpointPort has no ``targetPort``, so it is
    left out (the slice's port is the endpoint's, the Service's target)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            f"{service}-slice",
            namespace,
            {
                SERVICE_NAME_LABEL: service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        ),
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "hostname": host, "conditions": {"ready": True}}
            for ip, host in addresses
        ],
        "ports": [{k: v for k, v in port.items() if k != "targetPort"} for port in ports],
    }


def configmap_obj(name: str, namespace: str, data: dict[str, str]) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, None),
        "data": data,
    }


def _port(name: str, port: int, protocol: str = "TCP", target: int | None = None) -> JsonObj:
    return {"name": name, "port": port, "protocol": protocol, "targetPort": target or port}


def workload_namespaces(count: int) -> list[str]:
    """Where seeded pods and services live: ``default`` plus ``app-0`` .. ``app-{count-2}``."""
    return ["default", *(f"app-{i}" for i in range(max(count, 1) - 1))]


def serving_slot(pod_index: int, pods: int, services: int, per_service: int) -> tuple[int, int]:
    """Which seeded Service pod ``pod_index`` (of ``pods``) serves, and its rank there, or
    ``(-1, -1)`` for a pod that serves none.

    The last ``services x per_service`` pods (all of them when there are fewer) serve, dealt
    ``per_service`` at a time: svc-0 gets the first ``per_service`` of them, so with no more
    pods than that, svc-i's endpoints are ``pod_ip(i x per_service + j)``."""
    first = max(pods - services * per_service, 0)
    if pod_index < first or not per_service:
        return -1, -1
    return divmod(pod_index - first, per_service)


def seed_objects(
    *,
    nodes: int,
    pods_per_node: int,
    namespaces: int,
    services: int,
    endpoints_per_service: int,
    headless_services: int,
    api_port: int,
) -> Iterator[tuple[ResourceType, JsonObj]]:
    """Every object of a fresh cluster, in creation order (namespaces first).

    ``svc-<i>`` selects ``app=svc-<i>,app.kubernetes.io/component=server``: its serving pods
    (``serving_slot``), with hostnames ``svc-<i>-<j>``. The other pods, ``app=svc-<k>``
    round-robin like an application's batch pods, serve nothing, so slices stay as small as
    ``endpoints_per_service`` at any size. Pods live in their Service's namespace. Those slices
    come from the EndpointSlice controller's first sync (``loadlab.sim.controllers``), not from
    here; ``kubernetes`` and ``kube-dns`` (no pods behind them) keep seeded loopback slices."""
    created = now_timestamp()
    renew = now_micro_timestamp()
    spaces = workload_namespaces(namespaces)
    for name in dict.fromkeys([*SYSTEM_NAMESPACES, *spaces]):
        yield NAMESPACES, namespace_obj(name)
    yield (
        SERVICES,
        service_obj("kubernetes", "default", KUBERNETES_SERVICE_IP, [_port("https", 443)], {}),
    )
    yield (
        ENDPOINTSLICES,
        endpointslice_obj("kubernetes", "default", [("127.0.0.1", "")], [_port("https", api_port)]),
    )
    dns_ports = [_port("dns", 53, "UDP"), _port("dns-tcp", 53), _port("metrics", 9153)]
    yield SERVICES, service_obj("kube-dns", "kube-system", KUBE_DNS_SERVICE_IP, dns_ports, {})
    yield (
        ENDPOINTSLICES,
        endpointslice_obj("kube-dns", "kube-system", [("127.0.0.1", "coredns-0")], dns_ports),
    )
    yield CONFIGMAPS, configmap_obj("kube-root-ca.crt", "default", {"ca.crt": "simulated"})
    for i in range(services):
        name = f"svc-{i}"
        ip = None if i < headless_services else cluster_ip(i)
        ports = [_port("http", 80, target=8080)]
        selector = {"app": name, COMPONENT_LABEL: SERVING_COMPONENT}
        yield SERVICES, service_obj(name, spaces[i % len(spaces)], ip, ports, selector)
    pods = nodes * pods_per_node
    pod_index = 0
    for n in range(nodes):
        node = node_obj(n, created)
        node_name = node["metadata"]["name"]
        yield NODES, node
        yield LEASES, lease_obj(node_name, renew)
        host_ip = node_ip(n)
        for p in range(pods_per_node):
            name = f"{node_name}-pod-{p}"
            ip = pod_ip(pod_index)
            svc, rank = serving_slot(pod_index, pods, services, endpoints_per_service)
            if svc >= 0:
                ns, app = spaces[svc % len(spaces)], f"svc-{svc}"
                yield PODS, pod_obj(name, ns, node_name, ip, host_ip, app, f"{app}-{rank}")
            elif services:
                svc = pod_index % services
                ns, app = spaces[svc % len(spaces)], f"svc-{svc}"
                yield PODS, pod_obj(name, ns, node_name, ip, host_ip, app)
            else:
                ns = spaces[pod_index % len(spaces)]
                yield PODS, pod_obj(name, ns, node_name, ip, host_ip, "app")
            pod_index += 1
