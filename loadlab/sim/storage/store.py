"""The sim's storage: objects by resource, one global resourceVersion, and the watch cache.

One ``Store`` plays both etcd and the API server's watch cache: reads are the same data whichever
path the request "took" (the overload model charges the difference). Every write bumps the global
resourceVersion, appends an event to that resource's bounded event log, and fans it out to
matching watchers; watchers on pods are triggered by spec.nodeName and watchers by metadata.name
are triggered by name, as the real cacher does, so 5,000 kubelet watches stay cheap.

Stored objects are never mutated in place: every write builds a new dict (sharing unchanged
subtrees), so a list response may hold references without copying.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator

from loadlab.sim.k8s.objects import NAMESPACES, RESOURCE_TYPES, JsonObj, ResourceType, now_timestamp
from loadlab.sim.k8s.patches import merge_patch
from loadlab.sim.storage import namespaces
from loadlab.sim.storage.collection import Collection, Key, key_of
from loadlab.sim.storage.errors import AlreadyExists as AlreadyExists
from loadlab.sim.storage.errors import Conflict as Conflict
from loadlab.sim.storage.errors import ContinueExpired as ContinueExpired
from loadlab.sim.storage.errors import Expired as Expired
from loadlab.sim.storage.errors import Forbidden as Forbidden
from loadlab.sim.storage.errors import Invalid as Invalid
from loadlab.sim.storage.errors import NotFound as NotFound
from loadlab.sim.storage.errors import StoreError as StoreError
from loadlab.sim.storage.errors import TooLargeResourceVersion as TooLargeResourceVersion
from loadlab.sim.storage.selection import (
    EVERYTHING_FIELDS,
    EVERYTHING_LABELS,
    FieldSelector,
    LabelSelector,
)
from loadlab.sim.storage.snapshot import (
    CONTINUE_TOO_OLD,
    LATEST,
    LIST_TOO_OLD,
    ListResult,
    decode_continue,
    encode_continue,
    read_page,
    undone_since,
)
from loadlab.sim.storage.watch import Change, Watcher, WatchEvent, bookmark_event, encode_json

# Not from a reference: encoding every written object just to size it would double a write's cost,
# so one write in 64 is sampled, into a moving average where the new sample weighs 1/4.
SIZE_SAMPLE_EVERY = 64
SIZE_AVERAGE_WEIGHT = 4
# k8s.io/apiserver pkg/storage/names/generate.go: generateName gets 5 random characters appended
# (randomLength = 5); the sim's are hex.
GENERATED_NAME_SUFFIX_CHARS = 5


class Store:
    """All objects of the simulated cluster, keyed by resource type."""

    def __init__(self, *, event_window: int = 10_000, watch_queue_limit: int = 1_000) -> None:
        self._rv = 1
        self._queue_limit = watch_queue_limit
        self._tables = {rt: Collection(rt, event_window) for rt in RESOURCE_TYPES}
        self._uids = itertools.count()
        self._uid_prefix = uuid.uuid4().hex[:20]

    @property
    def resource_version(self) -> int:
        return self._rv

    def count(self, rtype: ResourceType, namespace: str | None = None) -> int:
        table = self._tables[rtype]
        if namespace is None:
            return len(table.objects)
        return table.ns_counts.get(namespace, 0)

    def approx_object_bytes(self, rtype: ResourceType) -> int:
        """A running estimate of one object's JSON size (sampled on writes)."""
        return self._tables[rtype].approx_bytes

    def approx_total_bytes(self) -> int:
        """Every stored object as the watch cache holds it: per type, count x typical JSON size."""
        return sum(len(t.objects) * t.approx_bytes for t in self._tables.values())

    def encoded(self, rtype: ResourceType, obj: JsonObj) -> bytes:
        """``obj`` as JSON; the bytes of a current object are cached until it changes."""
        table = self._tables[rtype]
        data = table.encoded.get(id(obj))
        if data is None:
            data = encode_json(obj)
            if table.objects.get(key_of(rtype, obj)) is obj:
                table.encoded[id(obj)] = data
        return data

    def watcher_count(self, rtype: ResourceType) -> int:
        return self._tables[rtype].watcher_count

    def watchers(self) -> Iterator[Watcher]:
        for table in self._tables.values():
            yield from table.all_watchers()

    def _next_uid(self) -> str:
        n = next(self._uids)
        p = self._uid_prefix
        return f"{p[:8]}-{p[8:12]}-4{p[12:15]}-8{p[15:18]}-{n:012x}"

    def _commit(
        self, table: Collection, key: Key, kind: str, obj: JsonObj, old: JsonObj | None
    ) -> None:
        if kind == "DELETED":
            table.remove(key)
        else:
            table.put(key, obj, old)
        if self._rv % SIZE_SAMPLE_EVERY == 0:
            size = len(encode_json(obj))
            w = SIZE_AVERAGE_WEIGHT
            table.approx_bytes = (table.approx_bytes * (w - 1) + size) // w
        table.record(Change(self._rv, kind, obj, old))

    # -- reads -----------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> JsonObj:
        obj = self._tables[rtype].objects.get((namespace if rtype.namespaced else "", name))
        if obj is None:
            raise NotFound(f'{rtype.plural} "{name}" not found')
        return obj

    def list_objects(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector = EVERYTHING_LABELS,
        fields: FieldSelector = EVERYTHING_FIELDS,
        limit: int = 0,
        continue_token: str | None = None,
        resource_version: int | None = None,
    ) -> ListResult:
        """A page of objects: at the version its continue token carries (every page of a list
        is the state its first page saw, ``snapshot``), else at ``resource_version`` exactly
        (Exact), else now. 410 ``Expired`` once that version has left the event window (a
        continue token then gets one that resumes at the latest version); a version newer than
        the store's is ``TooLargeResourceVersion``, at once, as etcd answers a future revision."""
        table = self._tables[rtype]
        rv, start = self._rv, None
        if continue_token:
            rv, start = decode_continue(continue_token)
            if rv < 0:
                rv = self._rv
            elif rv < table.floor_rv:
                raise ContinueExpired(CONTINUE_TOO_OLD, encode_continue(LATEST, start))
        elif resource_version is not None:
            rv = resource_version
            if rv < table.floor_rv:
                raise Expired(LIST_TOO_OLD)
        if rv > self._rv:
            raise TooLargeResourceVersion(rv, self._rv, retry_after_s=0)
        undone = undone_since(table, rv) if rv < self._rv else {}
        return read_page(
            table,
            namespace,
            labels=labels,
            fields=fields,
            limit=limit,
            start=start,
            rv=rv,
            undone=undone,
        )

    def estimate_list(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        fields: FieldSelector = EVERYTHING_FIELDS,
        limit: int = 0,
    ) -> tuple[int, int]:
        """(objects in scope, an upper bound of objects returned), without scanning anything.

        A real API server decides admission before its handler runs; the sim must too, or a
        LIST that is about to get a 429 would still pay its scan in the sim's event loop.
        """
        table = self._tables[rtype]
        scope = self.count(rtype, namespace)
        returned = scope
        trigger = table.trigger(fields)
        if trigger is not None:
            path, value = trigger
            index = table.indexes.get(path)
            returned = min(scope, 1 if index is None else len(index.get(value, ())))
        if limit:
            returned = min(returned, limit)
        return scope, returned

    # -- writes ----------------------------------------------------------------------------

    def create(self, rtype: ResourceType, obj: JsonObj, *, dry_run: bool = False) -> JsonObj:
        """POST. A dry run answers the object as it would be stored (uid and creationTimestamp
        set, no resourceVersion: registry/dryrun.go copies it without writing) and keeps
        nothing."""
        table = self._tables[rtype]
        meta = dict(obj.get("metadata") or {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = secrets.token_hex(3)[:GENERATED_NAME_SUFFIX_CHARS]
            meta["name"] = meta["generateName"] + suffix
        if not rtype.namespaced:
            meta.pop("namespace", None)
        new = dict(obj)
        new["metadata"] = meta
        key = key_of(rtype, new)
        if rtype.namespaced:  # NamespaceLifecycle admission runs before storage
            space = self._tables[NAMESPACES].objects.get(("", key[0]))
            problem = namespaces.refuse_create(rtype, key[0], key[1], space)
            if problem is not None:
                code, message, details = problem
                raise (NotFound if code == 404 else Forbidden)(message, details)
        if key in table.objects:
            raise AlreadyExists(f'{rtype.plural} "{key[1]}" already exists')
        meta["uid"] = self._next_uid()
        meta.setdefault("creationTimestamp", now_timestamp())
        new.setdefault("apiVersion", rtype.api_version)
        new.setdefault("kind", rtype.kind)
        if rtype is NAMESPACES:  # registry/core/namespace: a new namespace is Active
            new["status"] = {**(new.get("status") or {}), "phase": "Active"}
        if dry_run:
            meta.pop("resourceVersion", None)
            return new
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._commit(table, key, "ADDED", new, None)
        return new

    def update(
        self,
        rtype: ResourceType,
        obj: JsonObj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        """PUT: replace; a stale metadata.resourceVersion is a Conflict, an empty one is not."""
        table = self._tables[rtype]
        key = key_of(rtype, obj)
        old = table.objects.get(key)
        if old is None:
            raise NotFound(f'{rtype.plural} "{key[1]}" not found')
        want = (obj.get("metadata") or {}).get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise _conflict(rtype, key[1])
        return self._replace(table, key, old, obj, subresource, dry_run)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        apply: Callable[[JsonObj], JsonObj] | JsonObj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        """PATCH: ``apply`` turns the current object into the patched one (any patch type), as
        handlers/patch.go applies it inside the update (a dict is a JSON merge patch); a
        resourceVersion the patch changed is a precondition that fails with Conflict."""
        table = self._tables[rtype]
        key = (namespace if rtype.namespaced else "", name)
        old = table.objects.get(key)
        if old is None:
            raise NotFound(f'{rtype.plural} "{name}" not found')
        patched = apply(old) if callable(apply) else merge_patch(old, apply)
        want = (patched.get("metadata") or {}).get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise _conflict(rtype, name)
        return self._replace(table, key, old, patched, subresource, dry_run)

    def _replace(
        self,
        table: Collection,
        key: Key,
        old: JsonObj,
        obj: JsonObj,
        subresource: str | None,
        dry_run: bool = False,
    ) -> JsonObj:
        rtype = table.rtype
        new = dict(obj)
        if subresource == "status":
            new = dict(old)
            if "status" in obj:
                new["status"] = obj["status"]
        elif rtype.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        meta = dict(new.get("metadata") or {})
        old_meta = old["metadata"]
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        new["metadata"] = meta
        new["apiVersion"] = rtype.api_version
        new["kind"] = rtype.kind
        if dry_run:
            # registry/dryrun.go GuaranteedUpdate: the updated object, not written, keeps the
            # version it was computed from.
            meta["resourceVersion"] = old_meta["resourceVersion"]
            return new
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._commit(table, key, "MODIFIED", new, old)
        return new

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, *, dry_run: bool = False
    ) -> JsonObj:
        """DELETE. A namespace is not removed but marked Terminating (``namespaces``); the
        caller finalizes it later. A dry run answers the object as it is and keeps it."""
        table = self._tables[rtype]
        key = (namespace if rtype.namespaced else "", name)
        old = table.objects.get(key)
        if old is None:
            raise NotFound(f'{rtype.plural} "{name}" not found')
        if rtype is NAMESPACES:
            return self._terminate_namespace(table, key, old, dry_run)
        if dry_run:
            return old
        return self._remove(table, key, old)

    def _remove(self, table: Collection, key: Key, old: JsonObj) -> JsonObj:
        """Take ``old`` out at a new resourceVersion (a DELETED event); the object as it went."""
        self._rv += 1
        gone = dict(old)
        gone["metadata"] = {**old["metadata"], "resourceVersion": str(self._rv)}
        self._commit(table, key, "DELETED", gone, old)
        return gone

    def _terminate_namespace(
        self, table: Collection, key: Key, old: JsonObj, dry_run: bool
    ) -> JsonObj:
        refusal = namespaces.refuse_delete(key[1])
        if refusal is not None:
            raise Forbidden(*refusal)
        if namespaces.is_terminating(old):
            return old  # registry/core/namespace/storage: a second delete changes nothing
        new = namespaces.terminating(old)
        if dry_run:
            return new
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        self._commit(table, key, "MODIFIED", new, old)
        return new

    def purge_namespace(self, name: str, batch: int) -> int:
        """Delete up to ``batch`` objects inside namespace ``name`` (each a DELETED event);
        once it is empty, delete the namespace itself. Returns how many objects went, so the
        caller yields between batches and a big namespace cannot stall the event loop."""
        removed = 0
        for rtype, table in self._tables.items():
            if not rtype.namespaced or not table.ns_counts.get(name):
                continue
            keys = table.candidates(name, EVERYTHING_FIELDS)
            for key in keys[: batch - removed]:
                self.delete(rtype, key[0], key[1])
                removed += 1
            if removed >= batch:
                return removed
        ns_key = ("", name)
        space = self._tables[NAMESPACES].objects.get(ns_key)
        if space is not None and namespaces.is_terminating(space):
            self._remove(self._tables[NAMESPACES], ns_key, space)
            removed += 1
        return removed

    def load(self, objects: Iterable[tuple[ResourceType, JsonObj]]) -> int:
        """Create many objects (seeding); returns how many."""
        n = 0
        for rtype, obj in objects:
            self.create(rtype, obj)
            n += 1
        return n

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector = EVERYTHING_LABELS,
        fields: FieldSelector = EVERYTHING_FIELDS,
        resource_version: str = "",
        send_initial_events: bool | None = None,
        initial_events_end: bool = False,
    ) -> Watcher:
        """Subscribe, starting where the cacher does. With ``send_initial_events``, or rv "" or
        "0" and no such option: a synthetic ADDED per current object (then, with
        ``initial_events_end``, a BOOKMARK annotated ``k8s.io/initial-events-end``), then the
        changes. ``send_initial_events=False`` with rv "" or "0": the changes from now. A
        numeric rv: every change after it (``Expired`` once the event log no longer reaches
        it); a version the store has not reached yet is accepted and only newer changes are
        sent (cache_watcher.go: "only send events newer than resourceVersion")."""
        table = self._tables[rtype]
        if send_initial_events or (send_initial_events is None and resource_version in ("", "0")):
            items = self.list_objects(rtype, namespace, labels=labels, fields=fields).items
            limit = self._queue_limit
            if len(items) >= limit:
                limit += len(items) + 1  # room for the whole state, then the usual backlog
            watcher = Watcher(rtype, namespace, labels, fields, limit, after_rv=self._rv)
            for obj in items:
                watcher.offer(WatchEvent("ADDED", obj, int(obj["metadata"]["resourceVersion"])))
            if initial_events_end:
                watcher.offer(bookmark_event(rtype, self._rv, initial_events_end=True))
        elif resource_version in ("", "0"):
            watcher = Watcher(rtype, namespace, labels, fields, self._queue_limit, self._rv)
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                raise Invalid(f"invalid resourceVersion {resource_version!r}") from exc
            if since < table.floor_rv:
                raise Expired(f"too old resource version: {since} ({table.floor_rv})")
            watcher = Watcher(rtype, namespace, labels, fields, self._queue_limit, since)
            replay: list[Change] = []
            for change in reversed(table.log):
                if change.rv <= since:
                    break
                replay.append(change)
            for change in reversed(replay):
                watcher.deliver(change)
        table.add_watcher(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._tables[watcher.rtype].drop_watcher(watcher)

    def rebuild_watch_cache(self) -> None:
        """What a restarted API server does: end every watch and forget the event history, so
        any older resourceVersion gets 410 Gone and clients relist.

        The resourceVersion moves on by one first: a real server writes on start-up (its
        identity lease), so even a client that had seen the very latest version relists."""
        self._rv += 1
        for table in self._tables.values():
            for watcher in list(table.all_watchers()):
                watcher.close()
            table.watchers.clear()
            table.watcher_count = 0
            table.log.clear()
            table.floor_rv = self._rv


def _conflict(rtype: ResourceType, name: str) -> Conflict:
    """apimachinery pkg/api/errors NewConflict with the storage layer's optimistic-lock message."""
    return Conflict(
        f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {k: v for k, v in (("name", name), ("group", rtype.group), ("kind", rtype.plural)) if v},
    )
