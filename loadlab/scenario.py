"""A profile's node agents and cluster-size sweep: validated settings, turned into agents.

The ``agents:`` section says which kinds of simulated node components run (kubelets, pods
resolving names through node-local caches, a telemetry DaemonSet rolled out node by node, a
request mix); ``sizes:`` lists the cluster sizes to run the scenario at, one after the other;
``phases:`` how long each size runs and when the rollout starts; ``quick:`` what ``--quick``
shortens. Defaults are the agents' own (``loadlab.agents``), cited there and in
docs/control-plane-model.md.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import Field, model_validator

from loadlab.agents.base import Agent
from loadlab.agents.kubelet import OPS as KUBELET_OPS
from loadlab.agents.kubelet import Kubelet, KubeletConfig
from loadlab.agents.mix import RequestMixConfig, request_mix_agents
from loadlab.agents.nodecache import NodeCacheConfig
from loadlab.agents.pod_dns import DEFAULT_NAMES, PodDns, PodDnsConfig
from loadlab.agents.rollout import RolloutPlan
from loadlab.agents.stagger import stagger
from loadlab.agents.telemetry import ClientGoRetry, Telemetry, TelemetryCall, TelemetryConfig
from loadlab.profile_fields import (
    MAX_DURATION_S,
    MAX_RATE_PER_S,
    MAX_SIZE,
    Count,
    Flag,
    Fraction,
    HttpOp,
    Number,
    Text,
    _Strict,
)
from loadlab.slos import Shape, SloSection, agent_op_shape, api_call_shape

Seconds = Annotated[Number, Field(gt=0, le=MAX_DURATION_S)]


class KubeletAgents(_Strict):
    """One kubelet per node: lease renewals, status updates, a watch of its pods."""

    qps: Annotated[Number, Field(gt=0, le=MAX_RATE_PER_S)] = 50.0
    burst: Annotated[Count, Field(ge=1, le=100_000)] = 100
    lease_namespace: Text = "kube-node-lease"
    status_change_probability: Fraction = 0.0
    start_spread_s: Annotated[Number, Field(ge=0, le=3600)] = 10.0
    """Kubelets start at random within this window (one renew interval by default): a real
    fleet is not synchronised, and a herd started at one instant is load no cluster sends."""

    register_nodes: Flag | None = None
    """Register Node objects and report their status. None: yes against the embedded control
    plane and loopback servers; no against a real cluster (a kubelet's Lease and pod watch need
    no Node, and a run's Nodes are named after it and tainted NoSchedule when asked for)."""

    def config(self, wall_offset_ns: int, placement: Placement | None = None) -> KubeletConfig:
        config = KubeletConfig(
            qps=self.qps,
            burst=self.burst,
            lease_namespace=self.lease_namespace,
            status_change_probability=self.status_change_probability,
            wall_offset_ns=wall_offset_ns,
        )
        if placement is None:
            return config
        manage = (
            placement.register_nodes_default
            if self.register_nodes is None
            else (self.register_nodes)
        )
        return replace(
            config,
            lease_namespace=placement.lease_namespace,
            labels=placement.labels,
            manage_node=manage,
            # Only Nodes need a name of the run's own: leases live in its namespace, and a
            # node's name is the identity a per-node token file knows it by.
            node_prefix=placement.node_prefix if manage else config.node_prefix,
            taints=placement.taints,
        )


class PodDnsAgents(_Strict):
    """Pods resolving names through their node's cache (NodeLocal DNSCache), then the cluster
    DNS."""

    nodes: Annotated[Count, Field(ge=1, le=MAX_SIZE)] | None = None
    """How many nodes run resolving pods (the first N); None: every node. Fewer keeps the
    generator's work flat across sizes while still sampling what applications see."""
    pods_per_node: Annotated[Count, Field(ge=1, le=110)] = 10
    interval_s: Seconds = 10.0
    names: tuple[Text, ...] = DEFAULT_NAMES
    node_cache: Flag = True
    success_ttl_cap_s: Annotated[Count, Field(ge=0, le=86_400)] = 30
    denial_ttl_cap_s: Annotated[Count, Field(ge=0, le=86_400)] = 5
    serve_stale_s: Annotated[Count, Field(ge=0, le=86_400)] = 0
    ndots: Annotated[Count, Field(ge=0, le=15)] = 5
    timeout_s: Seconds = 5.0
    attempts: Annotated[Count, Field(ge=1, le=5)] = 2

    def config(self) -> PodDnsConfig:
        return PodDnsConfig(
            pods_per_node=self.pods_per_node,
            names=self.names,
            interval_s=self.interval_s,
            ndots=self.ndots,
            timeout_s=self.timeout_s,
            attempts=self.attempts,
            node_cache=self.node_cache,
            cache=NodeCacheConfig(
                success_ttl_cap_s=self.success_ttl_cap_s,
                denial_ttl_cap_s=self.denial_ttl_cap_s,
                serve_stale_s=self.serve_stale_s,
            ),
        )


class TelemetryCallSection(_Strict):
    name: Annotated[Text, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    path: Annotated[Text, Field(pattern=r"^/")]
    resource_version: Text = ""
    limit: Annotated[Count, Field(ge=0, le=100_000)] = 500
    label_selector: Text = ""
    field_selector: Text = ""


class TelemetryAgents(_Strict):
    """The incident's pattern: one pod per node, one shared service account, cluster-scoped
    LISTs every interval, rolled out node by node after ``phases.steady_s``."""

    interval_s: Seconds = 60.0
    calls: tuple[TelemetryCallSection, ...] = (
        TelemetryCallSection(name="list-pods", path="/api/v1/pods"),
        TelemetryCallSection(name="list-nodes", path="/api/v1/nodes"),
    )
    pace_nodes_per_s: Annotated[Number, Field(gt=0, le=100_000)] = 10.0
    user: Text = "system:serviceaccount:monitoring:telemetry"
    qps: Annotated[Number, Field(gt=0, le=MAX_RATE_PER_S)] = 5.0
    burst: Annotated[Count, Field(ge=1, le=100_000)] = 10
    max_retries: Annotated[Count, Field(ge=0, le=100)] = 10
    retry_connection_errors: Flag = False
    """client-go retries a GET whose connection was reset, not one that was refused; loadlab
    sees both as conn_error, and a restarting API server refuses: so no retry by default."""

    def config(self, rollout_start_s: float) -> TelemetryConfig:
        return TelemetryConfig(
            calls=tuple(
                TelemetryCall(
                    name=c.name,
                    path=c.path,
                    resource_version=c.resource_version,
                    limit=c.limit,
                    label_selector=c.label_selector,
                    field_selector=c.field_selector,
                )
                for c in self.calls
            ),
            interval_s=self.interval_s,
            user=self.user,
            rollout=RolloutPlan(start_s=rollout_start_s, pace_nodes_per_s=self.pace_nodes_per_s),
            retry=ClientGoRetry(
                max_retries=self.max_retries, retry_connection_errors=self.retry_connection_errors
            ),
            qps=self.qps,
            burst=self.burst,
        )


class MixAgents(_Strict):
    """The weighted request mix of the http profiles, as agents with their own identities."""

    agents: Annotated[Count, Field(ge=1, le=100_000)] = 1
    rate_per_s: Annotated[Number, Field(gt=0, le=MAX_RATE_PER_S)]
    """Total over all mix agents."""
    mix: tuple[HttpOp, ...] = Field(min_length=1)


class AgentsSection(_Strict):
    kubelet: KubeletAgents | None = None
    pod_dns: PodDnsAgents | None = None
    telemetry: TelemetryAgents | None = None
    mix: MixAgents | None = None

    @model_validator(mode="after")
    def _some(self) -> AgentsSection:
        if not (self.kubelet or self.pod_dns or self.telemetry or self.mix):
            raise ValueError("name at least one agent kind: kubelet, pod_dns, telemetry or mix")
        return self


class Phases(_Strict):
    """How one size runs: kubelets and pods alone for ``steady_s``, then the rollout (if any
    telemetry), until ``duration_s``."""

    steady_s: Annotated[Number, Field(ge=0, le=MAX_DURATION_S)] = 60.0
    duration_s: Seconds = 600.0
    warmup_s: Annotated[Number, Field(ge=0, le=MAX_DURATION_S)] = 20.0
    """The fleet coming up (registrations, first LISTs of every kubelet, caches filling) is not
    the steady state: the API and DNS checks start after it. Not from a reference: two kubelet
    renew intervals."""

    @model_validator(mode="after")
    def _order(self) -> Phases:
        if self.steady_s >= self.duration_s:
            raise ValueError("steady_s must be shorter than duration_s")
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be shorter than duration_s")
        return self


class Quick(_Strict):
    """What ``--quick`` replaces, to see the shape of a scenario in minutes."""

    sizes: tuple[Annotated[Count, Field(ge=1, le=MAX_SIZE)], ...] | None = None
    phases: Phases | None = None
    pace_nodes_per_s: Annotated[Number, Field(gt=0, le=100_000)] | None = None
    telemetry_interval_s: Seconds | None = None


class SweepCriteria(_Strict):
    """When a size counts as saturated (the API) and as failing (DNS): a sustained breach over
    ``window_s``. The latency bounds are the profile's SLOs (``slo:``, loadlab.slos)."""

    max_error_rate: Fraction = 0.01
    """API errors (429s included) over a window; the knee's default."""
    dns_failure_rate: Fraction = 0.01
    window_s: Annotated[Number, Field(ge=1, le=3600)] = 10.0


def api_op_bounds(agents: AgentsSection, slo: SloSection) -> dict[str, float]:
    """The p99 bound (ms) of every agent API operation that has one: a request mix's entry by
    its own ``slo_p99_ms`` or its method and path, a telemetry call by its path (a GET), the
    kubelet's operations by name; ``slo.ops`` overrides any of them."""
    shapes: dict[str, Shape] = {}
    explicit: dict[str, float] = {}
    if agents.kubelet is not None:
        for op in KUBELET_OPS:
            shapes[op] = agent_op_shape(op)
    if agents.telemetry is not None:
        for call in agents.telemetry.calls:
            shapes[call.name] = api_call_shape("GET", call.path)
    if agents.mix is not None:
        for entry in agents.mix.mix:
            shapes[entry.name] = api_call_shape(entry.method, entry.path)
            if entry.slo_p99_ms is not None:
                explicit[entry.name] = entry.slo_p99_ms
    bounds = {}
    for op, shape in shapes.items():
        bound = explicit[op] if op in explicit else slo.bound_for(op, shape)
        if bound is not None:
            bounds[op] = bound
    return bounds


@dataclass(frozen=True)
class Placement:
    """Where a run against a real cluster puts what its agents create, and how it marks it."""

    lease_namespace: str
    labels: tuple[tuple[str, str], ...]
    node_prefix: str
    taints: tuple[tuple[str, str], ...] = (("loadlab.io/simulated", "NoSchedule"),)
    register_nodes_default: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for a worker process (``from_dict`` rebuilds it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Placement:
        return cls(
            lease_namespace=str(data["lease_namespace"]),
            labels=tuple((str(k), str(v)) for k, v in data["labels"]),
            node_prefix=str(data["node_prefix"]),
            taints=tuple((str(k), str(v)) for k, v in data["taints"]),
            register_nodes_default=bool(data["register_nodes_default"]),
        )


def build_agents(
    agents: AgentsSection,
    size: int,
    *,
    steady_s: float,
    wall_offset_ns: int,
    quick: Quick | None = None,
    placement: Placement | None = None,
    with_pod_dns: bool = True,
) -> list[Agent]:
    """Every agent of a cluster of ``size`` nodes (``placement``: against a real cluster)."""
    built: list[Agent] = []
    if agents.kubelet is not None:
        config = agents.kubelet.config(wall_offset_ns, placement)
        kubelets: list[Agent] = [Kubelet(i, config) for i in range(size)]
        built += stagger(kubelets, agents.kubelet.start_spread_s, random.Random(size))
    if agents.pod_dns is not None and with_pod_dns:
        dns_config = agents.pod_dns.config()
        nodes = size if agents.pod_dns.nodes is None else min(size, agents.pod_dns.nodes)
        built += [PodDns(i, dns_config) for i in range(nodes)]
    if agents.telemetry is not None:
        telemetry = agents.telemetry
        if quick is not None and (quick.pace_nodes_per_s or quick.telemetry_interval_s):
            telemetry = telemetry.model_copy(
                update={
                    k: v
                    for k, v in (
                        ("pace_nodes_per_s", quick.pace_nodes_per_s),
                        ("interval_s", quick.telemetry_interval_s),
                    )
                    if v is not None
                }
            )
        tconfig = telemetry.config(rollout_start_s=steady_s)
        built += [Telemetry(i, tconfig) for i in range(size)]
    if agents.mix is not None:
        per_agent = agents.mix.rate_per_s / agents.mix.agents
        mconfig = RequestMixConfig(ops=agents.mix.mix, rate_per_s=per_agent)
        for i in range(agents.mix.agents):
            built += request_mix_agents(i, mconfig)
    return built


def kinds(agents: Sequence[Agent]) -> list[str]:
    """Agent kinds in first-seen order."""
    return list(dict.fromkeys(a.kind for a in agents))
