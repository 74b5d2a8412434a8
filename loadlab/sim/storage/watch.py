"""Watch plumbing: events, the per-subscription queue, and how a change becomes an event.

A ``Watcher`` filters by namespace, labels and fields and turns a change into the event a client
expects: an object that starts matching is ADDED, one that stops matching is DELETED. A change
builds each kind of event once (``Change.event``), so every watcher that receives it shares one
event and its JSON line is encoded once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from loadlab.sim.k8s.objects import JsonObj, ResourceType
from loadlab.sim.storage.selection import FieldSelector, LabelSelector

# apimachinery pkg/apis/meta/v1 types.go InitialEventsAnnotationKey.
INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class WatchEvent:
    """One line of a watch stream."""

    type: str
    """ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""
    obj: JsonObj
    rv: int
    _line: bytes | None = None

    def line(self) -> bytes:
        """The event as one newline-terminated JSON line, encoded once and shared by watchers."""
        if self._line is None:
            self._line = encode_json({"type": self.type, "object": self.obj}) + b"\n"
        return self._line


@dataclass(slots=True)
class Change:
    """One committed write, as the event log keeps it."""

    rv: int
    type: str
    obj: JsonObj
    old: JsonObj | None
    _events: dict[str, WatchEvent] | None = None

    def event(self, event_type: str) -> WatchEvent:
        """This change as an ``event_type`` (ADDED, MODIFIED or DELETED) event, built once and
        shared by every watcher that receives it."""
        if self._events is None:
            self._events = {}
        event = self._events.get(event_type)
        if event is None:
            event = self._events[event_type] = WatchEvent(event_type, self.obj, self.rv)
        return event


class Watcher:
    """A subscription: a bounded queue of events, closed (``None``) when the stream must end."""

    def __init__(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        queue_limit: int,
        after_rv: int = 0,
    ) -> None:
        self.rtype = rtype
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(maxsize=queue_limit + 1)
        self._limit = queue_limit
        self.closed = False
        self.trigger: tuple[str, str] | None = None
        self.deadline_ns: int | None = None
        """When the server ends this watch (timeoutSeconds or the jittered default)."""
        self.bookmark_every_ns = 0
        """0: no bookmarks; else the period of BOOKMARK events (allowWatchBookmarks)."""
        self.next_bookmark_ns = 0
        self.after_rv = after_rv
        """Changes at or before this version are never sent: a watch from a version the store
        has not reached yet skips the changes until it (cache_watcher.go ``process``)."""

    def matches(self, obj: JsonObj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)

    def offer(self, event: WatchEvent) -> None:
        """Queue ``event``; a watcher too slow to keep ``queue_limit`` events is closed."""
        if self.closed:
            return
        if self.queue.qsize() >= self._limit:
            self.close()  # the cacher drops watchers that cannot keep up
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def deliver(self, change: Change) -> None:
        if change.rv <= self.after_rv:
            return
        was = self.matches(change.old)
        now = change.type != "DELETED" and self.matches(change.obj)
        if change.type == "DELETED":
            if was:
                self.offer(change.event("DELETED"))
        elif was and now:
            self.offer(change.event("MODIFIED"))
        elif now:
            self.offer(change.event("ADDED"))
        elif was:
            self.offer(change.event("DELETED"))


def bookmark_event(rtype: ResourceType, rv: int, *, initial_events_end: bool = False) -> WatchEvent:
    """A BOOKMARK event: only kind, apiVersion and metadata.resourceVersion are set; the one
    that ends a watch's initial events (sendInitialEvents) also carries the annotation
    ``k8s.io/initial-events-end: "true"`` (storage.AnnotateInitialEventsEndBookmark)."""
    meta: JsonObj = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {INITIAL_EVENTS_END_ANNOTATION: "true"}
    obj = {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta}
    return WatchEvent("BOOKMARK", obj, rv)
