"""The EndpointSlice controller: every Service with a selector has slices listing exactly the pods
the selector picks in its namespace (``endpoints.plan_slices`` says what they hold).

It keeps its own copy of pods, Services and the slices it manages, fed by the store's watch
events as an informer's cache is; a pod change marks dirty only the Services whose endpoints it
changes, and ``sync`` writes only the slices whose content differs, so a cluster that does not
change costs nothing and a seeded one, already in order, is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from loadlab.sim.controllers.endpoints import (
    Key,
    SlicePlan,
    endpoint_of,
    in_endpoints,
    is_ready,
    key_of,
    managed_by_controller,
    named_target_ports,
    plan_slices,
    pod_addresses,
    ports_of,
    selector_of,
    selects,
)
from loadlab.sim.k8s.objects import (
    ENDPOINTSLICES,
    PODS,
    SERVICE_NAME_LABEL,
    SERVICES,
    JsonObj,
    ResourceType,
)
from loadlab.sim.k8s.strategies import prepare_create, prepare_update
from loadlab.sim.storage.store import Store, StoreError

LabelKey = tuple[str, str, str]
"""(namespace, label key, label value)."""


def resource_version(obj: JsonObj) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


def _signature(pod: JsonObj) -> tuple[object, ...]:
    """What of a pod its endpoint (or a named port) reads: a change elsewhere changes no slice."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ports = tuple(
        (p.get("name"), p.get("protocol"), p.get("containerPort"))
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
    )
    return (
        in_endpoints(pod),
        tuple(pod_addresses(pod)),
        is_ready(pod),
        meta.get("uid"),
        bool(meta.get("deletionTimestamp")),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        ports,
    )


class EndpointSliceController:
    """kube-controller-manager's endpointslice controller, over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pods: dict[Key, JsonObj] = {}
        self._by_label: dict[LabelKey, set[str]] = {}
        self._services: dict[Key, JsonObj] = {}
        self._services_in: dict[str, set[str]] = {}
        self._slices: dict[Key, dict[str, JsonObj]] = {}
        """Managed slices by the Service they name (namespace, service) and slice name."""
        self._owner_of: dict[Key, Key] = {}
        self.dirty: set[Key] = set()
        """Services whose slices may be out of date."""
        self.writes = 0
        """Slices created, updated and deleted so far."""

    # -- the copy of the cluster ------------------------------------------------------

    def replace(self, rtype: ResourceType, objects: Iterable[JsonObj]) -> None:
        """Make the copy of ``rtype`` what ``objects`` say (a relist): an object that is new,
        changed or gone counts as its watch event would, so a relist after the API server's
        restart resyncs only the Services something happened to meanwhile."""
        setter = {PODS: self._set_pod, SERVICES: self._set_service, ENDPOINTSLICES: self._set_slice}
        held = self._held(rtype)
        listed = {key_of(obj): obj for obj in objects}
        for key in [k for k in held if k not in listed]:
            setter[rtype](key, None)
        for key, obj in listed.items():
            old = held.get(key)
            if old is None or resource_version(old) != resource_version(obj):
                setter[rtype](key, obj)

    def _held(self, rtype: ResourceType) -> dict[Key, JsonObj]:
        if rtype is PODS:
            return dict(self._pods)
        if rtype is SERVICES:
            return dict(self._services)
        return {key: self._slices[owner][key[1]] for key, owner in self._owner_of.items()}

    def observe(self, rtype: ResourceType, event: str, obj: JsonObj) -> None:
        """One watch event (ADDED, MODIFIED or DELETED); an echo no newer than the copy (the
        controller's own write, already held) changes nothing."""
        key = key_of(obj)
        if rtype is PODS:
            old, setter = self._pods.get(key), self._set_pod
        elif rtype is SERVICES:
            old, setter = self._services.get(key), self._set_service
        elif rtype is ENDPOINTSLICES:
            owner = self._owner_of.get(key)
            old = self._slices[owner].get(key[1]) if owner is not None else None
            setter = self._set_slice
        else:
            return
        if old is not None and resource_version(old) >= resource_version(obj):
            return
        setter(key, None if event == "DELETED" else obj)

    def _set_pod(self, key: Key, new: JsonObj | None) -> None:
        old = self._pods.pop(key, None)
        if old is not None:
            self._index(key, old, add=False)
        if new is not None:
            self._pods[key] = new
            self._index(key, new, add=True)
        changed = old is None or new is None or _signature(old) != _signature(new)
        for name in self._services_in.get(key[0], ()):
            selector = selector_of(self._services[(key[0], name)])
            was = old is not None and selects(selector, _labels(old))
            now = new is not None and selects(selector, _labels(new))
            if (was or now) and (was != now or changed):
                self.dirty.add((key[0], name))

    def _index(self, key: Key, pod: JsonObj, *, add: bool) -> None:
        for label, value in _labels(pod).items():
            names = self._by_label.setdefault((key[0], label, value), set())
            if add:
                names.add(key[1])
            else:
                names.discard(key[1])

    def _set_service(self, key: Key, new: JsonObj | None) -> None:
        if new is None:
            self._services.pop(key, None)
            self._services_in.get(key[0], set()).discard(key[1])
        else:
            self._services[key] = new
            self._services_in.setdefault(key[0], set()).add(key[1])
        self.dirty.add(key)

    def _set_slice(self, key: Key, new: JsonObj | None) -> None:
        """Hold ``new`` under the Service it names, if the controller manages it."""
        owner = self._owner_of.pop(key, None)
        if owner is not None:
            self._slices[owner].pop(key[1], None)
            self.dirty.add(owner)
        if new is not None and managed_by_controller(new):
            self._hold((key[0], new["metadata"]["labels"][SERVICE_NAME_LABEL]), new)

    def _hold(self, owner: Key, endpoint_slice: JsonObj) -> None:
        key = key_of(endpoint_slice)
        self._slices.setdefault(owner, {})[key[1]] = endpoint_slice
        self._owner_of[key] = owner
        self.dirty.add(owner)

    # -- reconciling ------------------------------------------------------------------

    def sync_all(self) -> int:
        """Reconcile every Service (and every Service a managed slice names); returns writes."""
        self.dirty.update(self._services, self._slices)
        return self.sync()

    def sync(self) -> int:
        """Reconcile the dirty Services; returns how many slices it wrote."""
        done = 0
        while self.dirty:
            batch = sorted(self.dirty)
            self.dirty.clear()
            for key in batch:
                done += self._sync_service(key)
        return done

    def _sync_service(self, key: Key) -> int:
        service = self._services.get(key)
        held = self._slices.get(key, {})
        if service is None:  # the garbage collector deletes what the Service owned
            plan = SlicePlan(delete=list(held.values()))
        elif not selector_of(service):
            return 0  # a Service without a selector: its slices are someone else's
        else:
            plan = plan_slices(service, self._desired(service), held.values())
        return self._apply(key, plan)

    def _desired(self, service: JsonObj) -> list[tuple[list[JsonObj], JsonObj]]:
        namespace = key_of(service)[0]
        selector = selector_of(service)
        names = min(
            (self._by_label.get((namespace, k, v), set()) for k, v in selector.items()), key=len
        )
        pods = [self._pods[(namespace, n)] for n in sorted(names)]
        if len(selector) > 1:  # the index matched one pair of the selector
            pods = [p for p in pods if selects(selector, _labels(p))]
        pods = [p for p in pods if in_endpoints(p)]
        if not pods:
            return []
        shared = None if named_target_ports(service) else ports_of(service, pods[0])
        return [
            (shared if shared is not None else ports_of(service, p), endpoint_of(p, service))
            for p in pods
        ]

    def _apply(self, owner: Key, plan: SlicePlan) -> int:
        """Write ``plan``; a write the store refuses (the namespace is going, or the copy was
        stale) is dropped: the watch event that follows marks the Service dirty again."""
        done = 0
        held = self._slices.setdefault(owner, {})
        for obj in plan.delete:
            name = obj["metadata"]["name"]
            try:
                self._store.delete(ENDPOINTSLICES, owner[0], name)
            except StoreError:
                continue
            held.pop(name, None)
            self._owner_of.pop((owner[0], name), None)
            done += 1
        for obj in plan.update:
            current = held.get(obj["metadata"]["name"])
            if current is None:
                continue
            try:
                written = self._store.update(
                    ENDPOINTSLICES, prepare_update(ENDPOINTSLICES, obj, current)
                )
            except StoreError:
                continue
            self._hold(owner, written)
            done += 1
        for obj in plan.create:
            try:
                written = self._store.create(ENDPOINTSLICES, prepare_create(ENDPOINTSLICES, obj))
            except StoreError:
                continue
            self._hold(owner, written)
            done += 1
        self.dirty.discard(owner)
        self.writes += done
        return done


def _labels(obj: JsonObj) -> dict[str, str]:
    labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def sync_endpoint_slices(store: Store) -> int:
    """Make every selector Service's slices from the store's pods at once (the controller's
    first sync, run on a freshly seeded store); returns how many slices it wrote."""
    controller = EndpointSliceController(store)
    for rtype in (PODS, SERVICES, ENDPOINTSLICES):
        controller.replace(rtype, store.list_objects(rtype, None).items)
    return controller.sync_all()
