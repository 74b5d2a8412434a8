"""A created pod's life up to Ready: kube-scheduler binds it to a node, then that node's kubelet
starts it, ``pod_start_s`` later, so ``kubectl wait --for=condition=Ready`` works.

Faithful: the scheduler takes pods without ``spec.nodeName`` whose ``schedulerName`` is the
default, skips nodes that are unschedulable, not Ready or tainted NoSchedule/NoExecute without a
matching toleration, and prefers the least loaded node (ties to the first registered); binding
sets ``spec.nodeName`` and a ``PodScheduled=True`` condition (pkg/registry/core/pod/storage
BindingREST). The kubelet then reports phase ``Running`` with the conditions a 1.32 kubelet
writes (PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled), the node's
address as hostIP, a podIP, startTime and a running status per container (completed per init
container). A pod created with ``spec.nodeName`` skips the scheduler; one bound to a node the
sim does not have stays Pending, as no kubelet claims it.

Simplifications, on purpose: binding is two writes (spec, then status: the sim's store writes a
status only through the status subresource); no resource fit, affinity or spreading; the
Unschedulable message is shorter than the scheduler's; containers never fail, restart or end;
pod IPs come from the seeded pods' TEST-NET range and repeat past 254, as the seeded ones do.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import deque

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.controllers.endpoints import Key, is_ready, key_of
from loadlab.sim.k8s.objects import NODES, PODS, JsonObj, ResourceType, now_timestamp, pod_ip
from loadlab.sim.storage.store import Store, StoreError

DEFAULT_SCHEDULER = "default-scheduler"
# Not from a reference: pods one reconcile pass tries before the loop's other tasks get a turn
# (kube-scheduler binds some hundreds of pods a second; each try scans every node).
SCHEDULE_BATCH = 100
_TERMINAL = frozenset({"Succeeded", "Failed"})
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
# The conditions a 1.32 kubelet reports for a running pod, in its order (PodReadyToStartContainers
# is beta and on by default since 1.29).
_RUNNING_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def _condition(kind: str, status: str, at: str, reason: str = "", message: str = "") -> JsonObj:
    condition: JsonObj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": at,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _with_condition(status: JsonObj, condition: JsonObj) -> JsonObj:
    kept = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
    return {**status, "conditions": [*kept, condition]}


def tolerates(tolerations: list[JsonObj], taint: JsonObj) -> bool:
    """v1 helper ToleratesTaint: a toleration with the taint's effect (or none) and its key
    (Exists, or Equal with its value; an empty key with Exists tolerates every taint)."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        if operator == "Exists" and (not key or key == taint.get("key")):
            return True
        if key == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def fits(pod: JsonObj, node: JsonObj) -> bool:
    """Whether the scheduler may put ``pod`` on ``node``: schedulable, Ready, taints tolerated."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    if not is_ready(node):
        return False
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return all(
        tolerates(tolerations, t)
        for t in spec.get("taints") or []
        if t.get("effect") in _BLOCKING_EFFECTS
    )


def _needs_node(pod: JsonObj) -> bool:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
        and status.get("phase") not in _TERMINAL
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def _needs_start(pod: JsonObj) -> bool:
    status = pod.get("status") or {}
    return bool((pod.get("spec") or {}).get("nodeName")) and (
        status.get("phase") in (None, "Pending") and not status.get("podIP")
    )


def _node_address(node: JsonObj) -> str:
    addresses = (node.get("status") or {}).get("addresses") or []
    return next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "")


def running_status(pod: JsonObj, node: JsonObj, ip: str, now: str) -> JsonObj:
    """The status the kubelet reports once the pod's containers run."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    old = pod.get("status") or {}
    scheduled = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"),
        _condition("PodScheduled", "True", now),
    )
    host = _node_address(node)

    def container_id(name: str) -> str:
        digest = hashlib.sha256(f"{meta.get('uid')}/{name}".encode()).hexdigest()
        return f"containerd://{digest}"

    def base(container: JsonObj) -> JsonObj:
        image = str(container.get("image") or "")
        return {
            "name": container.get("name") or "",
            "image": image,
            "imageID": f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "containerID": container_id(str(container.get("name"))),
            "lastState": {},
            "ready": True,
            "restartCount": 0,
        }

    status: JsonObj = {
        **old,
        "phase": "Running",
        "conditions": [*(_condition(k, "True", now) for k in _RUNNING_CONDITIONS), scheduled],
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": [
            {**base(c), "started": True, "state": {"running": {"startedAt": now}}}
            for c in spec.get("containers") or []
        ],
    }
    done = {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            {**base(c), "started": False, "state": {"terminated": done}}
            for c in spec["initContainers"]
        ]
    return status


class PodLifecycle:
    """The scheduler and the kubelets' pod start-up, over the store."""

    def __init__(self, store: Store, clock: Clock, *, start_s: float, first_ip: int) -> None:
        self._store = store
        self._clock = clock
        self._start_ns = int(start_s * NS_PER_S)
        self._next_ip = first_ip
        self._nodes: dict[str, JsonObj] = {}
        self._node_of: dict[Key, str] = {}
        self._load: dict[str, int] = {}
        self._unbound: dict[Key, None] = {}
        """Pods to try, oldest first."""
        self._waiting: set[Key] = set()
        """Pods no node fits: tried again when a node changes."""
        self._starting: deque[tuple[int, Key, str]] = deque()
        self._queued: set[Key] = set()
        self._start_wanted = asyncio.Event()
        self.bound = 0
        """Pods bound so far."""
        self.started = 0
        """Pods made Running so far."""

    # -- the copy of the cluster ------------------------------------------------------

    def replace(self, rtype: ResourceType, objects: list[JsonObj]) -> None:
        if rtype is NODES:
            self._nodes = {o["metadata"]["name"]: o for o in objects}
            self._unbound.update(dict.fromkeys(sorted(self._waiting)))
            self._waiting.clear()
        elif rtype is PODS:
            self._node_of.clear()
            self._load.clear()
            self._unbound.clear()
            self._waiting.clear()
            for pod in objects:
                self.observe(PODS, "ADDED", pod)

    def observe(self, rtype: ResourceType, event: str, obj: JsonObj) -> None:
        if rtype is NODES:
            name = obj["metadata"]["name"]
            if event == "DELETED":
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = obj
                self._unbound.update(dict.fromkeys(sorted(self._waiting)))
                self._waiting.clear()
        elif rtype is PODS:
            self._observe_pod(event, obj)

    def _observe_pod(self, event: str, pod: JsonObj) -> None:
        key = key_of(pod)
        node = self._node_of.pop(key, None)
        if node is not None:
            self._load[node] -= 1
        self._unbound.pop(key, None)
        self._waiting.discard(key)
        if event == "DELETED":
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in _TERMINAL:
            self._node_of[key] = node
            self._load[node] = self._load.get(node, 0) + 1
        if _needs_node(pod):
            self._unbound[key] = None
        elif _needs_start(pod) and node in self._nodes:
            self._queue_start(key, pod)

    def _queue_start(self, key: Key, pod: JsonObj) -> None:
        if key in self._queued:
            return
        self._queued.add(key)
        due = self._clock.now_ns() + self._start_ns
        self._starting.append((due, key, str(pod["metadata"].get("uid"))))
        self._start_wanted.set()

    # -- the scheduler ----------------------------------------------------------------

    @property
    def backlog(self) -> bool:
        """Whether pods are left to try (``schedule`` takes SCHEDULE_BATCH at a time)."""
        return bool(self._unbound)

    def schedule(self) -> int:
        """Try the oldest SCHEDULE_BATCH pods without a node: bind those a node fits, set the
        others aside until a node changes. Returns how many it bound."""
        done = 0
        for key in list(itertools.islice(self._unbound, SCHEDULE_BATCH)):
            del self._unbound[key]
            try:
                pod = self._store.get(PODS, *key)
            except StoreError:
                continue
            if not _needs_node(pod):
                continue
            candidates = [name for name, node in self._nodes.items() if fits(pod, node)]
            if not candidates:
                self._waiting.add(key)
                self._unschedulable(pod)
                continue
            best = min(candidates, key=lambda name: self._load.get(name, 0))
            if self._bind(key, pod, best):
                done += 1
        self.bound += done
        return done

    def _bind(self, key: Key, pod: JsonObj, node: str) -> bool:
        try:
            bound = self._store.update(PODS, {**pod, "spec": {**pod["spec"], "nodeName": node}})
            scheduled = _condition("PodScheduled", "True", now_timestamp())
            status = _with_condition(bound.get("status") or {}, scheduled)
            self._store.update(PODS, {**bound, "status": status}, subresource="status")
        except StoreError:
            return False  # changed or gone meanwhile: its watch event brings it back
        self._node_of[key] = node
        self._load[node] = self._load.get(node, 0) + 1
        return True

    def _unschedulable(self, pod: JsonObj) -> None:
        """Say why once (a PodScheduled=False condition); the pod waits for a node that fits."""
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "PodScheduled" for c in conditions):
            return
        message = f"0/{len(self._nodes)} nodes are available."
        condition = _condition("PodScheduled", "False", now_timestamp(), "Unschedulable", message)
        status = _with_condition(pod.get("status") or {}, condition)
        try:
            self._store.update(PODS, {**pod, "status": status}, subresource="status")
        except StoreError:
            return

    # -- the kubelets ------------------------------------------------------------------

    async def run_starts(self) -> None:
        """Start each bound pod ``start_s`` after it was seen bound; waits while none is due."""
        while True:
            if not self._starting:
                self._start_wanted.clear()
                await self._start_wanted.wait()
                continue
            due_ns, key, uid = self._starting[0]
            await self._clock.sleep_until(due_ns)
            self._starting.popleft()
            self._queued.discard(key)
            self._start(key, uid)

    def _start(self, key: Key, uid: str) -> None:
        try:
            pod = self._store.get(PODS, *key)
        except StoreError:
            return
        node = self._nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if str(pod["metadata"].get("uid")) != uid or node is None or not _needs_start(pod):
            return
        status = running_status(pod, node, pod_ip(self._next_ip), now_timestamp())
        try:
            self._store.update(PODS, {**pod, "status": status}, subresource="status")
        except StoreError:
            return
        self._next_ip += 1
        self.started += 1
