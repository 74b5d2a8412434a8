"""How kube-apiserver labels a request in its metrics, and the gauges read from the store.

Label values follow k8s.io/apiserver ``pkg/endpoints/metrics/metrics.go`` (Kubernetes 1.32):
``verb`` is the route's verb upper-cased (POST, PUT, not CREATE, UPDATE), WATCH and LIST told
apart, APPLY for a server-side apply patch; ``scope`` is ``resource`` for one named object or a
create, ``namespace`` inside a namespace, else ``cluster``; ``component`` is ``apiserver``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loadlab.sim.apiserver.media import APPLY_PATCH
from loadlab.sim.apiserver.routing import RequestInfo
from loadlab.sim.k8s.objects import RESOURCE_TYPES
from loadlab.sim.promtext import APISERVER_COMPONENT, SLI_LABELS, PromRegistry
from loadlab.sim.storage.store import Store

_ROUTE_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETECOLLECTION",
}


@dataclass(frozen=True)
class RequestLabels:
    """One request's labels on apiserver_request_total and its histograms (but ``code``)."""

    verb: str
    resource: str
    group: str = ""
    version: str = ""
    subresource: str = ""
    scope: str = ""
    dry_run: str = ""

    def extra(self) -> dict[str, str]:
        """The labels past verb and resource, as ``OverloadModel.observe_request`` takes them."""
        return {
            "group": self.group,
            "version": self.version,
            "subresource": self.subresource,
            "scope": self.scope,
            "dry_run": self.dry_run,
        }


def scope_of(info: RequestInfo) -> str:
    """metrics.CleanScope: a named object or a create is ``resource``."""
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    return "cluster"


def request_labels(
    info: RequestInfo, headers: Mapping[str, str], dry_run: list[str]
) -> RequestLabels:
    """The labels kube-apiserver gives ``info``; ``dry_run`` is the request's dryRun values."""
    verb = _ROUTE_VERBS.get(info.verb, info.verb.upper())
    content_type = headers.get("Content-Type", "").split(";")[0].strip()
    if verb == "PATCH" and content_type == APPLY_PATCH:
        verb = "APPLY"
    return RequestLabels(
        verb=verb,
        resource=info.rtype.plural,
        group=info.rtype.group,
        version=info.rtype.version,
        subresource=info.subresource or "",
        scope=scope_of(info),
        dry_run=",".join(sorted(set(dry_run))),  # metrics.cleanDryRun
    )


class ServerGauges:
    """Long-running requests in flight, and what the store holds (refreshed on each scrape)."""

    def __init__(self, registry: PromRegistry) -> None:
        self._longrunning = registry.gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, "
            "version, resource, scope and component. Not all requests are tracked this way.",
            SLI_LABELS,  # metrics.go gives this gauge the SLI histogram's label names
        )
        self._objects = registry.gauge(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind. In case of a "
            "fetching error, the value will be -1.",
            ("resource",),
        )
        self._watchers = registry.gauge(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            ("group", "version", "kind"),
        )

    def long_running(self, labels: RequestLabels, delta: int) -> None:
        """A watch began (+1) or ended (-1)."""
        values = (
            labels.verb,
            labels.group,
            labels.version,
            labels.resource,
            labels.subresource,
            labels.scope,
            APISERVER_COMPONENT,
        )
        self._longrunning.set(self._longrunning.get(*values) + delta, *values)

    def refresh(self, store: Store) -> None:
        """Object and watcher counts as the store has them now (kube-apiserver polls etcd)."""
        for rtype in RESOURCE_TYPES:
            self._objects.set(store.count(rtype), rtype.group_resource)
            self._watchers.set(store.watcher_count(rtype), rtype.group, rtype.version, rtype.kind)
