"""The resource verbs of the sim API server: GET, LIST, CREATE, UPDATE, PATCH, DELETE, WATCH.

Each verb asks the overload model for a work estimate from counts the store knows cheaply, is
admitted (or gets 429), awaits its service time, then does the store operation and answers in
real Kubernetes JSON (a Table when kubectl asks for one, a Status on errors). What a client sends
is checked first (``validation``: the body, its types, its values; ``routing.list_options``: the
query), so nothing the store holds can break a later read.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from aiohttp import web

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.apiserver.consistency import (
    list_version,
    refuse_too_large,
    send_initial_events,
    version_of,
    wait_until_fresh,
)
from loadlab.sim.apiserver.media import (
    APPLY_PATCH,
    JSON_PATCH,
    MEDIA_KEY,
    MERGE_PATCH,
    PROTOBUF,
    STRATEGIC_PATCH,
    negotiate,
    not_acceptable,
    read_apply_body,
    read_object,
    rendered,
)
from loadlab.sim.apiserver.reaper import NamespaceReaper
from loadlab.sim.apiserver.routing import RequestInfo, check_resource_version, list_options
from loadlab.sim.apiserver.tables import table, wants_table
from loadlab.sim.apiserver.watchstream import ProtobufFrames, watch_stream
from loadlab.sim.apiserver.writechecks import (
    check_body,
    check_identity,
    checked_apply,
    delete_preconditions,
    is_dry_run,
    write_field_manager,
)
from loadlab.sim.config import ApiServerConfig
from loadlab.sim.k8s.apply import apply_patch, track_update
from loadlab.sim.k8s.managedfields import force_option
from loadlab.sim.k8s.objects import NAMESPACES, SERVICES, JsonObj, now_timestamp
from loadlab.sim.k8s.patches import json_patch, merge_patch
from loadlab.sim.k8s.preconditions import check_preconditions
from loadlab.sim.k8s.protobuf import encode_object
from loadlab.sim.k8s.schemas import field_validation
from loadlab.sim.k8s.strategic import strategic_merge
from loadlab.sim.k8s.strategies import cluster_ips_in_use, prepare_create, prepare_update
from loadlab.sim.k8s.validation import (
    ApiError,
    check_patch_result,
    decode_body,
    validate_object,
)
from loadlab.sim.overload.cost import RequestAttributes, count_list_objects
from loadlab.sim.overload.model import OverloadModel, WorkEstimate
from loadlab.sim.storage.selection import FieldSelector, LabelSelector, SelectorError
from loadlab.sim.storage.store import (
    ContinueExpired,
    Expired,
    Invalid,
    NotFound,
    Store,
    StoreError,
    TooLargeResourceVersion,
)
from loadlab.sim.storage.watch import Watcher, encode_json

# handlers/patch.go: the patch types, in the order its 415 message lists them.
_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)


def status_obj(code: int, reason: str, message: str, details: JsonObj | None = None) -> JsonObj:
    body: JsonObj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(
    code: int, reason: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    details = None
    if headers and "Retry-After" in headers:
        details = {"retryAfterSeconds": int(headers["Retry-After"])}
    return web.Response(
        status=code,
        body=encode_json(status_obj(code, reason, message, details)),
        content_type="application/json",
        headers=headers,
    )


def error_response(exc: ApiError) -> web.Response:
    """The Status of a refused request (details such as ``causes`` included)."""
    return web.Response(
        status=exc.code,
        body=encode_json(status_obj(exc.code, exc.reason, str(exc), exc.details)),
        content_type="application/json",
    )


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


class ResourceVerbs:
    """Serves one resource request (everything under /api/v1 and /apis/<g>/<v>)."""

    def __init__(
        self, store: Store, model: OverloadModel, config: ApiServerConfig, clock: Clock
    ) -> None:
        self._store = store
        self._model = model
        self._config = config
        self._clock = clock
        self._rng = random.Random(config.seed)
        self.reaper = NamespaceReaper(store, clock, config.namespace_finalize_s)
        """Purges deleted namespaces; ``close()`` it when the server stops."""
        self._frames = ProtobufFrames()

    async def unary(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        """Every verb but watch. Store errors become Status objects; answers (Status included)
        take the media type the client's Accept prefers (``media.negotiate``)."""
        media = negotiate(request.headers.get("Accept"))
        if media is None:
            return error_response(not_acceptable())
        request[MEDIA_KEY] = media
        return rendered(await self._unary(request, info, attrs), media)

    async def _unary(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        try:
            if info.verb == "list":
                return await self._list(request, info, attrs)
            if info.verb == "get":
                return await self._get(request, info, attrs)
            return await self._write(request, info, attrs)
        except ApiError as exc:
            return error_response(exc)
        except StoreError as exc:
            return error_response(ApiError(exc.code, exc.reason, str(exc), exc.details))
        except SelectorError as exc:
            return status_response(400, "BadRequest", str(exc))

    async def _get(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        assert info.name is not None
        check_resource_version(request.query.get("resourceVersion", ""))
        at_least = version_of(request.query.get("resourceVersion", ""))
        from_cache = request.query.get("resourceVersion", "") != ""
        est = self._model.estimate(
            attrs,
            objects_scanned=1,
            response_bytes=self._store.approx_object_bytes(info.rtype),
            from_cache=from_cache,
            watchers=0,
        )
        async with self._model.admit(attrs, est):
            await self._model.serve(est)
            if at_least is not None:  # cacher Get: WaitUntilFreshAndGet
                try:
                    await wait_until_fresh(self._store, self._clock, at_least)
                except TooLargeResourceVersion as exc:
                    return _read_refusal(exc)
            obj = self._store.get(info.rtype, info.namespace or "", info.name)
            if wants_table(request.headers.get("Accept", "")):
                tbl = table(
                    info.rtype,
                    [obj],
                    resource_version=obj["metadata"]["resourceVersion"],
                    include_object=request.query.get("includeObject", "Metadata"),
                )
                return json_response(encode_json(tbl))
            return json_response(encode_json(obj))

    async def _list(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        q = request.query
        opts = list_options(q, watch=False)
        rv, token, limit = opts.resource_version, opts.continue_token, opts.limit
        labels = LabelSelector.parse(q.get("labelSelector"))
        fields = FieldSelector.parse(q.get("fieldSelector")).for_kind(info.rtype.kind)
        version = list_version(opts)
        # docs/control-plane-model.md: rv=0 -> cache; rv="" -> etcd (consistent); continue -> etcd.
        from_cache = rv != "" and token is None and q.get("resourceVersionMatch") != "Exact"
        scanned, returned = self._store.estimate_list(
            info.rtype, info.namespace, fields=fields, limit=limit
        )
        est = self._model.estimate(
            attrs,
            objects_scanned=count_list_objects(
                stored=scanned,
                limit=limit or None,
                selector=not (labels.empty and fields.empty),
                from_cache=from_cache,
            ),
            response_bytes=returned * self._store.approx_object_bytes(info.rtype),
            from_cache=from_cache,
            watchers=0,
        )
        async with self._model.admit(attrs, est):
            await self._model.serve(est)
            # Scanned only once admitted: a rejected LIST costs the sim nothing, as in a real
            # API server, so a flood of 429s cannot make the sim's CPU the knee.
            try:
                if version.at_least is not None and version.waits:
                    await wait_until_fresh(self._store, self._clock, version.at_least)
                elif version.at_least is not None:
                    refuse_too_large(self._store, version.at_least)
                result = self._store.list_objects(
                    info.rtype,
                    info.namespace,
                    labels=labels,
                    fields=fields,
                    limit=limit,
                    continue_token=token,
                    resource_version=version.exact,
                )
            except (ContinueExpired, TooLargeResourceVersion) as exc:
                return _read_refusal(exc)
            if wants_table(request.headers.get("Accept", "")):
                tbl = table(
                    info.rtype,
                    result.items,
                    resource_version=str(result.resource_version),
                    continue_token=result.continue_token,
                    include_object=q.get("includeObject", "Metadata"),
                )
                return json_response(encode_json(tbl))
            meta: JsonObj = {"resourceVersion": str(result.resource_version)}
            if result.continue_token:
                meta["continue"] = result.continue_token
                if result.remaining is not None:
                    meta["remainingItemCount"] = result.remaining
            head = {
                "kind": info.rtype.list_kind,
                "apiVersion": info.rtype.api_version,
                "metadata": meta,
            }
            if request.get(MEDIA_KEY) == PROTOBUF:  # from the objects: no JSON to re-parse
                listed = encode_object({**head, "items": result.items})
                return web.Response(body=listed, content_type=PROTOBUF)
            prefix = encode_json(head)[:-1] + b',"items":['
            encoded = self._store.encoded
            body = prefix + b",".join(encoded(info.rtype, o) for o in result.items) + b"]}"
            return json_response(body)

    async def _write(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        body: JsonObj = {}
        ctype = request.content_type
        if info.verb == "patch" and ctype not in _PATCH_TYPES:
            accepted = ", ".join(_PATCH_TYPES)
            return status_response(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                f"include: {accepted}",
            )
        if info.verb == "patch" and ctype == APPLY_PATCH:
            return await self._apply(request, info, attrs)
        raw = await _read_body(request)
        if isinstance(raw, web.Response):
            return raw
        dry_run = is_dry_run(request, info, raw)
        manager = "" if info.verb == "delete" else write_field_manager(request, info, apply=False)
        directive = request.query.get("fieldValidation")
        warnings: list[str] = []
        if info.verb == "patch":
            old = self._store.get(info.rtype, info.namespace or "", info.name or "")
            # Refused before admission, as a bad body is.
            patched = self._patched(info, ctype, raw, old)
            warnings = field_validation(info.rtype, patched, directive, patch=True)
        elif info.verb != "delete":
            body = read_object(raw, request.headers.get("Content-Type"))
            check_body(info, body)
            warnings = field_validation(info.rtype, body, directive)
        est = self._write_estimate(attrs, info)
        async with self._model.admit(attrs, est):
            await self._model.serve(est)
            store, rt, ns, name = self._store, info.rtype, info.namespace or "", info.name or ""
            now = now_timestamp()  # of the managedFields entry the write records
            if info.verb == "create":
                body = track_update(None, body, rt, manager=manager, now=now)
                body = prepare_create(rt, body, self._cluster_ips() if rt is SERVICES else ())
                created = store.create(rt, body, dry_run=dry_run)
                return _warned(json_response(encode_json(created), status=201), warnings)
            if info.verb == "update":
                live, sub = store.get(rt, ns, name), info.subresource
                body = track_update(live, body, rt, manager=manager, now=now, subresource=sub)
                body = prepare_update(rt, body, live, subresource=sub)
                obj = store.update(rt, body, subresource=info.subresource, dry_run=dry_run)
            elif info.verb == "patch":
                obj = store.patch(
                    rt,
                    ns,
                    name,
                    lambda current: track_update(
                        current,
                        self._patched(info, ctype, raw, current),
                        rt,
                        manager=manager,
                        now=now,
                        subresource=info.subresource,
                    ),
                    subresource=info.subresource,
                    dry_run=dry_run,
                )
            else:
                check_preconditions(rt, store.get(rt, ns, name), delete_preconditions(request, raw))
                obj = store.delete(rt, ns, name, dry_run=dry_run)
                if rt is NAMESPACES and not dry_run:
                    self.reaper.schedule(name)
            return _warned(json_response(encode_json(obj)), warnings)

    def _patched(self, info: RequestInfo, ctype: str, raw: bytes, old: JsonObj) -> JsonObj:
        """``old`` with the patch applied, refused (400/422/500) as handlers/patch.go refuses
        it when the patch does not apply or its result would not decode or validate."""
        if ctype == JSON_PATCH:
            patched = json_patch(old, raw)
        elif ctype == STRATEGIC_PATCH:
            patched = strategic_merge(old, decode_body(raw), info.rtype)
        else:
            patched = merge_patch(old, decode_body(raw))
        check_patch_result(info.rtype, patched)
        check_identity(info, patched.get("metadata") or {})
        if info.subresource != "status":  # a status write keeps the stored metadata
            validate_object(info.rtype, patched, creating=False)
        return prepare_update(info.rtype, patched, old, subresource=info.subresource)

    def _cluster_ips(self) -> set[str]:
        """The ClusterIPs in use, which a new Service's may not be (the allocator's bitmap)."""
        return cluster_ips_in_use(self._store.list_objects(SERVICES, None).items)

    async def _apply(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        """Server-side apply (``k8s.apply``): the configuration merged into the object, or the
        object created from it when there is none (201), as handlers/patch.go's applyPatcher.
        Options and body are refused before admission; conflicts after, as the merge needs the
        stored object."""
        raw = await _read_body(request)
        if isinstance(raw, web.Response):
            return raw
        manager = write_field_manager(request, info, apply=True)
        force = force_option(request.query)
        dry_run = is_dry_run(request, info, raw)
        config = read_apply_body(raw)
        est = self._write_estimate(attrs, info)
        async with self._model.admit(attrs, est):
            await self._model.serve(est)
            store, rt, ns, name = self._store, info.rtype, info.namespace or "", info.name or ""
            now = now_timestamp()

            def applied(current: JsonObj | None) -> JsonObj:
                obj = apply_patch(
                    current,
                    config,
                    rt,
                    manager=manager,
                    force=force,
                    now=now,
                    subresource=info.subresource,
                )
                obj = checked_apply(info, obj, creating=current is None)
                if current is None:  # then the registry's strategy, as for any create or update
                    return prepare_create(rt, obj, self._cluster_ips() if rt is SERVICES else ())
                return prepare_update(rt, obj, current, subresource=info.subresource)

            try:
                store.get(rt, ns, name)
            except NotFound:
                if info.subresource:
                    raise
                created = store.create(rt, applied(None), dry_run=dry_run)
                return json_response(encode_json(created), status=201)
            obj = store.patch(rt, ns, name, applied, subresource=info.subresource, dry_run=dry_run)
            return json_response(encode_json(obj))

    # -- watch -------------------------------------------------------------------------------

    def _write_estimate(self, attrs: RequestAttributes, info: RequestInfo) -> WorkEstimate:
        """What one object's write costs the model: one object touched (etcd, not the cache),
        its size sent back, and every watcher of its kind told."""
        return self._model.estimate(
            attrs,
            objects_scanned=1,
            response_bytes=self._store.approx_object_bytes(info.rtype),
            from_cache=False,
            watchers=self._store.watcher_count(info.rtype),
        )

    async def watch(
        self, request: web.BaseRequest, info: RequestInfo, attrs: RequestAttributes
    ) -> web.StreamResponse:
        """Admit (a watch holds its seat only while initialising), subscribe, then stream in the
        format the client's Accept asks for (``watchstream``); a refusal before the stream
        starts is a Status in that format too."""
        q = request.query
        try:
            stream = watch_stream(
                request.headers.get("Accept"),
                info.rtype,
                self._frames,
                include_object=q.get("includeObject", "Metadata"),
            )
        except ApiError as exc:
            return error_response(exc)
        try:
            opts = list_options(q, watch=True)
            initial = send_initial_events(q, opts)
            labels = LabelSelector.parse(q.get("labelSelector"))
            fields = FieldSelector.parse(q.get("fieldSelector")).for_kind(info.rtype.kind)
        except ApiError as exc:
            return rendered(error_response(exc), stream.media)
        except SelectorError as exc:
            return rendered(status_response(400, "BadRequest", str(exc)), stream.media)
        est = self._model.estimate(
            attrs,
            objects_scanned=0,
            response_bytes=0,
            from_cache=True,
            watchers=0,
        )
        watcher: Watcher | None = None
        error: JsonObj | None = None
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        at_least = version_of(opts.resource_version)
        async with self._model.admit(attrs, est):
            await self._model.serve(est)
            try:
                if initial and at_least is not None:  # cacher: waitUntilFreshAndBlock
                    await wait_until_fresh(self._store, self._clock, at_least)
                watcher = self._store.watch(
                    info.rtype,
                    info.namespace,
                    labels=labels,
                    fields=fields,
                    resource_version=opts.resource_version,
                    send_initial_events=initial,
                    initial_events_end=bool(initial) and bookmarks,
                )
            except (Expired, TooLargeResourceVersion) as exc:
                error = status_obj(exc.code, exc.reason, str(exc), exc.details)
            except Invalid as exc:
                return rendered(status_response(400, "BadRequest", str(exc)), stream.media)
        resp = await stream.open(request)
        if watcher is None:
            # A too-old resourceVersion (410 Expired), or a sendInitialEvents watch whose version
            # never came (504): one ERROR event, then the end, as the cacher's errWatcher.
            assert error is not None
            await resp.write(stream.error(error))
            await resp.write_eof()
            return resp
        self._arm(watcher, opts.timeout_s, bookmarks)
        try:
            await stream.send(resp, watcher)
        except (ConnectionError, RuntimeError):
            return resp  # the client went away
        finally:
            self._store.unwatch(watcher)
        await resp.write_eof()
        return resp

    def _arm(self, watcher: Watcher, timeout_s: int | None, bookmarks: bool) -> None:
        now_ns = self._clock.now_ns()
        if not timeout_s:
            # docs/control-plane-model.md: watches end at random in [min timeout, 2x); so does
            # timeoutSeconds=0 (handlers/get.go: a zero timeout takes the default).
            low = self._config.min_request_timeout_s
            wait_s = self._rng.uniform(low, 2 * low)
        else:
            wait_s = max(timeout_s, 0)  # a negative timeout ends the watch at once
        watcher.deadline_ns = now_ns + int(wait_s * NS_PER_S)
        if bookmarks:
            watcher.bookmark_every_ns = int(self._config.bookmark_interval_s * NS_PER_S)
            watcher.next_bookmark_ns = now_ns + watcher.bookmark_every_ns


def _read_refusal(exc: ContinueExpired | TooLargeResourceVersion) -> web.Response:
    """The Status of a read refused for its version: an expired continue token's carries a
    token that resumes at the latest version in its ListMeta (etcd3 errors.go), a too-large
    version's a Retry-After header when it has one (responsewriters.ErrorNegotiated)."""
    body = status_obj(exc.code, exc.reason, str(exc), exc.details)
    headers: dict[str, str] = {}
    if isinstance(exc, ContinueExpired):
        body["metadata"] = {"continue": exc.continue_token}
    elif exc.retry_after_s > 0:
        headers["Retry-After"] = str(exc.retry_after_s)
    return web.Response(
        status=exc.code, body=encode_json(body), content_type="application/json", headers=headers
    )


def _warned(response: web.Response, warnings: list[str]) -> web.Response:
    """``Warning`` headers, as kube-apiserver sends field-validation warnings (RFC 7234 form)."""
    for warning in warnings:
        response.headers.add("Warning", warning)
    return response


async def _read_body(request: web.BaseRequest) -> bytes | web.Response:
    """The body, or 413 as a Status past aiohttp's client_max_size (kube-apiserver answers 413
    RequestEntityTooLarge past its own 3 MiB, handlers/rest.go limitedReadBody)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        return status_response(
            413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"
        )
