"""The profile's ``slo:`` section: what a run must meet, with the field's numbers as defaults.

Defaults (docs/control-plane-model.md, "SLOs"):
- the Kubernetes scalability SLOs, p99 over 5-minute windows: a mutating call or a read of one
  object <= 1 s, a LIST <= 30 s; watches have none (they are held open on purpose);
- clusterloader2's DNS checks: errors <= 0.1 %, p50 <= 20 ms, p99 <= 100 ms.

A profile overrides a class (``slo.api.list_p99_ms``) or one operation (``slo.ops``, by name; for
a request mix also the entry's own ``slo_p99_ms``, which wins). Which class an operation is in is
read from its HTTP method and path (``api_call_shape``), or, for the agents' operations, from
their names (``agent_op_shape``).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field

from loadlab.profile_fields import MAX_LATENCY_MS, MAX_SIZE, Count, Fraction, Number, Text, _Strict

Shape = Literal["single", "list", "watch", "none"]
"""``none``: an operation loadlab derives (a lease renewal's retries, a telemetry round, a DNS
lookup's wire queries), measured but not a single API call with a Kubernetes SLO."""

LatencyBound = Annotated[Number, Field(gt=0, le=MAX_LATENCY_MS)]

DEFAULT_WINDOW_S = 300.0
"""sig-scalability's SLOs are p99 over 5-minute windows."""


class ApiSlo(_Strict):
    """The API server's SLOs (sig-scalability), per call shape."""

    single_object_p99_ms: LatencyBound = 1000.0
    """A mutating call on one object, or a read of one object."""
    list_p99_ms: LatencyBound = 30_000.0
    """A LIST, namespace or cluster scope."""
    max_error_rate: Fraction = 0.01
    """Not a Kubernetes SLO (a 429 answered at once would meet every latency SLO): the knee's
    error budget, so a server that refuses work cannot pass on latency alone."""


class DnsSlo(_Strict):
    """Cluster DNS as applications see it (clusterloader2's DNS checks)."""

    max_error_rate: Fraction = 0.001
    p50_ms: LatencyBound = 20.0
    p99_ms: LatencyBound = 100.0


class SloSection(_Strict):
    """The profile's ``slo:``."""

    api: ApiSlo = ApiSlo()
    dns: DnsSlo = DnsSlo()
    ops: dict[Text, LatencyBound] = Field(default_factory=dict)
    """p99 bound (ms) of one operation by name, over its class's default."""
    window_s: Annotated[Number, Field(ge=1, le=3600)] = DEFAULT_WINDOW_S
    """A long run is judged on its worst window of this length; a shorter one on its whole
    steady state."""

    def bound_for(self, op: str, shape: Shape) -> float | None:
        """The p99 bound of ``op`` in ms, or None when it has no latency SLO."""
        if op in self.ops:
            return self.ops[op]
        if shape == "single":
            return self.api.single_object_p99_ms
        if shape == "list":
            return self.api.list_p99_ms
        return None


_WATCH_TRUE = ("true", "1")


def api_call_shape(method: str, path: str) -> Shape:
    """Whether ``method path`` is a LIST, a WATCH or a call on one object, as kube-apiserver's
    request info resolver tells them apart: a GET of a collection is a LIST (a WATCH with
    ``watch=true`` or under ``/watch/``), a GET of a named object a read; every other method
    counts with the mutating calls. A path that is not a Kubernetes resource path is a call on
    one object."""
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        return "single"
    if method.upper() != "GET":
        return "single"
    if rest[:1] == ["watch"] or query.get("watch", [""])[0] in _WATCH_TRUE:
        return "watch"
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # a namespaced resource: drop "namespaces/<ns>"
    return "list" if len(rest) == 1 else "single"


def agent_op_shape(op: str) -> Shape:
    """The class of an agent's operation, by the names the agents give them (``lease-get``,
    ``pods-list``, ``pods-watch``, ``list-pods``...)."""
    if op in ("lease-renewal", "telemetry-round", "lookup", "dns-wire"):
        return "none"
    if "watch" in op:
        return "watch"
    if "list" in op:
        return "list"
    return "single"


def http_op_bound(
    slo: SloSection, name: str, method: str, path: str, own: float | None
) -> float | None:
    """A request-mix entry's p99 bound: its own ``slo_p99_ms``, else ``slo.ops``, else its
    shape's class (None for a watch)."""
    return own if own is not None else slo.bound_for(name, api_call_shape(method, path))


def dns_op_bound(slo: SloSection, name: str, own: float | None) -> float:
    """A DNS query's p99 bound: its own ``slo_p99_ms``, else ``slo.ops``, else ``slo.dns``."""
    if own is not None:
        return own
    return slo.ops.get(name, slo.dns.p99_ms)


class Requirement(_Strict):
    """The profile's ``require:``, for ``loadlab run --gate``: the cluster size the rollout
    must fit. Sizes above it are capacity headroom, reported but not gating."""

    min_nodes: Annotated[Count, Field(ge=1, le=MAX_SIZE)]
