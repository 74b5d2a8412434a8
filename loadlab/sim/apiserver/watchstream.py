"""How a watch's events go on the wire: JSON lines, kubectl Tables, or Kubernetes protobuf frames.

kube-apiserver picks a watch's stream serializer by the Accept header (apiserver
endpoints/handlers/watch.go ``serveWatchHandler``; ``media.negotiate_watch``), and so does the sim:

- JSON (no Accept, ``application/json``, ``*/*``): one ``{"type", "object"}`` document per line,
  Content-Type ``application/json``.
- protobuf (``application/vnd.kubernetes.protobuf``, with or without ``;stream=watch``: what
  client-go's protobuf clients put first): each event one length-delimited frame holding a bare
  meta.v1.WatchEvent whose object is the object's whole protobuf body (``k8s.protobuf``),
  Content-Type ``application/vnd.kubernetes.protobuf;stream=watch``.
- Tables (``as=Table``, kubectl ``get -w``): JSON lines of one-row Tables, the first with the
  column definitions; BOOKMARK and ERROR events go as they are.

An ERROR event (410 Expired, 504 Timeout) ends a stream in the stream's own format, as the
cacher's errWatcher's does: a protobuf watch gets its Status as protobuf.
"""

from __future__ import annotations

from aiohttp import web

from loadlab.sim.apiserver.media import JSON, PROTOBUF, negotiate_watch
from loadlab.sim.apiserver.tables import table, wants_table
from loadlab.sim.k8s import protobuf
from loadlab.sim.k8s.objects import JsonObj, ResourceType
from loadlab.sim.k8s.validation import ApiError
from loadlab.sim.storage.watch import Watcher, WatchEvent, encode_json

# Not from a reference: events written per chunk at most, so one busy watch cannot hog the loop.
WATCH_BATCH = 256
# Events with no object of the kind: sent as they are even to a Table watch, and built for one
# watcher (a bookmark, an error), so there is no frame to share.
_CONTROL_EVENTS = frozenset({"ERROR", "BOOKMARK"})
# Not from a reference: events whose frames the cache keeps. One change fans out to all its
# watchers at once, so a small cache catches it; bounded so it never holds a second store.
FRAME_CACHE_EVENTS = 4096


def protobuf_frame(event: WatchEvent) -> bytes:
    """``event`` as one frame of a protobuf watch stream."""
    embedded = protobuf.encode_object(event.obj)
    return protobuf.frame(protobuf.encode_watch_event(event.type, embedded))


class ProtobufFrames:
    """Each event's protobuf frame, encoded once and shared by every watch that sends it, as
    ``WatchEvent.line`` shares its JSON line (the real watch cache shares them through
    CacheableObject). Keyed by the event's identity; an entry keeps its event alive, so no key is
    reused while cached. The oldest entries go first once ``limit`` is reached."""

    def __init__(self, limit: int = FRAME_CACHE_EVENTS) -> None:
        self._limit = limit
        self._frames: dict[int, tuple[WatchEvent, bytes]] = {}

    def frame(self, event: WatchEvent) -> bytes:
        if event.type in _CONTROL_EVENTS:
            return protobuf_frame(event)
        cached = self._frames.get(id(event))
        if cached is not None:
            return cached[1]
        encoded = protobuf_frame(event)
        if len(self._frames) >= self._limit:
            del self._frames[next(iter(self._frames))]
        self._frames[id(event)] = (event, encoded)
        return encoded


class WatchStream:
    """One watch's wire format, and what it remembers between events (whether a Table watch
    has sent its column definitions yet)."""

    def __init__(
        self,
        media: str,
        rtype: ResourceType,
        frames: ProtobufFrames,
        *,
        as_table: bool = False,
        include_object: str = "Metadata",
    ) -> None:
        self.media = media
        """JSON or PROTOBUF."""
        self._rtype = rtype
        self._frames = frames
        self._as_table = as_table
        self._include = include_object
        self._headers = True

    @property
    def content_type(self) -> str:
        """watch.go: JSON as it is, any other media type with ``;stream=watch``."""
        return self.media if self.media == JSON else f"{self.media};stream=watch"

    async def open(self, request: web.BaseRequest) -> web.StreamResponse:
        """The 200 whose chunked body is the stream, headers sent at once (as watch.go flushes
        them before the first event, so a client knows its watch is established)."""
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": self.content_type, "Cache-Control": "no-cache, private"},
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        return resp

    def encode(self, batch: list[WatchEvent]) -> bytes:
        if self.media == PROTOBUF:
            return b"".join(self._frames.frame(e) for e in batch)
        if not self._as_table:
            return b"".join(e.line() for e in batch)
        lines = []
        for event in batch:
            lines.append(self._table_line(event))
            self._headers = self._headers and event.type in _CONTROL_EVENTS
        return b"".join(lines)

    def error(self, status: JsonObj) -> bytes:
        """The one ERROR event of a watch that could not start."""
        return self.encode([WatchEvent("ERROR", status, 0)])

    async def send(self, resp: web.StreamResponse, watcher: Watcher) -> None:
        """Write ``watcher``'s events until its queue closes, up to ``WATCH_BATCH`` a write."""
        queue = watcher.queue
        while True:
            event = await queue.get()
            batch: list[WatchEvent] = []
            while event is not None:
                batch.append(event)
                if len(batch) >= WATCH_BATCH or queue.empty():
                    break
                event = queue.get_nowait()
            if batch:
                await resp.write(self.encode(batch))
            if event is None:
                return

    def _table_line(self, event: WatchEvent) -> bytes:
        if event.type in _CONTROL_EVENTS:
            return event.line()
        tbl = table(
            self._rtype,
            [event.obj],
            resource_version=str(event.rv),
            include_object=self._include,
            headers=self._headers,
        )
        return encode_json({"type": event.type, "object": tbl}) + b"\n"


def watch_stream(
    accept: str | None,
    rtype: ResourceType,
    frames: ProtobufFrames,
    *,
    include_object: str = "Metadata",
) -> WatchStream:
    """The stream a watch with this Accept gets, or ApiError 406 (``media.negotiate_watch``;
    a kind with no protobuf message is 406 as apimachinery's errNotMarshalable is)."""
    as_table = wants_table(accept or "")
    media = negotiate_watch(accept, table=as_table)
    if media == PROTOBUF and not protobuf.has_message(rtype.api_version, rtype.kind):
        raise ApiError(
            406,
            "NotAcceptable",
            f"object {rtype.kind} does not implement the protobuf marshalling interface and "
            "cannot be encoded to a protobuf message",
        )
    return WatchStream(media, rtype, frames, as_table=as_table, include_object=include_object)
