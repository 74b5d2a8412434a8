"""The sim's configuration: cluster shape, listen ports, API-server knobs, overload model, DNS,
and the slow-down a test can turn on mid-run.

``load_sim_config(path)`` reads YAML; every error is a ``ProfileError`` naming the field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadlab.errors import ProfileError
from loadlab.sim.dns.nameserver import ClusterDnsConfig
from loadlab.sim.overload.parameters import OverloadConfig


class ApiServerConfig(BaseModel):
    """How the simulated kube-apiserver serves, apart from its overload model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_request_timeout_s: float = Field(default=1800.0, gt=0)
    """docs/control-plane-model.md: watches end at a random time in [1800 s, 2x)."""
    event_window: int = Field(default=10_000, ge=1)
    """Events each resource's watch cache keeps; a watch from an older resourceVersion gets 410.
    An assumption: the real cacher sizes this dynamically (100 to ~100k events)."""
    bookmark_interval_s: float = Field(default=60.0, gt=0)
    """How often a watch that allows bookmarks gets one (the cacher's bookmark frequency, 1 min)."""
    watch_queue_limit: int = Field(default=1_000, ge=1)
    """Events a watcher may have unsent before the server drops it (the cacher's slow-watcher
    termination). An assumption; the real buffer is smaller but waits a little before dropping."""
    housekeeping_interval_s: float = Field(default=0.5, gt=0)
    """Period of the task that ends timed-out watches, sends bookmarks and measures loop lag."""
    seed: int | None = None
    """Seed of the watch-timeout jitter; None draws a fresh one."""
    namespace_finalize_s: float = Field(default=1.0, ge=0, le=3600)
    """How long a deleted namespace stays Terminating before its content and then itself are
    deleted. Not from a reference: the namespace controller usually takes about a second for a
    small namespace; kept short so a test sees the whole lifecycle."""


class DegradeConfig(BaseModel):
    """A slow-down to turn on mid-run (``SIGUSR1`` toggles it; ``after_s`` turns it on by time),
    so a test can watch a client notice an API server that suddenly got slow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extra_latency_s: float = Field(default=2.0, ge=0)
    """Added to every API request but the health paths and /metrics while degraded. Not from a
    reference: 2 s is twice the 1 s p99 bound on a single-object call (docs/control-plane-model.md,
    "SLOs"), a breach no latency check can miss."""
    after_s: float | None = Field(default=None, gt=0)
    """Turn the slow-down on this long after the sim is ready (its ready line); None leaves it
    to SIGUSR1."""


class SimConfig(BaseModel):
    """Everything ``python -m loadlab.sim`` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: int = Field(default=100, ge=0)
    pods_per_node: int = Field(default=10, ge=0, le=110)  # docs/control-plane-model.md
    namespaces: int = Field(default=4, ge=1)
    """Workload namespaces: ``default`` and ``app-0``..; system namespaces always exist."""
    services: int = Field(default=20, ge=0)
    """Services with an EndpointSlice each, besides kubernetes and kube-dns."""
    endpoints_per_service: int = Field(default=3, ge=0)
    headless_services: int = Field(default=2, ge=0)
    """How many of those services are headless (clusterIP None, per-endpoint DNS records)."""
    pod_start_s: float = Field(default=1.0, ge=0, le=600)
    """How long a created pod waits, once bound to a node, before it is Running and Ready
    (the sim's stand-in for the kubelet pulling a cached image and starting its containers).
    Not from a reference: about what a small pod with a cached image takes."""
    host: str = "127.0.0.1"
    """Where the API server and DNS listen. Anything but loopback (``is_loopback_host``) opens an
    unauthenticated DNS (and API, without ``--tls`` or ``--tokens``) to the network, so
    ``loadlab sim`` refuses it without ``--allow-non-loopback``."""
    api_port: int = Field(default=6443, ge=0, le=65535)
    dns_port: int = Field(default=1053, ge=0, le=65535)
    api: ApiServerConfig = Field(default_factory=ApiServerConfig)
    overload: OverloadConfig = Field(default_factory=OverloadConfig)
    dns: ClusterDnsConfig = Field(default_factory=ClusterDnsConfig)
    degrade: DegradeConfig = Field(default_factory=DegradeConfig)


def is_loopback_host(host: str) -> bool:
    """True for a loopback IP literal (127.0.0.0/8, ::1) or ``localhost``; False for any other
    name, which could resolve anywhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, not an IP literal
        return False


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def sim_config_from_dict(data: dict[str, Any], *, source: str = "sim config") -> SimConfig:
    """Validate ``data``; errors name the field (``overload.total_seats: ...``)."""
    try:
        return SimConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"{source}: {problems}") from exc


def load_sim_config(path: str | Path) -> SimConfig:
    """Read a YAML sim config (a mapping of SimConfig fields)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read sim config {p}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{p} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{p}: the top level must be a mapping of sim settings")
    return sim_config_from_dict(data, source=str(p))
