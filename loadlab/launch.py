"""``loadlab run``: from a profile and a command line to a results folder and an exit code.

Order of work: validate everything the user gave (profile, addresses) -> start the embedded control
plane if a target is missing -> probe the targets -> open the results folder -> run the session ->
write summary.json. Any user-facing failure is a ``LoadlabError`` (one line, a documented exit
code); an interrupted run still writes a summary marked ``"complete": false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED, UsageError
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import Recorder, merge_blobs
from loadlab.metrics.stats import summarize_histogram, window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import DnsTarget as DnsSection
from loadlab.profile import Profile, load_profile
from loadlab.progress import ProgressSink, make_progress
from loadlab.results import default_out_dir, prepare_out_dir, write_json_atomic
from loadlab.session import Rig, Session, SwitchableSink, cancel_quietly
from loadlab.summary import RunVerdict, TargetOutcome, build_summary, judge_run
from loadlab.targets.address import ensure_loopback_or_allowed, parse_host_port
from loadlab.targets.base import Target
from loadlab.targets.dns import DnsQuery, DnsTarget, probe_dns
from loadlab.targets.http import HttpOperation, HttpTarget, probe_http

PROBE_TIMEOUT_S = 5.0
# Requests queued or in flight per target before new sends complete as OVERFLOW (an error of the
# server: it is not keeping up). Bounds the generator's memory on a stalled server.
MAX_BACKLOG = 100_000
DNS_DEFAULT_PORT = 53


def run_command(
    profile_path: Path,
    *,
    api: str | None,
    dns: str | None,
    out: Path | None,
    overrides: list[str],
    quiet: bool,
) -> int:
    profile = load_profile(profile_path, overrides)
    profile = apply_targets(profile, api=api, dns=dns)
    progress = make_progress(quiet)
    with embedded_control_plane(profile) as (api_url, dns_addr):
        out_dir = prepare_out_dir(out if out is not None else default_out_dir(profile.name))
        _install_uvloop()
        summary = asyncio.run(
            run_profile(
                profile, api_url=api_url, dns_addr=dns_addr, out_dir=out_dir, progress=progress
            )
        )
    print_result(summary, out_dir)
    return exit_code(summary)


def exit_code(summary: dict[str, Any]) -> int:
    if summary["generator"]["limited"]:
        return EXIT_INCONCLUSIVE
    return EXIT_OK if summary["slo"]["passed"] else EXIT_SLO_FAILED


def apply_targets(profile: Profile, *, api: str | None, dns: str | None) -> Profile:
    """Put --api/--dns into the profile, checking each is loopback and well formed."""
    update: dict[str, object] = {}
    if api is not None:
        if profile.api is None:
            raise UsageError(f"--api given, but profile '{profile.name}' has no 'api' section")
        update["api"] = profile.api.model_copy(update={"url": api})
    if dns is not None:
        if profile.dns is None:
            raise UsageError(f"--dns given, but profile '{profile.name}' has no 'dns' section")
        update["dns"] = profile.dns.model_copy(update={"server": dns})
    if update:
        profile = profile.model_copy(update=update)
    if profile.api is not None and profile.api.url is not None:
        parts = urlsplit(profile.api.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--api {profile.api.url}: expected a URL like http://127.0.0.1:6443")
        ensure_loopback_or_allowed(parts.hostname)
    if profile.dns is not None and profile.dns.server is not None:
        host, _ = parse_host_port(profile.dns.server, default_port=DNS_DEFAULT_PORT)
        ensure_loopback_or_allowed(host)
    return profile


@contextlib.contextmanager
def embedded_control_plane(profile: Profile) -> Iterator[tuple[str | None, str | None]]:
    """Yield (api_url, dns_addr); start the sim in its own process for whichever is missing."""
    api_url = profile.api.url if profile.api is not None else None
    dns_addr = profile.dns.server if profile.dns is not None else None
    need_api = profile.api is not None and api_url is None
    need_dns = profile.dns is not None and dns_addr is None
    if not (need_api or need_dns):
        yield api_url, dns_addr
        return
    from loadlab.sim.process import start_sim_process

    args = ["--nodes", str(profile.sim.nodes), "--pods-per-node", str(profile.sim.pods_per_node)]
    if profile.sim.config is not None:
        args += ["--config", profile.sim.config]
    with start_sim_process(args) as sim:
        yield (sim.api_url if need_api else api_url), (sim.dns_addr if need_dns else dns_addr)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency; plain asyncio still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def http_operations(profile: Profile) -> list[HttpOperation]:
    assert profile.api is not None
    ops = []
    for op in profile.api.mix:
        headers = {"Content-Type": op.content_type} if op.body is not None else {}
        if op.user is not None:
            headers["Authorization"] = f"Bearer {op.user}"
        ops.append(
            HttpOperation(
                name=op.name,
                method=op.method,
                path=op.path,
                body=op.body.encode() if op.body is not None else None,
                headers=headers,
                weight=op.weight,
                spread=op.spread,
            )
        )
    return ops


def dns_queries(section: DnsSection) -> list[DnsQuery]:
    return [
        DnsQuery(name=q.name, rdtype=q.type, weight=q.weight, expect_nxdomain=q.expect_nxdomain)
        for q in section.queries
    ]


async def run_profile(
    profile: Profile,
    *,
    api_url: str | None,
    dns_addr: str | None,
    out_dir: Path,
    progress: ProgressSink,
) -> dict[str, Any]:
    """Probe, run and summarise; files are written as the run goes."""
    if api_url is not None:
        await probe_http(api_url, PROBE_TIMEOUT_S)
    if dns_addr is not None:
        await probe_dns(dns_addr, PROBE_TIMEOUT_S)
    resolved = json.loads(profile.model_dump_json(by_alias=True))
    if resolved.get("api"):
        resolved["api"]["url"] = api_url
    if resolved.get("dns"):
        resolved["dns"]["server"] = dns_addr
    write_json_atomic(out_dir / "profile.resolved.json", resolved)

    clock = MonotonicClock()
    start_ns = clock.now_ns()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    epoch_s = time.time()
    rigs: list[Rig] = []
    mixes: dict[str, OpMix] = {}

    async def add_rig(
        target: Target, ops: Sequence[tuple[str, float, float]], address: str
    ) -> None:
        """Open ``target`` onto a new recorder; ``ops`` are (name, weight, SLO p99 ms)."""
        recorder = Recorder(target.name, [name for name, _, _ in ops], start_ns=start_ns)
        sink = SwitchableSink(recorder)
        await target.open(sink)
        mixes[target.name] = OpMix([weight for _, weight, _ in ops], seed=profile.load.seed)
        rigs.append(
            Rig(
                target=target,
                recorder=recorder,
                sink=sink,
                address=address,
                slo_p99_ms={name: slo for name, _, slo in ops},
                hlogs=TargetHlogs(out_dir, target.name, start_time_epoch_s=epoch_s),
                max_backlog=MAX_BACKLOG,
            )
        )

    if profile.api is not None and api_url is not None:
        http = HttpTarget(
            api_url,
            http_operations(profile),
            connections=profile.api.connections,
            timeout_s=profile.api.timeout_s,
            honour_retry_after=profile.api.honour_retry_after,
            clock=clock,
        )
        await add_rig(http, [(o.name, o.weight, o.slo_p99_ms) for o in profile.api.mix], api_url)
    if profile.dns is not None and dns_addr is not None:
        host, port = parse_host_port(dns_addr, default_port=DNS_DEFAULT_PORT)
        dns = DnsTarget(
            host,
            port,
            dns_queries(profile.dns),
            sockets=profile.dns.sockets,
            timeout_s=profile.dns.timeout_s,
            clock=clock,
        )
        # The DNS target itself reports an expected NXDOMAIN as OK.
        queries = [(q.op_name, q.weight, q.slo_p99_ms) for q in profile.dns.queries]
        await add_rig(dns, queries, dns_addr)

    timeline = TimelineWriter(
        out_dir / "timeline.csv",
        [r.name for r in rigs],
        {r.name: r.recorder.op_names for r in rigs},
    )
    session = Session(
        profile=profile,
        clock=clock,
        rigs=rigs,
        timeline=timeline,
        out_dir=out_dir,
        progress=progress,
        monitor=GeneratorMonitor(clock, interval_s=profile.interval_s),
        start_ns=start_ns,
        interval_ns=int(profile.interval_s * NS_PER_S),
        mixes=mixes,
    )
    run_id = uuid.uuid4().hex[:12]
    progress.start(f"loadlab {profile.name} -> {', '.join(r.address for r in rigs)}  ({out_dir})")
    ticker = asyncio.ensure_future(session.tick_forever())
    complete = False
    try:
        if profile.load.ramp is not None:
            for rig in rigs:
                await session.ramp(rig)
        else:
            await session.fixed(rigs)
        complete = True
    finally:
        await cancel_quietly(ticker)
        session.rotate_all(clock.now_ns())
        for rig in rigs:
            with contextlib.suppress(Exception):
                await rig.target.close()
            rig.hlogs.close()
        timeline.close()
        progress.stop()
        summary = summarise(session, run_id, started_at, complete)
        write_json_atomic(out_dir / "summary.json", summary)
    return summary


def summarise(session: Session, run_id: str, started_at: str, complete: bool) -> dict[str, Any]:
    outcomes = []
    for rig in session.rigs:
        snaps = rig.snapshots or [rig.recorder.rotate(session.clock.now_ns())]
        outcomes.append(
            TargetOutcome(
                name=rig.name,
                address=rig.address,
                whole_run=window_stats(snaps),
                steps=tuple(rig.steps),
                ramped=session.profile.load.ramp is not None,
                slo_p99_ms=rig.slo_p99_ms,
                max_error_rate=session.profile.criteria.max_error_rate,
                generator_limited=rig.generator_limited,
            )
        )
    verdict: RunVerdict = judge_run(outcomes)
    lag = summarize_histogram(merge_blobs(s.lag for r in session.rigs for s in r.snapshots))
    return build_summary(
        run_id=run_id,
        profile=session.profile.name,
        targets=outcomes,
        verdict=verdict,
        generator=session.monitor.summary(),
        lag_p50_ms=lag.p50_ms,
        lag_p99_ms=lag.p99_ms,
        complete=complete,
        started_at=started_at,
        duration_s=(session.clock.now_ns() - session.start_ns) / NS_PER_S,
    )


def print_result(summary: dict[str, Any], out_dir: Path) -> None:
    """A few lines a human reads first; the full answer is in summary.json."""
    lines = [f"results: {out_dir}"]
    knees = summary.get("knee")
    assert isinstance(knees, dict)
    steps = summary.get("steps")
    assert isinstance(steps, list)
    for target in ("api", "dns"):
        knee = knees.get(target)
        if knee is not None:
            kneedle = knee.get("kneedle")
            cross = f", Kneedle {kneedle:,.0f}/s" if isinstance(kneedle, float) else ""
            flag = " (methods disagree > 15%)" if knee.get("flagged") else ""
            lines.append(
                f"{target} knee: {knee['offered']:,.0f}/s offered, "
                f"{knee['achieved']:,.0f}/s achieved, p99 {knee['p99_ms']:,.1f} ms{cross}{flag}; "
                f"above it: {knee['reason']}"
            )
        elif any(s.get("target") == target for s in steps):
            limited = [s for s in steps if s.get("target") == target and s.get("generator_limited")]
            if limited:
                lines.append(
                    f"{target}: no knee - the generator fell behind at "
                    f"{limited[0]['offered']:,.0f}/s ({limited[0]['why']}); "
                    "the server was not the limit up to there"
                )
            elif len([s for s in steps if s.get("target") == target]) > 1:
                lines.append(f"{target}: no knee found within the ramp (raise load.ramp.max_per_s)")
    totals = summary["totals"]
    if totals["requests"]:
        lines.append(
            f"api: {totals['requests']:,} requests, {totals['achieved_rps']:,.0f}/s achieved, "
            f"{totals['errors']:,} errors"
        )
    if totals["dns_queries"]:
        lines.append(
            f"dns: {totals['dns_queries']:,} queries, {totals['achieved_qps']:,.0f}/s answered, "
            f"{totals['dns_failures']:,} failures"
        )
    slo = summary.get("slo")
    assert isinstance(slo, dict)
    failed = [c["name"] for c in slo["checks"] if not c["passed"]]
    lines.append("SLOs: passed" if not failed else f"SLOs: FAILED ({'; '.join(failed)})")
    print("\n".join(lines), file=sys.stdout)
