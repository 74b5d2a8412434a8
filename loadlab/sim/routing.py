"""Turn a request line into what it asks of the API: verb, resource, namespace, name, subresource.

Follows kube-apiserver's RequestInfoResolver: ``/api/v1/...`` and ``/apis/<group>/<version>/...``,
``namespaces/<ns>/<resource>[/<name>[/<subresource>]]``, ``?watch=1`` and the legacy
``/watch/`` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loadlab.sim.objects import RESOURCE_TYPES, ResourceType

_BY_PATH: dict[tuple[str, str, str], ResourceType] = {
    (rt.group, rt.version, rt.plural): rt for rt in RESOURCE_TYPES
}
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch"}


class RouteError(Exception):
    """The path names an API but nothing served there (404) or a verb not allowed (405)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class RequestInfo:
    verb: str
    """get, list, watch, create, update, patch, delete."""
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass(frozen=True)
class DiscoveryPath:
    """``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>`` or ``/apis/<group>/<version>``."""

    group: str | None
    """None for /api and /apis; "" for the core group (/api/v1)."""
    version: str | None
    legacy: bool
    """True for /api..., False for /apis..."""


def resolve(method: str, path: str, query: Mapping[str, str]) -> RequestInfo | DiscoveryPath | None:
    """What ``path`` asks for; None when it is not an API path at all (health, /version...)."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    legacy = parts[0] == "api"
    if legacy:
        if len(parts) == 1:
            return DiscoveryPath(None, None, legacy=True)
        group, version, rest = "", parts[1], parts[2:]
        if not rest:
            return DiscoveryPath("", version, legacy=True)
    else:
        if len(parts) == 1:
            return DiscoveryPath(None, None, legacy=False)
        if len(parts) == 2:
            return DiscoveryPath(parts[1], None, legacy=False)
        group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            return DiscoveryPath(group, version, legacy=False)
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace: str | None = None
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest or len(rest) > 3:
        raise RouteError(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )
    rtype = _BY_PATH.get((group, version, rest[0]))
    if rtype is None:
        raise RouteError(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and (subresource != "status" or not rtype.has_status):
        raise RouteError(404, "NotFound", f"{rtype.plural}/{subresource} is not served")
    if not rtype.namespaced:
        namespace = None
    if watch or query.get("watch") in ("1", "true", "True"):
        if method != "GET":
            raise RouteError(405, "MethodNotAllowed", "watch needs GET")
        verb = "watch"
    elif method in ("GET", "HEAD"):
        verb = "get" if name else "list"
    elif method == "DELETE":
        if not name:
            raise RouteError(405, "MethodNotAllowed", "deletecollection is not supported")
        verb = "delete"
    elif method in _VERBS_BY_METHOD:
        verb = _VERBS_BY_METHOD[method]
        if verb != "create" and not name:
            raise RouteError(405, "MethodNotAllowed", f"{method} needs a name")
        if verb == "create" and name:
            raise RouteError(405, "MethodNotAllowed", "POST goes to the collection")
    else:
        raise RouteError(405, "MethodNotAllowed", f"method {method} is not allowed")
    return RequestInfo(verb, rtype, namespace, name, subresource)
