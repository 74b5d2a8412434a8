"""``loadlab run`` of an agent scenario: one cluster size after another, each its own run.

For every size: start the embedded control plane seeded with that many nodes (unless ``--api`` /
``--dns`` name real targets), run the agents (``loadlab.sweep.run_size``), judge the size, and
rewrite ``summary.json`` with every size so far, so a run stopped at size 3 of 4 keeps sizes 1 to
3. SIGINT and SIGTERM stop the current size within a second, write what it measured (marked
incomplete, nothing claimed) and end the sweep. Exit code: 0 when every size passed, 1 when a
size saturated or DNS failed, 4 when the generator could not keep up at a size that did not fail,
130 / 143 when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from loadlab import runloop
from loadlab.clock import MonotonicClock
from loadlab.cluster.objects import RUN_LABEL
from loadlab.cluster.rails import is_abort
from loadlab.errors import (
    EXIT_ABORTED,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SLO_FAILED,
    ProfileError,
    ResultsWriteError,
    UsageError,
)
from loadlab.finish import write_report_quietly
from loadlab.gate import Gate, sweep_gate
from loadlab.launch_cluster import (
    Targets,
    check_agent_caps,
    close_run_namespace,
    open_run_namespace,
    rails_on,
)
from loadlab.machine import MACHINE_FILE, machine_info
from loadlab.present import verdict_line
from loadlab.profile import Profile
from loadlab.profile_fields import MAX_SIZE
from loadlab.progress import ProgressSink
from loadlab.results import SUMMARY_SCHEMA, rounded, write_json_atomic
from loadlab.scenario import Placement
from loadlab.stopping import SIGNAL_EXIT, stop_on_signals
from loadlab.sweep import (
    POOL_CONNECTIONS,
    SizeCluster,
    SizeRun,
    effective_phases,
    effective_sizes,
    run_size,
)
from loadlab.sweep_verdict import SizeVerdict, judge_size
from loadlab.targets.base import PROBE_TIMEOUT_S
from loadlab.targets.dns import probe_dns
from loadlab.targets.http import probe_http
from loadlab.workers.pool import WorkerFailed

SIM_SETTINGS_FILE = "sim-settings.yaml"


def check_sim_settings(profile: Profile) -> None:
    """The embedded control plane's inline settings, checked before anything starts."""
    if profile.sim.settings is None:
        return
    from loadlab.sim.config import sim_config_from_dict

    sim_config_from_dict(dict(profile.sim.settings), source="field 'sim.settings'")


def run_sweep(
    profile: Profile,
    *,
    targets: Targets,
    sizes: Sequence[int] | None,
    quick: bool,
    out_dir: Path,
    progress: ProgressSink,
    run_id: str,
    gate: bool = False,
    report: bool = True,
    workers: int = 1,
) -> int:
    """Run every size; write summary.json after each; print the per-size lines; the exit code
    (with ``gate``, the gate's: ``loadlab.gate``). Against a real cluster the sizes run inside
    the run's namespace, deleted with everything the run labelled when the sweep ends, however
    it ends."""
    assert profile.agents is not None
    dns_addr = targets.dns_addr
    check_sim_settings(profile)
    run_sizes = effective_sizes(profile, quick, sizes)
    check_agent_caps(profile, targets, run_sizes, POOL_CONNECTIONS)
    if targets.real and dns_addr is None and profile.agents.pod_dns is not None:
        print(
            "loadlab: pod DNS is not run against a real cluster without --dns (give the cluster "
            "DNS address, allowlisted with --allow-dns, to resolve through it)",
            file=sys.stderr,
        )
    try:
        write_json_atomic(
            out_dir / "profile.resolved.json", sweep_profile(profile, run_sizes, quick)
        )
        write_json_atomic(out_dir / MACHINE_FILE, machine_info())
    except OSError as exc:
        raise ResultsWriteError(f"cannot write to {out_dir} ({exc.strerror})") from None
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    verdicts: list[SizeVerdict] = []
    stopped_by: str | None = None

    def write_summary(code: int, gated: Gate | None = None) -> None:
        summary = sweep_summary(
            profile,
            verdicts,
            run_id=run_id,
            started_at=started_at,
            code=code,
            stopped_by=stopped_by,
            planned=run_sizes,
        )
        if gated is not None:
            summary["gate"] = gated.as_dict()
        write_json_atomic(out_dir / "summary.json", summary)

    with cluster_namespace(targets, run_id) as placement:
        cluster = size_cluster(profile, targets, placement)
        for size in run_sizes:
            run = SizeRun(nodes=size, out_dir=out_dir / f"size-{size}")
            try:
                with _control_plane(profile, size, targets, out_dir, workers) as (api_at, dns_at):
                    stopped_by = runloop.run(
                        _run_one(
                            profile, size, run, api_at, dns_at, progress, quick, cluster, workers
                        )
                    )
            except WorkerFailed as failure:
                # What the size measured until then is kept, marked incomplete; the sweep ends
                # with the worker's failure (one line, its exit code).
                progress.stop()
                verdicts.append(judge_size(profile, run, quick=quick))
                write_summary(failure.exit_code)
                raise
            verdicts.append(judge_size(profile, run, quick=quick, stopped_by=stopped_by))
            write_summary(sweep_exit_code(verdicts, stopped_by))
            if stopped_by is not None:
                break
    progress.stop()
    code = sweep_exit_code(verdicts, stopped_by)
    gated = None
    if gate and stopped_by is None:
        gated = sweep_gate(verdicts, profile.require.min_nodes if profile.require else None)
        code = gated.exit_code
        write_summary(code, gated)
    lines = [f"results: {out_dir}"]
    report_html = write_report_quietly(out_dir) if report else None
    if report_html is not None:
        lines.append(f"report: {report_html}")
    lines += [v.line() for v in verdicts]
    saturating = saturating_size(verdicts)
    if saturating is not None:
        lines.append(f"saturating size: {saturating:,} nodes")
    lines.append(gated.line if gated is not None else verdict_line(code, passed=code == EXIT_OK))
    print("\n".join(lines), file=sys.stdout)
    return code


async def _run_one(
    profile: Profile,
    size: int,
    run: SizeRun,
    api_url: str | None,
    dns_addr: str | None,
    progress: ProgressSink,
    quick: bool,
    cluster: SizeCluster | None,
    workers: int = 1,
) -> str | None:
    """Probe the targets (one line and exit 3 when nothing answers, as for a request mix), then
    run one size with SIGINT/SIGTERM (and the rails, against a real cluster) stopping it
    cleanly; return why it was stopped (a signal's name, ``aborted at ...``), if it was."""
    with stop_on_signals() as stopper:
        try:
            access = cluster.access if cluster is not None else None
            if api_url is not None:
                await probe_http(api_url, PROBE_TIMEOUT_S, access=access)
            if dns_addr is not None:
                await probe_dns(dns_addr, PROBE_TIMEOUT_S)
            progress.start(f"loadlab {profile.name}: {size:,} nodes  ({run.out_dir})")
            await run_size(
                profile,
                size,
                clock=MonotonicClock(),
                api_url=api_url,
                dns_addr=dns_addr,
                out_dir=run.out_dir,
                progress=progress,
                quick=quick,
                run=run,
                cluster=None if cluster is None else replace(cluster, on_abort=stopper.stop),
                workers=workers,
            )
        except asyncio.CancelledError:
            if stopper.reason is None:
                raise
    return stopper.reason


@contextlib.contextmanager
def _control_plane(
    profile: Profile, size: int, targets: Targets, out_dir: Path, workers: int = 1
) -> Iterator[tuple[str | None, str | None]]:
    """The targets of one size: the given ones, or the embedded control plane seeded with
    ``size`` nodes for whichever is missing (never beside a real cluster: what it would answer
    says nothing of that cluster). With one generator process, the sim and the generator get
    cores of their own; with workers the kernel places them all."""
    assert profile.agents is not None
    agents = profile.agents
    api_url, dns_addr = targets.api_url, targets.dns_addr
    need_api = api_url is None and bool(agents.kubelet or agents.telemetry or agents.mix)
    need_dns = dns_addr is None and agents.pod_dns is not None and not targets.real
    if not (need_api or need_dns):
        yield api_url, dns_addr
        return
    from loadlab.sim.process import start_sim_process

    args = ["--nodes", str(size), "--pods-per-node", str(profile.sim.pods_per_node)]
    if profile.sim.settings is not None:
        settings = out_dir / SIM_SETTINGS_FILE
        settings.write_text(yaml.safe_dump(dict(profile.sim.settings), sort_keys=False))
        args += ["--config", str(settings)]
    elif profile.sim.config is not None:
        args += ["--config", profile.sim.config]
    with start_sim_process(args) as sim:
        if workers == 1:
            separate_cores(sim.pid)
        yield (sim.api_url if need_api else api_url), (sim.dns_addr if need_dns else dns_addr)


def separate_cores(sim_pid: int) -> None:
    """On a machine with two or more usable cores, keep the embedded control plane and the
    generator off each other's core (every thread of each): both are single event loops, and
    when they share a core the generator's timers fire late because the sim was running, which
    the generator would report as its own lag. Nothing happens with one core."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    with contextlib.suppress(OSError):  # the sim may have exited; pinning is best effort
        for tid in os.listdir(f"/proc/{sim_pid}/task"):
            os.sched_setaffinity(int(tid), {cpus[0]})
        for tid in os.listdir(f"/proc/{os.getpid()}/task"):
            os.sched_setaffinity(int(tid), set(cpus[1:]))


def sweep_profile(profile: Profile, sizes: Sequence[int], quick: bool) -> dict[str, Any]:
    """``profile.resolved.json`` of a sweep: the profile as run, so ``sizes`` and ``phases`` are
    the ones used (``--sizes``, ``--quick``), and ``quick`` says whether its short version ran."""
    resolved: dict[str, Any] = json.loads(profile.model_dump_json(by_alias=True))
    resolved["sizes"] = list(sizes)
    resolved["phases"] = json.loads(effective_phases(profile, quick).model_dump_json())
    resolved["quick_run"] = quick
    return resolved


def saturating_size(verdicts: Sequence[SizeVerdict]) -> int | None:
    """The smallest size that did not pass because the API saturated or DNS failed (with the
    generator keeping up: a generator-limited size says nothing of the server)."""
    failed = [v.nodes for v in verdicts if v.server_failed]
    return min(failed) if failed else None


def sweep_exit_code(verdicts: Sequence[SizeVerdict], stopped_by: str | None) -> int:
    if stopped_by is not None:
        if is_abort(stopped_by):
            return EXIT_ABORTED
        return SIGNAL_EXIT.get(stopped_by, EXIT_INTERRUPTED)
    if any(v.server_failed for v in verdicts):
        return EXIT_SLO_FAILED
    if not verdicts or not all(v.passed for v in verdicts):
        return EXIT_INCONCLUSIVE  # limited, interrupted, too short, or measured nothing
    return EXIT_OK


def sweep_summary(
    profile: Profile,
    verdicts: Sequence[SizeVerdict],
    *,
    run_id: str,
    started_at: str,
    code: int,
    stopped_by: str | None,
    planned: Sequence[int],
) -> dict[str, Any]:
    """summary.json of a sweep: the sizes so far, the saturating size, and the verdict."""
    complete = stopped_by is None and len(verdicts) == len(planned)
    summary = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run_id,
        "profile": profile.name,
        "kind": "sweep",
        "complete": complete,
        "stopped_by": stopped_by,
        "exit_code": code,
        "started_at": started_at,
        "sizes_planned": list(planned),
        "sizes": [v.as_dict() for v in verdicts],
        "saturating_size": saturating_size(verdicts),
        "abort": (
            {"nodes": verdicts[-1].nodes if verdicts else None, "why": stopped_by}
            if is_abort(stopped_by)
            else None
        ),
        "verdict": {
            "passed": code == EXIT_OK,
            "exit_code": code,
            "findings": {
                f"size-{v.nodes}": {"line": v.line(), "passed": v.passed} for v in verdicts
            },
        },
    }
    return dict(rounded(summary))


@contextlib.contextmanager
def cluster_namespace(targets: Targets, run_id: str) -> Iterator[Placement | None]:
    """The run's namespace on a real cluster for the whole sweep (each size runs its own event
    loop, so the namespace is made and cleaned up in loops of its own)."""
    if not targets.real or targets.access is None:
        yield None
        return
    namespace = runloop.run(open_run_namespace(targets, run_id))
    try:
        yield Placement(
            lease_namespace=namespace,
            labels=((RUN_LABEL, run_id),),
            node_prefix=f"loadlab-{run_id}-node-",
        )
    finally:
        runloop.run(close_run_namespace(targets, run_id))


def size_cluster(
    profile: Profile, targets: Targets, placement: Placement | None
) -> SizeCluster | None:
    """What every size of a sweep against a real cluster shares (None otherwise)."""
    if targets.access is None or placement is None:
        return None
    rails = profile.abort if rails_on(profile, targets) else None
    return SizeCluster(targets.access, placement, rails, recipe=targets.recipe)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``--sizes 250,1000``: cluster sizes, each a whole number of nodes."""
    sizes = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part.isdigit() or not 1 <= int(part) <= MAX_SIZE:
            raise UsageError(
                f"--sizes {text!r}: expected node counts from 1 to {MAX_SIZE:,}, e.g. 250,1000"
            )
        sizes.append(int(part))
    return tuple(sizes)


def refuse_sweep_flags(profile: Profile, sizes: object, quick: bool) -> None:
    if profile.agents is None and (sizes or quick):
        raise ProfileError(
            f"profile {profile.name}: --sizes and --quick need an agent scenario (an 'agents' "
            "section)"
        )
