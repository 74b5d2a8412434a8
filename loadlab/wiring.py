"""Building a run: from a validated profile and resolved addresses to opened targets, each with
its recorder, hlog files and operation mix (a ``Rig``). Nothing here runs load or judges it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadlab.clock import Clock
from loadlab.engine.mix import OpMix
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import Recorder
from loadlab.profile import DnsSection, Profile
from loadlab.session import Rig, SwitchableSink
from loadlab.slos import dns_op_bound, http_op_bound
from loadlab.targets.address import DNS_DEFAULT_PORT, parse_host_port
from loadlab.targets.base import Target
from loadlab.targets.cluster import AccessRecipe, ClusterAccess
from loadlab.targets.dns import DnsQuery, DnsTarget
from loadlab.targets.fast_http import FastHttpTarget
from loadlab.targets.http import HttpOperation

MAX_BACKLOG = 100_000
"""Requests queued or in flight per target before new sends complete as OVERFLOW (an error of the
server: it is not keeping up). Bounds the generator's memory on a stalled server."""
FD_PER_DNS_SOCKET = 2
"""A UDP socket, and a TCP connection while a truncated answer is retried."""


@dataclass(frozen=True)
class RunTargets:
    """Where the run's load goes: the API base URL and the DNS HOST:PORT (None: not in the run)."""

    api_url: str | None
    dns_addr: str | None
    access: ClusterAccess | None = None
    """TLS and credentials for the API (None: plain HTTP, the sim's identity convention)."""
    real: bool = False
    """A real cluster: Retry-After is honoured unless the profile says otherwise."""
    recipe: AccessRecipe | None = None
    """How a worker process rebuilds ``access`` (``--workers``)."""


def descriptors_needed(profile: Profile) -> int:
    """File descriptors the targets of ``profile`` may hold at once (checked before a run)."""
    needed = profile.api.connections if profile.api is not None else 0
    if profile.dns is not None:
        needed += FD_PER_DNS_SOCKET * profile.dns.sockets
    return needed


def resolved_profile(profile: Profile, targets: RunTargets) -> dict[str, Any]:
    """``profile.resolved.json``: the profile as run, with the addresses really used."""
    resolved: dict[str, Any] = json.loads(profile.model_dump_json(by_alias=True))
    if resolved.get("api"):
        resolved["api"]["url"] = targets.api_url
    if resolved.get("dns"):
        resolved["dns"]["server"] = targets.dns_addr
    return resolved


@dataclass(frozen=True)
class RigSpec:
    """One target of a run before anything is opened: its name, address and operations."""

    name: str
    """``api`` or ``dns``."""
    address: str
    ops: tuple[tuple[str, float, float | None], ...]
    """(operation name, weight, SLO p99 ms or None)."""
    slo_p50_ms: float | None
    """The target's median bound (DNS: clusterloader2's), or None (the API has none)."""

    @property
    def op_names(self) -> list[str]:
        return [name for name, _, _ in self.ops]


def rig_specs(profile: Profile, targets: RunTargets) -> list[RigSpec]:
    """The targets of ``profile`` that have an address, in the order they run."""
    specs = []
    if profile.api is not None and targets.api_url is not None:
        ops = tuple(
            (o.name, o.weight, http_op_bound(profile.slo, o.name, o.method, o.path, o.slo_p99_ms))
            for o in profile.api.mix
        )
        specs.append(RigSpec("api", targets.api_url, ops, None))
    if profile.dns is not None and targets.dns_addr is not None:
        # The DNS target itself reports an expected NXDOMAIN as OK.
        queries = tuple(
            (q.op_name, q.weight, dns_op_bound(profile.slo, q.op_name, q.slo_p99_ms))
            for q in profile.dns.queries
        )
        specs.append(RigSpec("dns", targets.dns_addr, queries, profile.slo.dns.p50_ms))
    return specs


def make_target(spec: RigSpec, profile: Profile, targets: RunTargets, clock: Clock) -> Target:
    """The real target of ``spec``: the lean HTTP client or the DNS client, not yet opened."""
    if spec.name == "api":
        assert profile.api is not None
        assert targets.api_url is not None
        return FastHttpTarget(
            targets.api_url,
            http_operations(profile),
            connections=profile.api.connections,
            timeout_s=profile.api.timeout_s,
            honour_retry_after=(
                targets.real
                if profile.api.honour_retry_after is None
                else profile.api.honour_retry_after
            ),
            access=targets.access,
            clock=clock,
        )
    assert profile.dns is not None
    assert targets.dns_addr is not None
    host, port = parse_host_port(targets.dns_addr, default_port=DNS_DEFAULT_PORT)
    return DnsTarget(
        host,
        port,
        dns_queries(profile.dns),
        sockets=profile.dns.sockets,
        timeout_s=profile.dns.timeout_s,
        clock=clock,
    )


def assemble_rig(
    spec: RigSpec,
    target: Target,
    recorder: Recorder,
    *,
    epoch_s: float,
    out_dir: Path,
) -> Rig:
    """A target (opened or to be opened onto ``rig.sink``) with its recorder and hlog files."""
    return Rig(
        target=target,
        recorder=recorder,
        sink=SwitchableSink(recorder),
        address=spec.address,
        slo_p99_ms={name: slo for name, _, slo in spec.ops if slo is not None},
        hlogs=TargetHlogs(out_dir, spec.name, start_time_epoch_s=epoch_s),
        max_backlog=MAX_BACKLOG,
        slo_p50_ms=spec.slo_p50_ms,
    )


def op_mixes(profile: Profile, specs: Sequence[RigSpec]) -> dict[str, OpMix]:
    """The operation mix of each target, by name."""
    return {
        spec.name: OpMix([weight for _, weight, _ in spec.ops], seed=profile.traffic.seed)
        for spec in specs
    }


async def open_rigs(
    profile: Profile,
    targets: RunTargets,
    *,
    clock: Clock,
    start_ns: int,
    epoch_s: float,
    out_dir: Path,
) -> tuple[list[Rig], dict[str, OpMix]]:
    """Open one target per section of ``profile`` that has an address, each onto a new recorder
    and hlog files; return the rigs and the operation mix of each, by target name."""
    specs = rig_specs(profile, targets)
    rigs: list[Rig] = []
    for spec in specs:
        recorder = Recorder(spec.name, spec.op_names, start_ns=start_ns)
        rig = assemble_rig(
            spec,
            make_target(spec, profile, targets, clock),
            recorder,
            epoch_s=epoch_s,
            out_dir=out_dir,
        )
        await rig.target.open(rig.sink)
        rigs.append(rig)
    return rigs, op_mixes(profile, specs)


def http_operations(profile: Profile) -> list[HttpOperation]:
    assert profile.api is not None
    ops = []
    for op in profile.api.mix:
        headers = {"Content-Type": op.content_type} if op.body is not None else {}
        ops.append(
            HttpOperation(
                name=op.name,
                method=op.method,
                path=op.path,
                body=op.body.encode() if op.body is not None else None,
                headers=headers,
                weight=op.weight,
                spread=op.spread,
                user=op.user,
            )
        )
    return ops


def dns_queries(section: DnsSection) -> list[DnsQuery]:
    return [
        DnsQuery(name=q.name, rdtype=q.type, weight=q.weight, expect_nxdomain=q.expect_nxdomain)
        for q in section.queries
    ]
