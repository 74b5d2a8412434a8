"""A request-mix run (``api:``/``dns:`` with ``load:``), once ``loadlab.launch`` has checked the
command line and claimed the results folder: start the embedded control plane for a missing
target, probe, run the session (steps of a ramp, or one fixed window), judge it and write
summary.json, all from one verdict. Against a real cluster the run's namespace wraps the session
and the rails watch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadlab.analysis.slo import windows
from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.cluster.rails import Abort, Rails
from loadlab.engine.mix import OpMix
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.errors import (
    EXIT_INTERRUPTED,
    Aborted,
    LoadlabError,
    ResultsWriteError,
    UsageError,
)
from loadlab.launch_cluster import (
    Targets,
    rails_on,
    run_namespace,
)
from loadlab.machine import MACHINE_FILE, machine_info
from loadlab.metrics.recorder import IntervalSnapshot, merge_blobs
from loadlab.metrics.stats import WindowStats, summarize_histogram, window_stats
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import ProgressSink
from loadlab.results import (
    write_json_atomic,
)
from loadlab.session import Rig, Session, cancel_quietly
from loadlab.stopping import SIGNAL_EXIT, Stopper, stop_on_signals
from loadlab.summary import RunVerdict, TargetOutcome, build_summary, judge_run
from loadlab.targets.base import PROBE_TIMEOUT_S
from loadlab.targets.dns import probe_dns
from loadlab.targets.http import probe_http
from loadlab.wiring import (
    RunTargets,
    op_mixes,
    open_rigs,
    resolved_profile,
    rig_specs,
)
from loadlab.workers.pool import PoolMonitor, WorkerPool, pooled_rigs

MAX_WORKERS = 64
"""A sanity cap on ``--workers``, not a measured limit: more processes than cores only compete."""


@dataclass(frozen=True)
class RunOutcome:
    """What ``run_profile`` hands back: the summary as written, and the exit code it states."""

    summary: dict[str, Any] | None
    """None when the run was stopped before any target was opened."""
    exit_code: int
    error: LoadlabError | None = None
    """What stopped the run early, to print as its one line (disk full, out of descriptors)."""


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


async def run_profile(
    profile: Profile,
    *,
    api_url: str | None,
    dns_addr: str | None,
    out_dir: Path,
    progress: ProgressSink,
    run_id: str,
    targets: Targets | None = None,
    workers: int = 1,
) -> RunOutcome:
    """Probe, run and summarise; files are written as the run goes. SIGINT and SIGTERM stop the
    load within a second and still write the (partial) summary."""
    targets = targets or Targets(None, api_url, dns_addr, real=False)
    with stop_on_signals() as stopper:
        try:
            return await _run(
                profile,
                api_url=api_url,
                dns_addr=dns_addr,
                out_dir=out_dir,
                progress=progress,
                run_id=run_id,
                stopper=stopper,
                targets=targets,
                workers=workers,
            )
        except asyncio.CancelledError:
            if stopper.reason is None:
                raise
            # Stopped before any target was opened: nothing was measured, nothing to summarise.
            return RunOutcome(None, stopper.exit_code or EXIT_INTERRUPTED)


async def _run(
    profile: Profile,
    *,
    api_url: str | None,
    dns_addr: str | None,
    out_dir: Path,
    progress: ProgressSink,
    run_id: str,
    stopper: Stopper,
    targets: Targets,
    workers: int = 1,
) -> RunOutcome:
    access = targets.access
    if api_url is not None:
        users = [op.user for op in profile.api.mix if op.user] if profile.api else []
        await probe_http(api_url, PROBE_TIMEOUT_S, access=access, users=users)
    if dns_addr is not None:
        await probe_dns(dns_addr, PROBE_TIMEOUT_S)
    run_targets = RunTargets(
        api_url, dns_addr, access=access, real=targets.real, recipe=targets.recipe
    )
    try:
        write_json_atomic(out_dir / "profile.resolved.json", resolved_profile(profile, run_targets))
        write_json_atomic(out_dir / MACHINE_FILE, machine_info())
    except OSError as exc:
        raise ResultsWriteError(f"cannot write to {out_dir} ({exc.strerror})") from None
    async with run_namespace(targets, run_id):
        return await _session(
            profile, run_targets, targets, out_dir, progress, run_id, stopper, workers
        )


async def _session(
    profile: Profile,
    run_targets: RunTargets,
    targets: Targets,
    out_dir: Path,
    progress: ProgressSink,
    run_id: str,
    stopper: Stopper,
    workers: int = 1,
) -> RunOutcome:
    clock = MonotonicClock()
    start_ns = clock.now_ns()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    interval_ns = int(profile.interval_s * NS_PER_S)
    pool = WorkerPool(workers, clock, interval_ns=interval_ns) if workers > 1 else None
    rigs, mixes = await _open(profile, run_targets, clock, start_ns, out_dir, pool)
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
        monitor=GeneratorMonitor(clock) if pool is None else PoolMonitor(pool, clock),
        start_ns=start_ns,
        interval_ns=interval_ns,
        mixes=mixes,
        abort=stopper.stop,
        pool=pool,
    )
    if pool is not None:
        pool.on_failure.append(session.fail)
    rails = None
    if rails_on(profile, targets) and targets.access is not None:
        rails = Rails(
            profile.abort,
            targets.access,
            clock,
            start_ns,
            on_abort=lambda why: session.fail(Aborted(why)),
        )
        session.rails = rails
        rails.start()
    progress.start(f"loadlab {profile.name} -> {', '.join(r.address for r in rigs)}  ({out_dir})")
    ticker = asyncio.ensure_future(session.tick_forever())
    complete = False
    try:
        if profile.traffic.ramp is not None:
            for rig in rigs:
                await session.ramp(rig)
        else:
            await session.fixed(rigs)
        complete = True
    except asyncio.CancelledError:
        if stopper.reason is None:
            raise  # not ours to swallow
    finally:
        await cancel_quietly(ticker)
        if rails is not None:
            await rails.stop()
        # Close the targets first: what is still in flight completes (as a timeout) into the
        # recorders, and the last rotation writes it out.
        if pool is not None:
            await pool.close()  # the workers close theirs and send their last intervals
        for rig in rigs:
            with contextlib.suppress(Exception):
                await rig.target.close()
        session.write_safely(lambda: session.rotate_all(clock.now_ns()))
        for rig in rigs:
            session.write_safely(rig.hlogs.close)
        session.write_safely(timeline.close)
        progress.stop()
    return finish(
        session,
        run_id,
        started_at,
        complete=complete,
        stopped_by=stopper.reason,
        abort=rails.fired if rails is not None else None,
    )


def parse_workers(value: str) -> int:
    """``--workers``: a count from 1 to MAX_WORKERS, or ``auto`` (one per usable core)."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise UsageError(
            f"--workers {value!r}: expected a whole number from 1 to {MAX_WORKERS}, or 'auto'"
        )
    return count


async def _open(
    profile: Profile,
    run_targets: RunTargets,
    clock: MonotonicClock,
    start_ns: int,
    out_dir: Path,
    pool: WorkerPool | None,
) -> tuple[list[Rig], dict[str, OpMix]]:
    """The run's rigs: its own targets, or, with workers, stand-ins for theirs."""
    if pool is None:
        return await open_rigs(
            profile,
            run_targets,
            clock=clock,
            start_ns=start_ns,
            epoch_s=time.time(),
            out_dir=out_dir,
        )
    try:
        return await start_pool(pool, profile, run_targets, start_ns=start_ns, out_dir=out_dir)
    except BaseException:
        await pool.kill()
        raise


async def start_pool(
    pool: WorkerPool,
    profile: Profile,
    run_targets: RunTargets,
    *,
    start_ns: int,
    out_dir: Path,
) -> tuple[list[Rig], dict[str, OpMix]]:
    """Start the workers, each opening its share of the targets; the leader's rigs stand for
    them. The workers write their own interval files under ``workers/<i>/``."""
    epoch_s = time.time()
    specs = rig_specs(profile, run_targets)
    op_names = await pool.start(
        profile=resolved_profile(profile, run_targets),
        targets=run_targets,
        origin_ns=start_ns,
        epoch_s=epoch_s,
        out_dir=out_dir,
    )
    rigs = pooled_rigs(pool, specs, op_names, start_ns=start_ns, epoch_s=epoch_s, out_dir=out_dir)
    return rigs, op_mixes(profile, specs)


def finish(
    session: Session,
    run_id: str,
    started_at: str,
    *,
    complete: bool,
    stopped_by: str | None,
    abort: Abort | None = None,
) -> RunOutcome:
    """Judge the run, decide its exit code, and write summary.json (both from one verdict);
    ``abort``: what a rail stopped the run for, if one did."""
    outcomes = _outcomes(session)
    verdict = judge_run(outcomes, complete=complete and stopped_by is None)
    error = session.fatal
    if error is not None:
        code = error.exit_code
    elif stopped_by in SIGNAL_EXIT:
        code = SIGNAL_EXIT[stopped_by]
    else:
        code = verdict.exit_code
    lag = summarize_histogram(merge_blobs(s.lag for r in session.rigs for s in r.snapshots))
    summary = build_summary(
        run_id=run_id,
        profile=session.profile.name,
        targets=outcomes,
        verdict=verdict,
        generator=session.monitor.summary(),
        lag_p50_ms=lag.p50_ms,
        lag_p99_ms=lag.p99_ms,
        started_at=started_at,
        duration_s=(session.clock.now_ns() - session.start_ns) / NS_PER_S,
        exit_code=code,
        stopped_by=stopped_by if error is None else f"{stopped_by}: {error}",
    )
    summary["abort"] = abort.as_dict() if abort is not None else None
    try:
        write_json_atomic(session.out_dir / "summary.json", summary)
    except OSError as exc:
        if error is None:
            error = ResultsWriteError(
                f"could not write {session.out_dir / 'summary.json'} ({exc.strerror}); "
                "the interval files written so far are kept"
            )
            code = error.exit_code
    return RunOutcome(summary, code, error)


def _outcomes(session: Session) -> list[TargetOutcome]:
    outcomes = []
    for rig in session.rigs:
        snaps = rig.snapshots or [rig.recorder.rotate(session.clock.now_ns())]
        outcomes.append(
            TargetOutcome(
                name=rig.name,
                address=rig.address,
                whole_run=window_stats(snaps, load_s=session.load_s),
                steps=tuple(rig.steps),
                ramped=session.profile.traffic.ramp is not None,
                slo_p99_ms=rig.slo_p99_ms,
                max_error_rate=session.profile.criteria.max_error_rate,
                stop_reason=rig.stop_reason,
                stalled_at_s=rig.stalled_at_s,
                stray_answers=rig.target.stray,
                windows=slo_windows(snaps, session.profile.slo.window_s),
                slo_p50_ms=rig.slo_p50_ms,
            )
        )
    return outcomes


def slo_windows(snaps: list[IntervalSnapshot], window_s: float) -> tuple[WindowStats, ...]:
    """A run longer than one SLO window, cut into windows (empty: one window, the whole run)."""
    cut = windows(snaps, window_s)
    return tuple(window_stats(w) for w in cut) if len(cut) > 1 else ()


def judge(session: Session, *, complete: bool) -> RunVerdict:
    return judge_run(_outcomes(session), complete=complete)
