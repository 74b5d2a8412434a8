"""One resource type's objects in the store: indexes, sorted keys, event log, and watchers.

The event log is the watch cache's window: when it is full, the oldest change falls out and its
resourceVersion becomes ``floor_rv``; a watch or continue token from before it gets 410 Gone.
Watchers are bucketed by a "trigger" (an equality on an indexed field or metadata.name) so a
change reaches only the watchers that can care about it.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator

from loadlab.sim.k8s.objects import JsonObj, ResourceType
from loadlab.sim.storage.errors import Invalid
from loadlab.sim.storage.selection import FieldSelector, field_value
from loadlab.sim.storage.watch import Change, Watcher

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped resources


def key_of(rtype: ResourceType, obj: JsonObj) -> Key:
    """``obj``'s key in a collection of ``rtype``; Invalid when it has no name."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise Invalid(f"{rtype.kind}: metadata.name is required")
    return ((meta.get("namespace") or "") if rtype.namespaced else "", name)


NAME_TRIGGER = "metadata.name"
_KEY_MAX = "\U0010ffff"
# Not from a reference: a first guess at one object's JSON size, about a seeded pod's (~700 B) or
# node's, until sampled writes refine it (Store._commit).
INITIAL_APPROX_OBJECT_BYTES = 1024


class Collection:
    """The objects of one resource type, its indexes, its event log and its watchers."""

    def __init__(self, rtype: ResourceType, window: int) -> None:
        self.rtype = rtype
        self.objects: dict[Key, JsonObj] = {}
        self.ns_counts: dict[str, int] = {}
        self.indexes: dict[str, dict[str, set[Key]]] = {f: {} for f in rtype.indexed_fields}
        self.log: deque[Change] = deque(maxlen=max(window, 1))
        self.floor_rv = 0
        self.watchers: dict[tuple[str, str] | None, set[Watcher]] = {}
        self.watcher_count = 0
        self._sorted: list[Key] | None = None
        self.encoded: dict[int, bytes] = {}
        """JSON of current objects by id(): filled by LISTs, dropped when the object changes."""
        self.approx_bytes = INITIAL_APPROX_OBJECT_BYTES

    def sorted_keys(self) -> list[Key]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def put(self, key: Key, obj: JsonObj, old: JsonObj | None) -> None:
        if old is not None:
            self.encoded.pop(id(old), None)
        else:
            self._sorted = None
            self.ns_counts[key[0]] = self.ns_counts.get(key[0], 0) + 1
        self.objects[key] = obj
        for path, index in self.indexes.items():
            before = field_value(old, path) if old is not None else None
            after = field_value(obj, path)
            if before != after:
                if before is not None:
                    index.get(before, set()).discard(key)
                index.setdefault(after, set()).add(key)

    def remove(self, key: Key) -> JsonObj:
        obj = self.objects.pop(key)
        self.encoded.pop(id(obj), None)
        self._sorted = None
        self.ns_counts[key[0]] -= 1
        for path, index in self.indexes.items():
            index.get(field_value(obj, path), set()).discard(key)
        return obj

    def record(self, change: Change) -> None:
        if len(self.log) == self.log.maxlen:
            self.floor_rv = self.log[0].rv
        self.log.append(change)
        if not self.watcher_count:
            return
        targets: set[Watcher] = set(self.watchers.get(None, ()))
        for path in (*self.rtype.indexed_fields, NAME_TRIGGER):
            for obj in (change.old, change.obj):
                if obj is not None:
                    targets.update(self.watchers.get((path, field_value(obj, path)), ()))
        for watcher in targets:
            watcher.deliver(change)

    def trigger(self, fields: FieldSelector) -> tuple[str, str] | None:
        """The first equality of ``fields`` on an indexed field, else on metadata.name, as
        (path, value); None when there is neither (the selector narrows nothing cheaply)."""
        for path in (*self.rtype.indexed_fields, NAME_TRIGGER):
            value = fields.equality(path)
            if value is not None:
                return path, value
        return None

    def candidates(self, namespace: str | None, fields: FieldSelector) -> list[Key]:
        """The sorted keys a LIST must look at: those an index or metadata.name narrows
        ``fields`` to, else every key in ``namespace`` (None: all)."""
        trigger = self.trigger(fields)
        if trigger is not None:
            path, value = trigger
            index = self.indexes.get(path)
            if index is not None:
                hits = index.get(value, set())
                return sorted(k for k in hits if namespace is None or k[0] == namespace)
            name = value  # metadata.name: at most one object per namespace
            if namespace is not None or not self.rtype.namespaced:
                key = (namespace or "", name)
                return [key] if key in self.objects else []
            return sorted(k for k in self.objects if k[1] == name)
        keys = self.sorted_keys()
        if namespace is None:
            return keys
        lo = bisect.bisect_left(keys, (namespace, ""))
        hi = bisect.bisect_left(keys, (namespace, _KEY_MAX))
        return keys[lo:hi]

    def add_watcher(self, watcher: Watcher) -> None:
        trigger = self.trigger(watcher.fields)
        watcher.trigger = trigger
        self.watchers.setdefault(trigger, set()).add(watcher)
        self.watcher_count += 1

    def drop_watcher(self, watcher: Watcher) -> None:
        bucket = self.watchers.get(watcher.trigger)
        if bucket is not None and watcher in bucket:
            bucket.discard(watcher)
            self.watcher_count -= 1
            if not bucket:
                del self.watchers[watcher.trigger]

    def all_watchers(self) -> Iterator[Watcher]:
        for bucket in self.watchers.values():
            yield from bucket
