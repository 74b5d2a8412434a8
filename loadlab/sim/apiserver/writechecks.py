"""What the sim API server checks of a write before it reaches the store: the object's identity
against the URL, its decoding and values in the order kube-apiserver's handlers check them, the
field manager, DELETE preconditions and ``dryRun``. Each refusal is the real Status (400, 409, 422).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from loadlab.sim.apiserver.media import read_object
from loadlab.sim.apiserver.routing import RequestInfo
from loadlab.sim.k8s.managedfields import field_manager
from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.k8s.preconditions import preconditions_of
from loadlab.sim.k8s.validation import (
    FieldError,
    bad_request,
    check_decodes,
    check_patch_result,
    invalid,
    validate_object,
)

OPTIONS_KIND = {
    "create": "CreateOptions",
    "update": "UpdateOptions",
    "patch": "PatchOptions",
    "delete": "DeleteOptions",
}
DRY_RUN_ALL = "All"


def check_identity(info: RequestInfo, meta: Mapping[str, object]) -> None:
    """handlers/rest.go checkName and EnsureObjectNamespaceMatchesRequestNamespace: 400s."""
    namespace = meta.get("namespace")
    if info.namespace is not None and namespace and namespace != info.namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if info.name is not None and meta.get("name") != info.name:
        raise bad_request(
            f"the name of the object ({meta.get('name') or ''}) does not match the name on the "
            f"URL ({info.name})"
        )


def write_field_manager(request: web.BaseRequest, info: RequestInfo, *, apply: bool) -> str:
    """The write's field manager (``k8s.apply.field_manager``): 422 for bad options."""
    return field_manager(
        request.query,
        request.headers.get("User-Agent"),
        options_kind=OPTIONS_KIND[info.verb],
        apply=apply,
    )


def checked_apply(info: RequestInfo, obj: JsonObj, *, creating: bool) -> JsonObj:
    """An applied object refused as a patched one is (decode 422, identity 400, values 422); one
    that creates loses the system fields a client sent (rest.WipeObjectMetaSystemFields) and
    takes the URL's namespace."""
    check_patch_result(info.rtype, obj)
    meta = obj.setdefault("metadata", {})
    check_identity(info, meta)
    if creating:
        for system in ("uid", "creationTimestamp", "resourceVersion", "deletionTimestamp"):
            meta.pop(system, None)
        if info.namespace is not None:
            meta["namespace"] = info.namespace
    if info.subresource != "status":
        validate_object(info.rtype, obj, creating=creating)
    return obj


def check_body(info: RequestInfo, body: JsonObj) -> None:
    """Create and update: decode (400), then identity (400), then values (422), as
    handlers/create.go and update.go order them. The namespace on the URL fills in the body's;
    a client's creationTimestamp is dropped (rest.BeforeCreate sets the server's own)."""
    check_decodes(info.rtype, body)
    meta = body.setdefault("metadata", {})
    check_identity(info, meta)
    if info.namespace is not None:
        meta["namespace"] = info.namespace
    creating = info.verb == "create"
    if creating:
        meta.pop("creationTimestamp", None)
    if info.subresource != "status":  # a status write keeps the stored metadata
        validate_object(info.rtype, body, creating=creating)


def delete_preconditions(request: web.BaseRequest, raw: bytes) -> dict[str, str]:
    """A DELETE's preconditions, from its DeleteOptions body (none without a body)."""
    if not raw.strip():
        return {}
    return preconditions_of(read_object(raw, request.headers.get("Content-Type")))


def is_dry_run(request: web.BaseRequest, info: RequestInfo, raw: bytes) -> bool:
    """Whether the write is a dry run (``dryRun=All``). A DELETE takes its options from the
    body when it has one, else from the query (handlers/delete.go); any value but All is 422,
    as metainternalversion validation ValidateDryRun words it."""
    values: list[str] = list(request.query.getall("dryRun", []))
    if info.verb == "delete" and raw.strip():
        options = read_object(raw, request.headers.get("Content-Type"))
        given = options.get("dryRun") or []
        if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
            raise bad_request(
                "json: cannot unmarshal into Go struct field DeleteOptions.dryRun of type []string"
            )
        values = given
    if all(v == DRY_RUN_ALL for v in values):
        return bool(values)
    shown = "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
    cause = FieldError(
        "FieldValueNotSupported",
        "dryRun",
        f'Unsupported value: {shown}: supported values: "{DRY_RUN_ALL}"',
    )
    raise invalid("meta.k8s.io", OPTIONS_KIND[info.verb], "", [cause])
