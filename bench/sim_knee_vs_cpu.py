"""Whose knee is it: the overload model's, or the sim's own CPU's?

Run from the repository root: ``.venv/bin/python bench/sim_knee_vs_cpu.py`` (add ``--json`` for
one JSON object; ``--rates 200,400,800`` and ``--step-s`` to change the steps; ``--sim-config
FILE`` to try other cost parameters; ``--set sim.nodes=1000`` to override the profile).

The sim's own target (docs/control-plane-model.md): service time is spent by awaiting, not by
burning CPU, so the knee is the model's and the sim's own CPU stays well below it (it reports its
own event-loop lag so a test can prove that).
This starts the sim as ``loadlab run`` does (its own process; the profile's ``sim:`` shape,
100 nodes x 10 pods for http-knee) and drives it with loadlab's engine (OpenLoopRunner, Poisson
arrivals, the profile's mix and connections over HttpTarget) at each rate for ``--warmup-s`` +
``--step-s``. During the measured part it samples, every ``--sample-ms``: the sim's
``loadlab_sim_event_loop_lag_seconds`` and the seats its APF model has in use
(``apiserver_flowcontrol_current_executing_seats``, summed over levels) from /metrics, and the
CPU time of the sim process (psutil; 100% = one core, the sim is one event loop).

Reading the table: while the sim's CPU is well below 100% and its loop lag small, latency is the
model's; when CPU nears 100% (or lag grows to tens of ms) the sim itself is the bottleneck and
any knee seen there is an artefact. The model's own capacity is its seats divided by the mean
seat-seconds per request (``model_capacity``); compare it with the rate where the CPU saturates.
By default the sim is pinned to one core and this generator to the other (``--no-pin``): the
machine has 2 cores, shared with other users, so figures move from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import aiohttp
import psutil

from loadlab import runloop
from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import MAX_LAG_S, OpenLoopRunner
from loadlab.engine.schedule import PoissonArrivals
from loadlab.metrics.recorder import Recorder
from loadlab.metrics.stats import window_stats
from loadlab.profile import Profile, load_profile
from loadlab.shipped import profile_file
from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.targets.http import HttpTarget
from loadlab.testing.cpu import pin_cores, self_cpu_s
from loadlab.wiring import MAX_BACKLOG, http_operations

DEFAULT_PROFILE = "http-knee"
"""A shipped profile by name, or a path, as `loadlab run` takes it."""
DEFAULT_RATES = (200, 400, 800, 1600, 3200)
DRAIN_S = 5.0
PAUSE_S = 1.0
"""Between steps, so one step's stragglers do not land in the next."""
MAX_STEP_S = 120.0
"""Steps are bounded: this is a check, not a soak."""
LAG_METRIC = "loadlab_sim_event_loop_lag_seconds"
SEATS_METRIC = "apiserver_flowcontrol_current_executing_seats"
QUEUED_METRIC = "apiserver_flowcontrol_current_inqueue_requests"
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@dataclass(frozen=True)
class StepResult:
    """One rate, over its measured window."""

    offered_per_s: float
    sent_per_s: float
    achieved_per_s: float
    """OK (2xx) completions per second."""
    error_rate: float
    throttled: int
    """429 answers (APF rejections)."""
    p50_ms: float
    p99_ms: float
    """From the intended send time (coordinated-omission corrected), all operations."""
    sim_cpu_percent: float
    """CPU time of the sim process over wall time; 100 = one full core."""
    sim_loop_lag_mean_ms: float
    sim_loop_lag_max_ms: float
    """Of the sim's own event-loop lag gauge, sampled."""
    seats_mean: float
    seats_max: float
    """Seats the sim's APF model had executing (all levels), sampled."""
    queued_mean: float
    """Requests waiting in the model's APF queues (all levels), sampled: > 0 = model saturated."""
    sim_core_busy_percent: float
    """How busy the sim's core was with anything (other users too); -1 when not pinned."""
    generator_cpu_percent: float
    generator_lag_p99_ms: float
    """Dispatch lag of this generator: large means the generator, not the sim, fell behind."""
    samples: int


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name: value summed over label sets} (enough for gauges here)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE_RE.match(line)
        if match is not None:
            name, value = match.group(1), float(match.group(3))
            out[name] = out.get(name, 0.0) + value
    return out


class SimSampler:
    """Samples the sim's /metrics and its process CPU while a step measures."""

    def __init__(self, api_url: str, pid: int, interval_s: float) -> None:
        self._url = api_url.rstrip("/") + "/metrics"
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self.lag_s: list[float] = []
        self.seats: list[float] = []
        self.queued: list[float] = []

    def cpu_s(self) -> float:
        times = self._proc.cpu_times()
        return float(times.user + times.system)

    async def run(self, session: aiohttp.ClientSession, end_ns: int, clock: MonotonicClock) -> None:
        while clock.now_ns() < end_ns:
            async with session.get(self._url) as resp:
                values = parse_metrics(await resp.text())
            self.lag_s.append(values.get(LAG_METRIC, 0.0))
            self.seats.append(values.get(SEATS_METRIC, 0.0))
            self.queued.append(values.get(QUEUED_METRIC, 0.0))
            await clock.sleep_until(min(end_ns, clock.now_ns() + int(self._interval_s * NS_PER_S)))


def core_times(core: int | None) -> tuple[float, float]:
    """(busy, total) CPU seconds of one core so far; (0, 0) for None."""
    if core is None:
        return 0.0, 0.0
    t = psutil.cpu_times(percpu=True)[core]
    total = float(sum(t))
    return total - float(t.idle + getattr(t, "iowait", 0.0)), total


async def run_step(
    profile: Profile,
    sim: SimProcess,
    rate_per_s: float,
    *,
    warmup_s: float,
    step_s: float,
    sample_s: float,
    seed: int,
    sim_core: int | None,
) -> StepResult:
    assert profile.api is not None
    clock = MonotonicClock()
    target = HttpTarget(
        sim.api_url,
        http_operations(profile),
        connections=profile.api.connections,
        timeout_s=profile.api.timeout_s,
        clock=clock,
    )
    start_ns = clock.now_ns()
    measure_ns = start_ns + int(warmup_s * NS_PER_S)
    end_ns = measure_ns + int(step_s * NS_PER_S)
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    runner = OpenLoopRunner(
        clock,
        target,
        PoissonArrivals(rate_per_s, start_ns=start_ns, end_ns=end_ns, seed=seed),
        OpMix(target.weights, seed=seed),
        recorder,
        end_ns=end_ns,
        max_lag_ns=int(MAX_LAG_S * NS_PER_S),
        max_backlog=MAX_BACKLOG,
    )
    sampler = SimSampler(sim.api_url, sim.pid, sample_s)
    await target.open(recorder)
    try:
        async with aiohttp.ClientSession() as session:
            run = asyncio.ensure_future(runner.run())
            await clock.sleep_until(measure_ns)
            recorder.rotate(clock.now_ns())  # the warm-up window is discarded
            sim_cpu0, gen_cpu0, t0 = sampler.cpu_s(), self_cpu_s(), time.monotonic()
            core0 = core_times(sim_core)
            await sampler.run(session, end_ns, clock)
            await run
            await clock.sleep_until(end_ns)
            snap = recorder.rotate(clock.now_ns())
            wall_s = time.monotonic() - t0
            sim_cpu_s, gen_cpu_s = sampler.cpu_s() - sim_cpu0, self_cpu_s() - gen_cpu0
            core1 = core_times(sim_core)
        await target.drain(clock.now_ns() + int(DRAIN_S * NS_PER_S))
    finally:
        await target.close()
    stats = window_stats([snap], offered_per_s=rate_per_s)
    lag_ms = [v * 1000.0 for v in sampler.lag_s] or [0.0]
    seats = sampler.seats or [0.0]
    queued = sampler.queued or [0.0]
    core_total_s = core1[1] - core0[1]
    core_busy = 100.0 * (core1[0] - core0[0]) / core_total_s if core_total_s > 0 else -1.0
    return StepResult(
        offered_per_s=rate_per_s,
        sent_per_s=stats.sent / stats.duration_s,
        achieved_per_s=stats.achieved_per_s,
        error_rate=stats.error_rate,
        throttled=stats.errors_by_outcome.get("429", 0),
        p50_ms=stats.latency.p50_ms,
        p99_ms=stats.latency.p99_ms,
        sim_cpu_percent=100.0 * sim_cpu_s / wall_s,
        sim_loop_lag_mean_ms=sum(lag_ms) / len(lag_ms),
        sim_loop_lag_max_ms=max(lag_ms),
        seats_mean=sum(seats) / len(seats),
        seats_max=max(seats),
        queued_mean=sum(queued) / len(queued),
        sim_core_busy_percent=core_busy,
        generator_cpu_percent=100.0 * gen_cpu_s / wall_s,
        generator_lag_p99_ms=stats.lag_p99_ms,
        samples=len(sampler.lag_s),
    )


def sim_args(profile: Profile, sim_config: str | None) -> list[str]:
    """The sim's command line, as loadlab.launch builds it from the profile."""
    args = ["--nodes", str(profile.sim.nodes), "--pods-per-node", str(profile.sim.pods_per_node)]
    config = sim_config if sim_config is not None else profile.sim.config
    if config is not None:
        args += ["--config", config]
    return args


def render(steps: Sequence[StepResult], header: str) -> str:
    head = (
        f"{'offered/s':>9} {'sent/s':>7} {'OK/s':>7} {'429':>6} {'err%':>5} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'sim CPU%':>8} {'core%':>6} {'lag mean':>8} {'lag max':>8}"
        f" {'seats':>6} {'seats max':>9} {'queued':>6} {'gen CPU%':>8}"
    )
    lines = [header, head, "-" * len(head)]
    for s in steps:
        lines.append(
            f"{s.offered_per_s:>9,.0f} {s.sent_per_s:>7,.0f} {s.achieved_per_s:>7,.0f}"
            f" {s.throttled:>6,} {100 * s.error_rate:>5.1f} {s.p50_ms:>8.1f} {s.p99_ms:>8.1f}"
            f" {s.sim_cpu_percent:>8.0f} {s.sim_core_busy_percent:>6.0f}"
            f" {s.sim_loop_lag_mean_ms:>8.1f} {s.sim_loop_lag_max_ms:>8.1f}"
            f" {s.seats_mean:>6.1f} {s.seats_max:>9.0f} {s.queued_mean:>6.1f}"
            f" {s.generator_cpu_percent:>8.0f}"
        )
    lines.append(
        "(lag: the sim's own loadlab_sim_event_loop_lag_seconds, ms; seats/queued: its APF model;"
        " CPU% 100 = one core; core%: the sim's core busy with anything, other users included)"
    )
    return "\n".join(lines)


async def run_all(
    profile: Profile,
    sim: SimProcess,
    rates: Sequence[float],
    args: argparse.Namespace,
    sim_core: int | None,
) -> list[StepResult]:
    results: list[StepResult] = []
    for i, rate in enumerate(rates):
        step = await run_step(
            profile,
            sim,
            rate,
            warmup_s=args.warmup_s,
            step_s=min(args.step_s, MAX_STEP_S),
            sample_s=args.sample_ms / 1000.0,
            seed=i + 1,
            sim_core=sim_core,
        )
        results.append(step)
        if not args.json:
            print(render([step], "").splitlines()[-2], file=sys.stderr, flush=True)
        await asyncio.sleep(PAUSE_S)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--sim-config", default=None, help="YAML sim config for the sim")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile override as in loadlab run --set, e.g. sim.nodes=1000",
    )
    parser.add_argument(
        "--rates", default=",".join(str(r) for r in DEFAULT_RATES), help="comma-separated req/s"
    )
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--sample-ms", type=float, default=250.0, help="/metrics sampling period")
    parser.add_argument("--no-pin", action="store_true", help="do not pin sim and generator")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with profile_file(args.profile) as profile_path:
        profile = load_profile(profile_path, args.set)
    if profile.api is None:
        parser.error(f"{args.profile} has no api section")
    with start_sim_process(sim_args(profile, args.sim_config)) as sim:
        pinned = pin_cores(sim.pid, not args.no_pin, server="sim", generators="loadlab")
        pinning, sim_core = pinned.description, pinned.server_core
        with runloop.runner() as runner:
            steps = runner.run(run_all(profile, sim, rates, args, sim_core))
    header = (
        f"{profile.name}: sim {profile.sim.nodes} nodes x {profile.sim.pods_per_node} pods, "
        f"{profile.api.connections} connections, Poisson; {pinning}; "
        f"{os.cpu_count()} cores on the machine, shared"
    )
    if args.json:
        print(json.dumps({"header": header, "steps": [asdict(s) for s in steps]}))
    else:
        print(render(steps, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
