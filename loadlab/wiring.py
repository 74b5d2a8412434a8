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
from loadlab.targets.cluster import ClusterAccess
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
    rigs: list[Rig] = []
    mixes: dict[str, OpMix] = {}

    async def add_rig(
        target: Target, ops: Sequence[tuple[str, float, float | None]], address: str
    ) -> None:
        """``ops`` are (name, weight, SLO p99 ms)."""
        recorder = Recorder(target.name, [name for name, _, _ in ops], start_ns=start_ns)
        sink = SwitchableSink(recorder)
        await target.open(sink)
        mixes[target.name] = OpMix([weight for _, weight, _ in ops], seed=profile.traffic.seed)
        rigs.append(
            Rig(
                target=target,
                recorder=recorder,
                sink=sink,
                address=address,
                slo_p99_ms={name: slo for name, _, slo in ops if slo is not None},
                hlogs=TargetHlogs(out_dir, target.name, start_time_epoch_s=epoch_s),
                max_backlog=MAX_BACKLOG,
                # clusterloader2's DNS median bound; the API has no median SLO.
                slo_p50_ms=profile.slo.dns.p50_ms if target.name == "dns" else None,
            )
        )

    if profile.api is not None and targets.api_url is not None:
        http = FastHttpTarget(
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
        ops = [
            (o.name, o.weight, http_op_bound(profile.slo, o.name, o.method, o.path, o.slo_p99_ms))
            for o in profile.api.mix
        ]
        await add_rig(http, ops, targets.api_url)
    if profile.dns is not None and targets.dns_addr is not None:
        host, port = parse_host_port(targets.dns_addr, default_port=DNS_DEFAULT_PORT)
        dns = DnsTarget(
            host,
            port,
            dns_queries(profile.dns),
            sockets=profile.dns.sockets,
            timeout_s=profile.dns.timeout_s,
            clock=clock,
        )
        # The DNS target itself reports an expected NXDOMAIN as OK.
        queries = [
            (q.op_name, q.weight, dns_op_bound(profile.slo, q.op_name, q.slo_p99_ms))
            for q in profile.dns.queries
        ]
        await add_rig(dns, queries, targets.dns_addr)
    return rigs, mixes


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
