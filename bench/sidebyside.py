"""What the side-by-side scripts share: loadlab's profile run as a user runs it, A B A B rounds,
medians, the machine's facts and the JSON document in ``bench/results/``.

loadlab's side is always ``loadlab run <profile>`` in a subprocess (``http-throughput``,
``dns-throughput``), so what is measured is the runner, target and recorder the profile wiring
builds, not a hand-built path. Its rate is read from ``timeline.csv``: the OK answers of the
intervals that offered load (exactly the profile's ``duration_s``; the second before the load starts
and the drain after it are left out), the same span the reference tool's own figure covers.
``summary.json``'s step rate is not used: a closed loop's step is judged over its duration plus
one interval for the drain, so it reads ``duration / (duration + 1)`` of the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from loadlab.metrics.hlog import read_hlog
from loadlab.metrics.recorder import new_histogram
from loadlab.metrics.timeline import read_timeline
from loadlab.testing.cpu import Pinning, pin_cores, process_cpu_s

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MAX_DURATION_S = 120.0
"""Durations are bounded: this is a side-by-side check, not a soak."""
PAUSE_S = 0.5
"""Between tools, so one run's stragglers and TIME_WAITs do not land in the next."""
MEASURED_EXIT_CODES = frozenset({0, 1, 4})
"""``loadlab run`` measured and judged (passed, failed, generator-limited): its files are whole."""
STARTUP_S = 30.0
"""What a ``loadlab run`` may take beyond its load: imports, the probe, the second before the
load starts, the drain, summary and files. Only a bound for killing a hung run."""


@dataclass(frozen=True)
class ToolResult:
    """One generator's figures over one run."""

    tool: str
    rate_per_s: float
    """OK answers per second (wrk: Requests/sec; dnsperf: Queries per second)."""
    p50_ms: float | None
    """None when the tool reports no percentiles (dnsperf)."""
    p99_ms: float | None
    avg_ms: float | None
    """Mean latency from the send (dnsperf's Average Latency); None when not read."""
    generator_cpu_percent: float
    """CPU time of the generating process over its load; 100 = one full core."""
    server_cpu_percent: float
    errors: int
    """Answers that were not OK, or (dnsperf) queries lost."""
    command: str


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool, in turn (3)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generators")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead")
    parser.add_argument("--out", type=Path, help="where the JSON document goes")
    parser.add_argument("--no-save", action="store_true", help="write no JSON file")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run loadlab under cProfile (stats of its last run to FILE; its figures are then low)",
    )


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.duration = float(round(args.duration))  # the reference tools take whole seconds
    if not 1.0 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be within 1..{MAX_DURATION_S:g} s")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be within 1..20")


# -- loadlab, as a user runs it ------------------------------------------------------------------


def run_loadlab(
    profile: str,
    address_flag: str,
    address: str,
    *,
    target: str,
    duration_s: float,
    server_pid: int,
    out_dir: Path,
    settings: Sequence[str] = (),
    profile_to: str | None = None,
) -> ToolResult:
    """``loadlab run PROFILE ADDRESS_FLAG ADDRESS --set load.duration_s=D`` into ``out_dir``,
    and its figures for ``target`` (``api`` or ``dns``) over the intervals that offered load."""
    sets = [f"load.duration_s={duration_s:g}", *settings]
    run_args = ["run", profile, address_flag, address, "--quiet", "--no-report"]
    run_args += ["--out", str(out_dir), *(x for s in sets for x in ("--set", s))]
    python = [sys.executable]
    if profile_to is not None:
        python += ["-m", "cProfile", "-o", profile_to]
    argv = [*python, "-m", "loadlab", *run_args]
    server_cpu0 = process_cpu_s(server_pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + STARTUP_S)
    server_cpu_s = process_cpu_s(server_pid) - server_cpu0
    if done.returncode not in MEASURED_EXIT_CODES:
        raise RuntimeError(f"loadlab exited {done.returncode}: {done.stderr.strip()}")
    window = load_window(read_timeline(out_dir / "timeline.csv"), target)
    summary = json.loads((out_dir / "summary.json").read_text())
    step = summary["steps"][-1]
    if profile_to is not None:
        pstats.Stats(profile_to, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return ToolResult(
        tool=f"loadlab {profile}",
        rate_per_s=window.achieved_per_s,
        p50_ms=step["p50_ms"],
        p99_ms=step["p99_ms"],
        avg_ms=mean_from_send_ms(out_dir / f"{target}.uncorrected.hlog"),
        generator_cpu_percent=window.generator_cpu_percent,
        # The server is idle but for the load (the probe and the drain are a few requests).
        server_cpu_percent=100 * server_cpu_s / window.duration_s,
        errors=sum(step["errors_by_outcome"].values()),
        command="loadlab " + " ".join(run_args),
    )


@dataclass(frozen=True)
class LoadWindow:
    """A run's figures over the timeline rows that sent load."""

    duration_s: float
    achieved_per_s: float
    generator_cpu_percent: float
    """The generator's self-monitor, averaged over those rows (100 = one core)."""
    lag_p99_ms: float
    """The worst interval's schedule-lag p99 (an open loop's health)."""


def load_window(rows: Sequence[Mapping[str, float | None]], target: str) -> LoadWindow:
    """Rows whose ``<target>_offered_per_s`` (a closed loop: what it planned) is positive; row k
    spans (t_s[k-1], t_s[k]]. Not ``sent``: an open loop's last send may go out in the drain."""
    total_s = ok = cpu = 0.0
    lag = 0.0
    previous_s = 0.0
    for row in rows:
        t_s = row["t_s"] or 0.0
        span_s, previous_s = t_s - previous_s, t_s
        if not (row.get(f"{target}_offered_per_s") or 0.0) > 0:
            continue
        total_s += span_s
        ok += (row.get(f"{target}_achieved_per_s") or 0.0) * span_s
        cpu += (row.get("generator_cpu_percent") or 0.0) * span_s
        lag = max(lag, row.get(f"{target}_lag_p99_ms") or 0.0)
    if total_s <= 0:
        raise RuntimeError(f"the run's timeline has no interval that sent {target} load")
    return LoadWindow(total_s, ok / total_s, cpu / total_s, lag)


def mean_from_send_ms(hlog: Path) -> float | None:
    """The mean latency from the send over every interval of an uncorrected hlog."""
    if not hlog.exists():
        return None
    merged = new_histogram()
    for interval in read_hlog(hlog):
        merged.add(interval.histogram)
    return float(merged.get_mean_value()) / 1e3 if merged.get_total_count() else None


# -- rounds and medians --------------------------------------------------------------------------


def alternate(
    rounds: int, tools: Mapping[str, Callable[[int], ToolResult]], *, quiet: bool
) -> dict[str, list[ToolResult]]:
    """Each tool once per round, in turn (A B A B ...), so a drift of the machine lands on
    every tool alike. ``tools[name](round)`` runs one."""
    runs: dict[str, list[ToolResult]] = {name: [] for name in tools}
    for round_no in range(rounds):
        for name, run in tools.items():
            time.sleep(PAUSE_S)
            result = run(round_no)
            runs[name].append(result)
            if not quiet:
                print(f"  round {round_no + 1}: {result_line(result)}", flush=True)
    return runs


def median_result(runs: Sequence[ToolResult]) -> ToolResult:
    """The run with the median rate (the lower middle one for an even count), with the median
    rate itself: a run's p99 and CPU belong to that run, not to a mix of runs."""
    middle = sorted(runs, key=lambda r: r.rate_per_s)[(len(runs) - 1) // 2]
    return replace(middle, rate_per_s=statistics.median(r.rate_per_s for r in runs))


def result_line(r: ToolResult) -> str:
    latency = " / ".join("-" if v is None else f"{v:.3f}" for v in (r.p50_ms, r.p99_ms, r.avg_ms))
    return (
        f"{r.tool:<26} {r.rate_per_s:>10,.0f}/s  p50/p99/avg ms {latency:<21}"
        f" CPU% gen {r.generator_cpu_percent:>3.0f} srv {r.server_cpu_percent:>3.0f}"
        + (f"  ({r.errors:,} errors)" if r.errors else "")
    )


def rate_per_core(r: ToolResult) -> float:
    """The rate per core the generator used: a measure of its cost that other work on the core
    disturbs less than the rate does (a starved tool sends less, and uses less CPU alike)."""
    return r.rate_per_s * 100 / r.generator_cpu_percent if r.generator_cpu_percent > 0 else 0.0


def noisy(r: ToolResult) -> bool:
    """Neither the generator nor the server had a core to itself: something else ran there."""
    return r.generator_cpu_percent < 90 and r.server_cpu_percent < 90


# -- the server's processes ----------------------------------------------------------------------


def pin_server_tree(pid: int, enabled: bool, *, server: str, generators: str) -> Pinning:
    """``pin_cores`` for ``pid``, and its child processes (nginx's worker) on its core too."""
    pinning = pin_cores(pid, enabled, server=server, generators=generators)
    if pinning.server_core is not None:
        for child in psutil.Process(pid).children(recursive=True):
            for thread in child.threads():
                os.sched_setaffinity(thread.id, {pinning.server_core})
    return pinning


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 3 s; never raises for a gone process."""
    if proc.poll() is None:
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# -- the document --------------------------------------------------------------------------------


def package_version(package: str) -> str | None:
    """The installed Debian package's version (``dpkg-query``), None when not installed."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    version = done.stdout.strip() if done.returncode == 0 else ""
    return version or None


def machine_facts(packages: Sequence[str]) -> dict[str, Any]:
    """What the figures depend on: CPU, cores, kernel, Python, the reference tools' versions,
    and the load average (other users of the cores show there)."""
    model = platform.processor() or "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {p: package_version(p) for p in packages},
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


def document(
    kind: str,
    args: argparse.Namespace,
    facts: Mapping[str, Any],
    pinning: Pinning,
    runs: Mapping[str, Sequence[ToolResult]],
    *,
    cpu_bound: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON document: medians, the ratio loadlab/reference, and every run. ``cpu_bound``:
    the server or a generator should saturate a core (not so for a server of set capacity),
    so runs where none did are counted as noisy."""
    medians = {name: median_result(rs) for name, rs in runs.items()}
    reference, loadlab = (medians[name].rate_per_s for name in runs)
    per_core = {name: statistics.median(rate_per_core(r) for r in rs) for name, rs in runs.items()}
    reference_per_core, loadlab_per_core = per_core.values()
    return {
        "kind": kind,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**facts, "loadavg_1m_at_end": os.getloadavg()[0]},
        "pinning": str(pinning),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "profiled": args.profile is not None,
        "medians": {name: asdict(r) for name, r in medians.items()},
        "ratio": loadlab / reference if reference > 0 else None,
        "rate_per_generator_core": per_core,
        "ratio_per_generator_core": (
            loadlab_per_core / reference_per_core if reference_per_core > 0 else None
        ),
        "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()},
        "noisy_runs": sum(noisy(r) for rs in runs.values() for r in rs) if cpu_bound else None,
        **extra,
    }


def default_results_path(kind: str, directory: Path = RESULTS_DIR) -> Path:
    """``<UTC date>-<kind>.json`` in ``directory``, or ``<date>-<kind>-2.json`` (3, ...) when the
    day already has one: a second run that day (another machine, another change) keeps the
    first one's figures."""
    stem = f"{datetime.now(UTC):%Y-%m-%d}-{kind}"
    out = directory / f"{stem}.json"
    n = 2
    while out.exists():
        out = directory / f"{stem}-{n}.json"
        n += 1
    return out


def save_and_print(args: argparse.Namespace, doc: Mapping[str, Any], kind: str) -> None:
    out = args.out or default_results_path(kind)
    if not args.no_save:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    names = list(doc["medians"])
    print(f"\nmedians of {doc['rounds']} rounds, {doc['duration_s']:g} s each:")
    for name in names:
        print("  " + result_line(ToolResult(**doc["medians"][name])))
    ratio, per_core = doc["ratio"], doc["ratio_per_generator_core"]
    print(f"ratio {names[1]} / {names[0]}: {'-' if ratio is None else f'{ratio:.2f}'}")
    rates = ", ".join(
        f"{name} {rate:,.0f}/s" for name, rate in doc["rate_per_generator_core"].items()
    )
    print(
        f"per core the generator used (median): {rates};"
        f" ratio {'-' if per_core is None else f'{per_core:.2f}'}"
    )
    if doc["noisy_runs"]:
        print(
            f"({doc['noisy_runs']} run(s) had neither generator nor server at >= 90% CPU:"
            " other work shared the cores)"
        )
    if args.profile:
        print(f"(loadlab ran under cProfile: its figures are low; stats in {args.profile})")
    if not args.no_save:
        print(f"(written to {out})")
