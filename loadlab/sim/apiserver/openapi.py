"""/openapi/v2 and /openapi/v3: the API described as kube-apiserver describes it, for kubectl.

kubectl 1.32 needs these with default flags: ``create``/``apply``/``edit`` ask /openapi/v3 whether
the PATCH operation of the object's kind takes the ``fieldValidation`` query parameter
(cli-runtime query_param_verifier_v3.go) and, when it does, leave validation to the server
(``fieldValidation=Strict``); ``explain`` and apply's strategic-merge patch read the kind's schema
from the group-version document, found by its ``x-kubernetes-group-version-kind``.

What is faithful (kube-openapi pkg/handler3/handler.go): the index
``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<SHA-512, hex>"}}}``; a
group-version document answered with ``ETag``, ``Vary: Accept``, and, when the ``hash`` query
matches, ``Cache-Control: public, immutable`` with an ``Expires`` a year on; a stale hash is
redirected (301) to the current one; ``If-None-Match`` gets 304. Simplifications, on purpose:
JSON only, so a client that accepts nothing but protobuf (kubectl's /openapi/v2 request) gets
406, as kube-openapi answers an Accept it cannot serve; only the kinds, verbs and query
parameters the sim serves are described (no watch paths, no deletecollection).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
from urllib.parse import urlencode

from aiohttp import web

from loadlab.sim.apiserver.media import MERGE_PATCH, STRATEGIC_PATCH
from loadlab.sim.k8s.objects import KUBE_VERSION, RESOURCE_TYPES, JsonObj, ResourceType
from loadlab.sim.k8s.schemas import META, kind_schema_name, schemas_for

V2_PATH = "/openapi/v2"
V3_PATH = "/openapi/v3"
_V3_REFS = "#/components/schemas/"
_V2_REFS = "#/definitions/"
_JSON_TYPES = frozenset({"*/*", "application/*", "application/json"})
_PATCH_TYPES = (MERGE_PATCH, STRATEGIC_PATCH)
# Query parameters the sim reads, as apimachinery's ListOptions and CreateOptions name them.
_LIST_PARAMS = (
    ("allowWatchBookmarks", "boolean"),
    ("continue", "string"),
    ("fieldSelector", "string"),
    ("labelSelector", "string"),
    ("limit", "integer"),
    ("resourceVersion", "string"),
    ("resourceVersionMatch", "string"),
    ("timeoutSeconds", "integer"),
    ("watch", "boolean"),
)
_FIELD_VALIDATION = (
    "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown fields: Ignore, Warn (the default) or Strict."
)


def group_version_key(group: str, version: str) -> str:
    """The index key of a group-version: ``api/v1``, ``apis/coordination.k8s.io/v1``."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _served() -> dict[str, list[ResourceType]]:
    served: dict[str, list[ResourceType]] = {}
    for rt in RESOURCE_TYPES:
        served.setdefault(group_version_key(rt.group, rt.version), []).append(rt)
    return served


def _param(name: str, where: str, kind: str, v3: bool, description: str = "") -> JsonObj:
    param: JsonObj = {"name": name, "in": where}
    if description:
        param["description"] = description
    if where == "path":
        param["required"] = True
    if v3:
        param["schema"] = {"type": kind, "uniqueItems": True}
    else:
        param.update(type=kind, uniqueItems=True)
    return param


def _body(schema: str, types: tuple[str, ...], v3: bool) -> tuple[str, JsonObj]:
    ref = {"$ref": f"{_V3_REFS if v3 else _V2_REFS}{schema}"}
    if v3:
        return "requestBody", {"content": {t: {"schema": ref} for t in types}, "required": True}
    return "parameters", {"name": "body", "in": "body", "required": True, "schema": ref}


def _operation(rt: ResourceType, action: str, op_id: str, v3: bool) -> JsonObj:
    """One operation; ``action`` is kube-apiserver's x-kubernetes-action (get, list, post, put,
    patch, delete)."""
    listing = action == "list"
    result = f"{kind_schema_name(rt)}List" if listing else kind_schema_name(rt)
    if action == "delete":
        result = f"{META}.Status" if rt.plural == "namespaces" else result
    ref = {"$ref": f"{_V3_REFS if v3 else _V2_REFS}{result}"}
    ok: JsonObj = {"description": "OK"}
    if v3:
        ok["content"] = {"application/json": {"schema": ref}}
    else:
        ok["schema"] = ref
    op: JsonObj = {
        "operationId": op_id,
        "tags": [group_version_key(rt.group, rt.version).replace("/", "_")],
        "parameters": [],
        "responses": {"200": ok, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "kind": rt.kind,
            "version": rt.version,
        },
    }
    if listing:
        op["parameters"] = [_param(n, "query", k, v3) for n, k in _LIST_PARAMS]
    if action in ("post", "put", "patch"):
        op["parameters"].append(_param("fieldValidation", "query", "string", v3, _FIELD_VALIDATION))
        schema = f"{META}.Patch" if action == "patch" else kind_schema_name(rt)
        types = _PATCH_TYPES if action == "patch" else ("application/json",)
        key, body = _body(schema, types, v3)
        if key == "requestBody":
            op["requestBody"] = body
        else:
            op["parameters"].insert(0, body)
    if action == "post":
        op["responses"]["201"] = op["responses"]["200"]
    return op


def _paths(rt: ResourceType, v3: bool) -> dict[str, JsonObj]:
    """The paths of one resource, as kube-apiserver's installer names them and their ops."""
    base = f"/{group_version_key(rt.group, rt.version)}"
    scope = "Namespaced" if rt.namespaced else ""
    words = "".join(w.capitalize() for w in (rt.group.split(".")[0] or "core", rt.version))
    name = f"{words}{scope}{rt.kind}"
    collection = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    )
    ns = [_param("namespace", "path", "string", v3)] if rt.namespaced else []
    named = [_param("name", "path", "string", v3), *ns]
    paths: dict[str, JsonObj] = {
        collection: {
            "get": _operation(rt, "list", f"list{name}", v3),
            "post": _operation(rt, "post", f"create{name}", v3),
            "parameters": ns,
        },
        f"{collection}/{{name}}": {
            "get": _operation(rt, "get", f"read{name}", v3),
            "put": _operation(rt, "put", f"replace{name}", v3),
            "patch": _operation(rt, "patch", f"patch{name}", v3),
            "delete": _operation(rt, "delete", f"delete{name}", v3),
            "parameters": named,
        },
    }
    if rt.namespaced:
        words_all = f"{words}{rt.kind}ForAllNamespaces"
        paths[f"{base}/{rt.plural}"] = {"get": _operation(rt, "list", f"list{words_all}", v3)}
    if rt.has_status:
        paths[f"{collection}/{{name}}/status"] = {
            "get": _operation(rt, "get", f"read{name}Status", v3),
            "put": _operation(rt, "put", f"replace{name}Status", v3),
            "patch": _operation(rt, "patch", f"patch{name}Status", v3),
            "parameters": named,
        }
    return paths


def _info() -> JsonObj:
    return {"title": "Kubernetes", "version": KUBE_VERSION}


@functools.cache
def v3_documents() -> dict[str, bytes]:
    """Every group-version document, encoded, by index key (``api/v1``)."""
    docs = {}
    for key, rtypes in _served().items():
        doc: JsonObj = {
            "openapi": "3.0.0",
            "info": _info(),
            "paths": {p: v for rt in rtypes for p, v in _paths(rt, v3=True).items()},
            "components": {
                "schemas": schemas_for(rtypes, _V3_REFS, v3=True),
                "securitySchemes": {
                    "BearerToken": {"type": "apiKey", "in": "header", "name": "authorization"}
                },
            },
        }
        docs[key] = json.dumps(doc, separators=(",", ":")).encode()
    return docs


def etag(body: bytes) -> str:
    """kube-openapi handler3 computeETag: SHA-512, upper-case hex."""
    return hashlib.sha512(body).hexdigest().upper()


def server_relative_url(key: str, body: bytes) -> str:
    return f"{V3_PATH}/{key}?{urlencode({'hash': etag(body)})}"


@functools.cache
def v3_index() -> bytes:
    paths = {
        key: {"serverRelativeURL": server_relative_url(key, body)}
        for key, body in (v3_documents().items())
    }
    return json.dumps({"paths": paths}, separators=(",", ":")).encode()


@functools.cache
def v2_document() -> bytes:
    paths = {p: v for rt in RESOURCE_TYPES for p, v in _paths(rt, v3=False).items()}
    doc: JsonObj = {
        "swagger": "2.0",
        "info": _info(),
        "paths": paths,
        "definitions": schemas_for(list(RESOURCE_TYPES), _V2_REFS, v3=False),
        "securityDefinitions": {
            "BearerToken": {"type": "apiKey", "in": "header", "name": "authorization"}
        },
        "security": [{"BearerToken": []}],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _accepts_json(accept: str) -> bool:
    """Whether any Accept clause names JSON. Not ``media.negotiate``: kube-openapi serves the
    first clause whose type matches, its q value unread (goautoneg.ParseAccept only sorts)."""
    if not accept.strip():
        return True
    for clause in accept.split(","):
        media = clause.split(";")[0].strip().lower()
        if media in _JSON_TYPES:
            return True
    return False


def is_openapi_path(path: str) -> bool:
    return path in (V2_PATH, V3_PATH) or path.startswith(f"{V3_PATH}/")


def respond(request: web.BaseRequest, started: datetime.datetime) -> web.Response:
    """The answer to a GET of an /openapi path (``is_openapi_path``); ``started`` is when the
    documents were made (their Last-Modified)."""
    path = request.path.rstrip("/")
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, headers={"Allow": "GET, HEAD"})
    if path == V3_PATH:
        return _document(request, v3_index(), started)
    headers = {"Vary": "Accept"}
    if not _accepts_json(request.headers.get("Accept", "")):
        return web.Response(status=406, headers=headers)
    if path == V2_PATH:
        return _document(request, v2_document(), started, headers)
    key = path[len(V3_PATH) + 1 :]
    body = v3_documents().get(key)
    if body is None:
        return web.Response(status=404, text="404 page not found\n", headers=headers)
    wanted = request.query.get("hash")
    if wanted:
        if wanted != etag(body):
            location = server_relative_url(key, body)
            return web.Response(status=301, headers={**headers, "Location": location})
        # handler3: time.Now().AddDate(1, 0, 0) in Go's RFC1123 form, which names the zone UTC
        # (Last-Modified, written by net/http, says GMT).
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
        headers["Cache-Control"] = "public, immutable"
        headers["Expires"] = expires.strftime("%a, %d %b %Y %H:%M:%S UTC")
    return _document(request, body, started, headers)


def _document(
    request: web.BaseRequest,
    body: bytes,
    started: datetime.datetime,
    headers: dict[str, str] | None = None,
) -> web.Response:
    tag = f'"{etag(body)}"'
    out = {
        **(headers or {}),
        "ETag": tag,
        "Last-Modified": started.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    if tag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=out)
    return web.Response(body=body, content_type="application/json", headers=out)
