"""client-go's reflector as a flow: LIST, then WATCH from the list's resourceVersion, for ever.

Any agent that keeps an informer (the kubelet's own pods, a telemetry pod's cache) runs one
``reflect`` flow per informer. The rules are those of client-go v0.32's
``tools/cache/reflector.go`` (``Run``, ``ListAndWatch``, ``list``, ``watch``, ``handleAnyWatch``)
and ``tools/pager/pager.go``; numbers are in docs/control-plane-model.md, "Reflector" and
"REST client retries".

What it does, in client-go's words:

- ``Run`` is ``wait.BackoffUntil(ListAndWatch, backoffManager, sliding=true)``: every time
  ``ListAndWatch`` returns, error or not, the flow waits one backoff step and lists again.
- ``list``: the first LIST asks for ``resourceVersion=0`` (the watch cache) in pages of
  ``limit=500`` (``pager.defaultPageSize``), following ``metadata.continue``; continue pages
  carry no resourceVersion. The watch cache ignores ``limit`` at rv=0, but client-go still sends
  it. A relist asks for the last resourceVersion seen *without* a limit (so the watch cache can
  serve it), unless the first list came back paginated (no watch cache).
- A LIST that answers 410 Expired is retried at once as a consistent read (``resourceVersion``
  left out, i.e. ``""``, pages of 500): client-go's ``isLastSyncResourceVersionUnavailable``.
  A 410 on a continue page makes the pager fetch the whole list in one request instead.
- ``watch``: from the list's resourceVersion with ``allowWatchBookmarks=true`` and
  ``timeoutSeconds`` = ⌊300 × (1 + rand)⌋, i.e. in [5, 10) min (``minWatchTimeout``). Every event,
  bookmarks included, moves the resourceVersion on. A stream that ends is reopened at once from
  the last resourceVersion, without a backoff and without a relist.
- Errors: a watch refused (connection error) or throttled (429, as a reply or an ERROR event)
  backs off and watches again from the same resourceVersion. Any other failure (410 Gone/Expired,
  5xx, a timeout, a watch that ends within 1 s with no event) makes ``ListAndWatch`` return, so the
  flow backs off and relists. client-go relists after a watch's 410 at the *last* resourceVersion
  (the ``DefaultWatchErrorHandler`` comment: "LIST call with ResourceVersion=RV already has a
  semantic that it returns data at least as fresh as provided RV"); only if that LIST is itself
  410 does it fall back to the consistent read.
- Backoff: ``wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)``: 0.8 s doubling to a
  30 s cap, each wait drawn in [d, 2d), back to 0.8 s when the previous backoff started more than
  2 min ago.
- REST client retries (``rest/with_retry.go``, ``checkWait``): a 429 or 5xx carrying Retry-After is
  slept on and sent again, up to 10 times, before the reflector sees an error.

Simplifications, on purpose: no resync (the kubelet sets none), no WatchList streaming (the
``WatchListClient`` gate is off in v0.32), no retry of internal errors
(``MaxInternalErrorRetryDuration`` is 0 by default), and the REST client's own retry of a GET
cut by a connection reset (1 s, GET only) is left out: ``Outcome.CONN_ERROR`` does not say which
kind of connection error it was.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from loadlab.agents.base import (
    Action,
    ApiCall,
    ApiReply,
    Flow,
    JsonObj,
    Sleep,
    WatchClose,
    WatchEnd,
    WatchEvent,
    WatchNext,
    WatchOpen,
    Woke,
    expect,
)
from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome

T = TypeVar("T")
SubFlow = Generator[Action, Any, T]
"""A piece of a flow (``yield from`` it) that returns a ``T``."""

HTTP_GONE: Final = 410
HTTP_TOO_MANY_REQUESTS: Final = 429
REST_MAX_RETRIES: Final = 10
"""client-go rest/request.go ``maxRetries``: a 429/5xx with Retry-After is retried 10 times."""
MAX_LIST_PAGES: Final = 100_000
"""Pages one LIST may take: 150,000 pods / 500 is 300; this only stops a server that never ends."""


@dataclass(frozen=True)
class ReflectorConfig:
    """The reflector's numbers, each a client-go default (docs/control-plane-model.md,
    "Reflector")."""

    page_size: int = 500
    """``pager.defaultPageSize`` (tools/pager/pager.go)."""
    min_watch_timeout_s: float = 300.0
    """``defaultMinWatchTimeout`` 5 min; each watch asks for ⌊min × (1 + rand)⌋ s."""
    backoff_initial_s: float = 0.8
    """``NewExponentialBackoffManager(800ms, ...)``."""
    backoff_cap_s: float = 30.0
    backoff_reset_s: float = 120.0
    """Back to the initial step when the last backoff started longer ago than this (2 min)."""
    backoff_factor: float = 2.0
    backoff_jitter: float = 1.0
    """Each wait is drawn in [d, d × (1 + jitter)), ``wait.Jitter``."""
    short_watch_s: float = 1.0
    """A watch closed sooner than this with no event is an error ("very short watch")."""
    rest_max_retries: int = REST_MAX_RETRIES


@dataclass
class ReflectorState:
    """What one reflector knows and has done; mutable, shared with whoever reads the counts."""

    objects: dict[str, str] = field(default_factory=dict)
    """Known objects, ``namespace/name`` (``name`` when cluster-scoped) → resourceVersion."""
    resource_version: str = ""
    """The last resourceVersion seen, from a LIST or any watch event (bookmarks included)."""
    synced: bool = False
    """A LIST has completed at least once."""
    lists: int = 0
    """LISTs started (one per pager run, whatever its page count)."""
    relists: int = 0
    """LISTs started after the first successful one: the relist storm a summary counts."""
    consistent_lists: int = 0
    """LISTs sent with resourceVersion "" (etcd unless the cache can serve consistent reads)."""
    list_pages: int = 0
    watches: int = 0
    """Watches the server accepted (200)."""
    watch_errors: int = 0
    """Watches refused, failed by an ERROR event, cut, or closed at once with nothing."""
    events: int = 0
    """Watch events applied, bookmarks included."""
    rv_unavailable: bool = False
    """client-go's ``isLastSyncResourceVersionUnavailable``: a LIST got 410, relist with rv ""."""
    paginated: bool = False
    """The rv=0 LIST came back in pages (no watch cache): relists keep the page size."""


class ReflectorBackoff:
    """``wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0, clock)`` on engine time.

    ``Backoff.Step``: return the current step jittered into [d, 2d), then double it, capped at
    30 s; ``getNextBackoff``: start again from 0.8 s when the previous call was over 2 min ago.
    """

    def __init__(self, config: ReflectorConfig, rng: random.Random, now_ns: int) -> None:
        self._config = config
        self._rng = rng
        self._step_ns = round(config.backoff_initial_s * NS_PER_S)
        self._last_ns = now_ns  # client-go sets lastBackoffStart when the manager is made

    def next_delay_ns(self, now_ns: int) -> int:
        cfg = self._config
        if now_ns - self._last_ns > cfg.backoff_reset_s * NS_PER_S:
            self._step_ns = round(cfg.backoff_initial_s * NS_PER_S)
        self._last_ns = now_ns
        step_ns = self._step_ns
        self._step_ns = min(
            round(step_ns * cfg.backoff_factor), round(cfg.backoff_cap_s * NS_PER_S)
        )
        return step_ns + int(self._rng.random() * cfg.backoff_jitter * step_ns)


def server_asked_to_wait(reply: ApiReply) -> bool:
    """client-go ``checkWait``: a 429 or any 5xx with a Retry-After is slept on and retried."""
    asks = reply.status == HTTP_TOO_MANY_REQUESTS or reply.status >= 500
    return asks and reply.retry_after_s is not None


def send_with_retries(
    action: ApiCall | WatchOpen, max_retries: int = REST_MAX_RETRIES
) -> SubFlow[ApiReply]:
    """Send ``action`` as client-go's REST client does: sleep a 429/5xx's Retry-After and send it
    again, at most ``max_retries`` times; return the last reply. Each retry's latency is measured
    from the end of its wait (its own intended time)."""
    for _ in range(max_retries):
        reply = expect((yield action), ApiReply)
        if not server_asked_to_wait(reply):
            return reply
        assert reply.retry_after_s is not None
        wake_ns = reply.now_ns + round(reply.retry_after_s * NS_PER_S)
        expect((yield Sleep(until_ns=wake_ns)), Woke)
        action = replace(action, intended_ns=wake_ns)
    return expect((yield action), ApiReply)


def object_key(obj: JsonObj) -> str:
    """client-go's ``MetaNamespaceKeyFunc``: ``namespace/name``, or ``name`` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def status_code(status: JsonObj) -> int | None:
    """The ``code`` of a Status object (an ERROR event's object), if it has one."""
    code = status.get("code")
    return code if isinstance(code, int) else None


def reflect(
    op_list: str,
    op_watch: str,
    path: str,
    params: Mapping[str, str],
    config: ReflectorConfig,
    rng: random.Random,
    start_ns: int,
    state: ReflectorState | None = None,
) -> Flow:
    """A reflector on ``path`` (e.g. ``/api/v1/pods``) with extra query ``params`` (e.g. a
    ``fieldSelector``), recording LISTs under ``op_list`` and watches under ``op_watch``. Pass a
    ``state`` to read what it saw and its counts; the flow runs until the engine closes it."""
    reflector = _Reflector(
        op_list, op_watch, path, dict(params), config, rng, start_ns, state or ReflectorState()
    )
    return reflector.run()


_REWATCH: Final = "rewatch"
_BACK_OFF: Final = "back-off"  # back off, then watch again from the same resourceVersion
_RELIST: Final = "relist"  # ListAndWatch returns: back off, then list


@dataclass
class _Listed:
    items: list[JsonObj]
    resource_version: str


class _Reflector:
    def __init__(
        self,
        op_list: str,
        op_watch: str,
        path: str,
        params: dict[str, str],
        config: ReflectorConfig,
        rng: random.Random,
        start_ns: int,
        state: ReflectorState,
    ) -> None:
        self.op_list = op_list
        self.op_watch = op_watch
        self.path = path
        self.params = params
        self.config = config
        self.rng = rng
        self.state = state
        self.now_ns = start_ns
        self.backoff = ReflectorBackoff(config, rng, start_ns)

    def run(self) -> Flow:
        while True:  # wait.BackoffUntil(ListAndWatch, ..., sliding=true): until the engine stops
            if (yield from self._list()):
                yield from self._watch()
            yield from self._back_off()

    # -- time and requests ---------------------------------------------------------------------

    def _back_off(self) -> SubFlow[None]:
        wake_ns = self.now_ns + self.backoff.next_delay_ns(self.now_ns)
        self.now_ns = expect((yield Sleep(until_ns=wake_ns)), Woke).now_ns

    def _send(self, action: ApiCall | WatchOpen) -> SubFlow[ApiReply]:
        reply = yield from send_with_retries(action, self.config.rest_max_retries)
        self.now_ns = reply.now_ns
        return reply

    # -- list ----------------------------------------------------------------------------------

    def _relist_rv(self) -> str:
        """client-go ``relistResourceVersion``."""
        if self.state.rv_unavailable:
            return ""
        return self.state.resource_version or "0"

    def _list(self) -> SubFlow[bool]:
        """client-go ``Reflector.list``: True when the store was replaced."""
        st = self.state
        result = yield from self._paged_list(self._relist_rv())
        if isinstance(result, ApiReply) and result.status == HTTP_GONE:
            # isExpiredError on the LIST: retry at once as a consistent read.
            st.rv_unavailable = True
            result = yield from self._paged_list("")
        if isinstance(result, ApiReply):
            return False
        st.rv_unavailable = False
        st.objects = {object_key(o): _rv_of(o) for o in result.items}
        st.resource_version = result.resource_version
        st.synced = True
        return True

    def _page_limit(self, rv: str) -> int | None:
        """reflector.go ``list``: rv "" and "0" page (the cache ignores limit at 0); a relist
        at a real resourceVersion turns paging off so the watch cache can serve it."""
        if rv in ("", "0") or self.state.paginated:
            return self.config.page_size
        return None

    def _paged_list(self, rv: str) -> SubFlow[_Listed | ApiReply]:
        """``pager.ListWithAlloc``: the whole list, or the failing reply."""
        st = self.state
        st.lists += 1
        if st.synced:
            st.relists += 1
        if rv == "":
            st.consistent_lists += 1
        limit = self._page_limit(rv)
        first = dict(self.params)
        if rv:
            first["resourceVersion"] = rv
        if limit is not None:
            first["limit"] = str(limit)
        query = first
        listed = _Listed([], "")
        for page in range(MAX_LIST_PAGES):
            reply = yield from self._send(
                ApiCall(self.op_list, "GET", self.path, params=query, intended_ns=self.now_ns)
            )
            st.list_pages += 1
            if reply.status != 200 or reply.body is None:
                if reply.status == HTTP_GONE and page > 0:
                    return (yield from self._full_list(first))
                return reply
            meta = reply.body.get("metadata") or {}
            if page == 0:
                listed.resource_version = str(meta.get("resourceVersion", ""))
            listed.items.extend(reply.body.get("items") or [])
            token = meta.get("continue")
            if not token:
                st.paginated = st.paginated or (rv == "0" and page > 0)
                return listed
            # Continue pages carry no resourceVersion (the token holds it), same limit.
            query = {**self.params, "continue": str(token)}
            if limit is not None:
                query["limit"] = str(limit)
        return reply

    def _full_list(self, first: dict[str, str]) -> SubFlow[_Listed | ApiReply]:
        """pager.go: a continue token expired mid-list: one unpaged LIST at the requested rv."""
        query = {k: v for k, v in first.items() if k != "limit"}
        reply = yield from self._send(
            ApiCall(self.op_list, "GET", self.path, params=query, intended_ns=self.now_ns)
        )
        self.state.list_pages += 1
        if reply.status != 200 or reply.body is None:
            return reply
        meta = reply.body.get("metadata") or {}
        return _Listed(list(reply.body.get("items") or []), str(meta.get("resourceVersion", "")))

    # -- watch ---------------------------------------------------------------------------------

    def _watch(self) -> SubFlow[None]:
        """client-go ``Reflector.watch``: returns when ListAndWatch would."""
        while True:
            verdict = yield from self._watch_once()
            if verdict == _RELIST:
                return
            if verdict == _BACK_OFF:
                yield from self._back_off()

    def _watch_once(self) -> SubFlow[str]:
        st = self.state
        start_ns = self.now_ns
        timeout_s = int(self.config.min_watch_timeout_s * (self.rng.random() + 1.0))
        query = {
            **self.params,
            "resourceVersion": st.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        reply = yield from self._send(
            WatchOpen(self.op_watch, self.path, params=query, intended_ns=start_ns)
        )
        if reply.status != 200:
            st.watch_errors += 1
            # isWatchErrorRetriable: connection refused or 429 -> back off, watch again.
            if reply.status == HTTP_TOO_MANY_REQUESTS or reply.outcome is Outcome.CONN_ERROR:
                return _BACK_OFF
            return _RELIST
        st.watches += 1
        return (yield from self._consume(start_ns, start_ns + timeout_s * NS_PER_S))

    def _consume(self, start_ns: int, deadline_ns: int) -> SubFlow[str]:
        """client-go ``handleAnyWatch``: apply events until the stream ends."""
        st = self.state
        seen = 0
        while True:
            got = yield WatchNext(until_ns=deadline_ns)
            if isinstance(got, WatchEnd):
                self.now_ns = got.now_ns
                return (yield from self._ended(got, start_ns, seen))
            event = expect(got, WatchEvent)
            self.now_ns = event.now_ns
            if event.type == "ERROR":
                st.watch_errors += 1
                yield from self._close()
                if status_code(event.object) == HTTP_TOO_MANY_REQUESTS:
                    return _BACK_OFF
                return _RELIST  # 410 Expired/Gone and anything else: ListAndWatch returns
            self._apply(event)
            seen += 1

    def _ended(self, end: WatchEnd, start_ns: int, seen: int) -> SubFlow[str]:
        if end.reason == "deadline":
            # Our timeoutSeconds passed and the server kept the stream: end it as client-go's
            # watch would have been ended by the server, and watch again.
            yield from self._close()
            return _REWATCH
        if seen == 0 and end.now_ns - start_ns < self.config.short_watch_s * NS_PER_S:
            self.state.watch_errors += 1  # "very short watch": an error, ListAndWatch returns
            return _RELIST
        if end.reason != "closed":
            self.state.watch_errors += 1  # cut: client-go sees a (probable) EOF and rewatches
        return _REWATCH

    def _close(self) -> SubFlow[None]:
        self.now_ns = expect((yield WatchClose()), Woke).now_ns

    def _apply(self, event: WatchEvent) -> None:
        st = self.state
        st.events += 1
        rv = _rv_of(event.object)
        if event.type in ("ADDED", "MODIFIED"):
            st.objects[object_key(event.object)] = rv
        elif event.type == "DELETED":
            st.objects.pop(object_key(event.object), None)
        if rv:  # every event moves the resourceVersion on, BOOKMARK included
            st.resource_version = rv


def _rv_of(obj: JsonObj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
