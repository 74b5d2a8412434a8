"""Turn a request line into what it asks of the API: verb, resource, namespace, name, subresource.

Follows kube-apiserver's RequestInfoResolver: ``/api/v1/...`` and ``/apis/<group>/<version>/...``,
``namespaces/<ns>/<resource>[/<name>[/<subresource>]]``, ``?watch=1`` and the legacy
``/watch/`` prefix; and the query of a LIST or WATCH, checked as metav1.ListOptions is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from loadlab.sim.k8s.objects import RESOURCE_TYPES, ResourceType
from loadlab.sim.k8s.validation import (
    FieldError,
    bad_request,
    field_forbidden,
    field_not_supported,
    go_quote,
    invalid,
)

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
    split = _group_version(parts)
    if isinstance(split, DiscoveryPath):
        return split
    group, version, rest = split
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
    watch = watch or query.get("watch") in ("1", "true", "True")
    return RequestInfo(_verb(method, name, watch=watch), rtype, namespace, name, subresource)


def _group_version(parts: list[str]) -> tuple[str, str, list[str]] | DiscoveryPath:
    """(group, version, the rest of the path) of ``/api/...`` or ``/apis/...``, or the discovery
    document the path names when nothing follows the version."""
    if parts[0] == "api":
        if len(parts) == 1:
            return DiscoveryPath(None, None, legacy=True)
        if len(parts) == 2:
            return DiscoveryPath("", parts[1], legacy=True)
        return "", parts[1], parts[2:]
    if len(parts) == 1:
        return DiscoveryPath(None, None, legacy=False)
    if len(parts) == 2:
        return DiscoveryPath(parts[1], None, legacy=False)
    if len(parts) == 3:
        return DiscoveryPath(parts[1], parts[2], legacy=False)
    return parts[1], parts[2], parts[3:]


def _verb(method: str, name: str | None, *, watch: bool) -> str:
    """The Kubernetes verb of ``method`` on a collection (no ``name``) or one object."""
    if watch:
        if method != "GET":
            raise RouteError(405, "MethodNotAllowed", "watch needs GET")
        return "watch"
    if method in ("GET", "HEAD"):
        return "get" if name else "list"
    if method == "DELETE":
        if not name:
            raise RouteError(405, "MethodNotAllowed", "deletecollection is not supported")
        return "delete"
    if method not in _VERBS_BY_METHOD:
        raise RouteError(405, "MethodNotAllowed", f"method {method} is not allowed")
    verb = _VERBS_BY_METHOD[method]
    if verb != "create" and not name:
        raise RouteError(405, "MethodNotAllowed", f"{method} needs a name")
    if verb == "create" and name:
        raise RouteError(405, "MethodNotAllowed", "POST goes to the collection")
    return verb


# -- query parameters -----------------------------------------------------------------------

_UINT64_MAX = 2**64 - 1
_INT64_MAX = 2**63 - 1
_RV_MATCHES = ("Exact", "NotOlderThan")


@dataclass(frozen=True)
class ListOptions:
    """The query of a LIST or WATCH, as metav1.ListOptions decodes it."""

    limit: int
    """Page size; 0 means no paging (kube-apiserver ignores a limit <= 0 too)."""
    timeout_s: int | None
    """timeoutSeconds; a negative one ends a watch at once, as a negative Go timer does."""
    resource_version: str
    resource_version_match: str
    continue_token: str | None


def _int64_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name, "")
    if not raw:
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", raw, re.ASCII):
        raise bad_request(f'{name}: strconv.ParseInt: parsing "{raw}": invalid syntax')
    value = int(raw)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise bad_request(f'{name}: strconv.ParseInt: parsing "{raw}": value out of range')
    return value


def check_resource_version(raw: str) -> None:
    """etcd3 APIObjectVersioner.ParseResourceVersion: "" or a decimal uint64, else 400."""
    if not raw:
        return
    if not re.fullmatch(r"[0-9]+", raw, re.ASCII):
        reason = "invalid syntax"
    elif int(raw) > _UINT64_MAX:
        reason = "value out of range"
    else:
        return
    raise bad_request(
        f"resourceVersion: Invalid value: {go_quote(raw)}: strconv.ParseUint: parsing "
        f"{go_quote(raw)}: {reason}"
    )


def list_options(query: Mapping[str, str], *, watch: bool) -> ListOptions:
    """Parse and check a LIST or WATCH query: malformed numbers are 400 BadRequest, option
    combinations ValidateListOptions forbids are 422 (apimachinery pkg/apis/meta/internalversion
    /validation), and a continue token with a resourceVersion is 400 (etcd3 store GetList)."""
    limit = _int64_param(query, "limit") or 0
    timeout_s = _int64_param(query, "timeoutSeconds")
    rv = query.get("resourceVersion", "")
    check_resource_version(rv)
    match = query.get("resourceVersionMatch", "")
    token = query.get("continue") or None
    errs: list[FieldError] = []
    if match and watch and "sendInitialEvents" not in query:
        errs.append(
            field_forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        )
    elif match and not watch:
        if not rv:
            errs.append(
                field_forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            )
        if token:
            errs.append(
                field_forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
        if match not in _RV_MATCHES:
            errs.append(field_not_supported("resourceVersionMatch", match, [*_RV_MATCHES, ""]))
        elif match == "Exact" and rv == "0":
            errs.append(
                field_forbidden(
                    "resourceVersionMatch",
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
    if errs:
        raise invalid("meta.k8s.io", "ListOptions", "", errs)
    if token and rv not in ("", "0"):
        raise bad_request("specifying resource version is not allowed when using continue")
    return ListOptions(max(limit, 0), timeout_s, rv, match, token)
