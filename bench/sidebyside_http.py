"""wrk and loadlab's HTTP engine against the same loopback server, in one run, with the ratio.

Run from the repository root: ``.venv/bin/python bench/sidebyside_http.py --duration 5``.

One server subprocess (``--server raw``: a minimal keep-alive HTTP/1.1 responder on a bare uvloop
protocol, fast enough that the generators are what is measured; ``capacity``: the aiohttp server
``loadlab.testing.capacity``, 2000 req/s by construction) is pinned to one core and the generators
to the other. Then, for ``--duration`` seconds each and ``--rounds`` times in turn (A B C A B C,
so a drift of the machine lands on every tool alike): ``wrk -t1 -c64 --latency``, loadlab's
``ClosedLoopRunner`` with 64 in flight over ``HttpTarget`` (aiohttp) and over ``FastHttpTarget``
(``asyncio.Protocol`` + httptools), on uvloop. Each tool's figure is its median run. Then
loadlab's ``OpenLoopRunner`` over ``--open-target`` at a constant rate: 80% of each closed-loop
figure (or once at ``--open-rate``). ``--profile FILE`` runs the closed loops under cProfile.
Generator CPU% is CPU time over wall time of the generating process (100% = one core). The JSON
document goes to ``--out`` (default ``bench/results/<UTC date>-http.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from loadlab import runloop
from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import MAX_LAG_S, ClosedLoopRunner, OpenLoopRunner
from loadlab.engine.schedule import ConstantRate
from loadlab.metrics.recorder import Recorder, merge_blobs
from loadlab.metrics.stats import summarize_histogram, window_stats
from loadlab.targets.base import Outcome
from loadlab.targets.fast_http import FastHttpTarget
from loadlab.targets.http import HttpOperation, HttpTarget
from loadlab.testing.cpu import pin_cores, process_cpu_s, run_tool, self_cpu_s
from loadlab.wiring import MAX_BACKLOG

T = TypeVar("T")

TARGETS: dict[str, type[HttpTarget] | type[FastHttpTarget]] = {
    "aiohttp": HttpTarget,
    "fast": FastHttpTarget,
}
"""loadlab's HTTP targets by the name the table shows (``loadlab <name>``)."""
RESULTS_DIR = Path(__file__).resolve().parent / "results"

WRK = "/usr/bin/wrk"
MAX_DURATION_S = 120.0
"""Durations are bounded: this is a side-by-side check, not a soak."""
READY_TIMEOUT_S = 10.0
DRAIN_S = 2.0
PAUSE_S = 0.5
"""Between tools, so one run's stragglers and TIME_WAITs do not land in the next."""
OK_BODY = b'{"kind":"Status","status":"Success"}'
RAW_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(OK_BODY)).encode()
    + b"\r\n\r\n"
    + OK_BODY
)
END_OF_HEADERS = b"\r\n\r\n"


@dataclass(frozen=True)
class ToolResult:
    """One generator's figures over one run."""

    tool: str
    requests_per_s: float
    """Completed requests per second (wrk: its Requests/sec; loadlab: OK completions/s)."""
    p50_ms: float
    p99_ms: float
    generator_cpu_percent: float
    """CPU time of the generating process over wall time; 100 = one full core."""
    server_cpu_percent: float
    errors: int
    """wrk: socket errors plus non-2xx/3xx; loadlab: completions that are not OK."""
    command: str


@dataclass(frozen=True)
class OpenLoopResult:
    """loadlab's open loop at a fixed offered rate."""

    basis: str
    """How the rate was chosen: ``80% of wrk``, ``80% of loadlab``, ``--open-rate``."""
    offered_per_s: float
    sent_per_s: float
    achieved_per_s: float
    """OK completions per second within the window."""
    skipped: int
    """Intended sends dropped for lag over MAX_LAG_S: the generator could not keep up."""
    overflowed: int
    lag_p99_ms: float
    p50_ms: float
    p99_ms: float
    """Latency of OK answers from the intended send time (coordinated-omission corrected)."""
    generator_cpu_percent: float


# -- the raw server (this script run as ``--serve-raw``, in a subprocess) ------------------------


class _RawHttp(asyncio.Protocol):
    """Answers every request head with one canned 200: GETs without bodies, keep-alive."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport: cast, do not isinstance.
        self._transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else data
        heads = buf.count(END_OF_HEADERS)
        if heads and self._transport is not None:
            self._transport.write(RAW_RESPONSE * heads)
            buf = buf[buf.rfind(END_OF_HEADERS) + len(END_OF_HEADERS) :]
        self._tail = buf[-65536:]


async def _serve_raw() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(_RawHttp, "127.0.0.1", 0, backlog=4096)
    port = int(server.sockets[0].getsockname()[1])
    print(json.dumps({"api": f"http://127.0.0.1:{port}"}), flush=True)
    async with server:
        await stop.wait()


def start_server(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server in its own process group; return it and its base URL once it listens."""
    if kind == "capacity":
        argv = [sys.executable, "-m", "loadlab.testing.capacity", "--ready-json"]
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--serve-raw"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        os.set_blocking(proc.stdout.fileno(), False)
        buf = b""
        while b"\n" not in buf:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start (exit {proc.poll()})")
            buf += proc.stdout.read() or b""
            time.sleep(0.02)
        url = str(json.loads(buf.split(b"\n", 1)[0])["api"])
    except BaseException:
        stop_process_group(proc)
        raise
    return proc, url


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


# -- pinning and CPU -----------------------------------------------------------------------------


# -- wrk -----------------------------------------------------------------------------------------

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_duration_ms(text: str) -> float:
    """``612.53us`` / ``1.20ms`` / ``2.00s`` -> milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    """Requests/sec, p50 ms, p99 ms and errors from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock is not None:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx is not None:
        errors += int(non2xx.group(1))
    return float(rps.group(1)), wrk_duration_ms(p50.group(1)), wrk_duration_ms(p99.group(1)), errors


def run_wrk(url: str, duration_s: float, connections: int, server_pid: int) -> ToolResult:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{round(duration_s)}s", "--latency", url + "/"]
    run = run_tool(argv, timeout_s=duration_s + 15, server_pid=server_pid)
    rps, p50, p99, errors = parse_wrk(run.stdout)
    return ToolResult(
        tool="wrk -t1",
        requests_per_s=rps,
        p50_ms=p50,
        p99_ms=p99,
        generator_cpu_percent=run.tool_cpu_percent,
        server_cpu_percent=run.server_cpu_percent,
        errors=errors,
        command=" ".join(argv),
    )


# -- loadlab -------------------------------------------------------------------------------------

OPERATION = HttpOperation("get-root", "GET", "/")


async def loadlab_closed(
    url: str, duration_s: float, connections: int, server_pid: int, kind: str
) -> ToolResult:
    clock = MonotonicClock()
    target = TARGETS[kind](url, [OPERATION], connections=connections, clock=clock)
    start_ns = clock.now_ns()
    end_ns = start_ns + int(duration_s * NS_PER_S)
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    runner = ClosedLoopRunner(
        clock, target, OpMix.single(), recorder, concurrency=connections, end_ns=end_ns
    )
    cpu0, srv0 = self_cpu_s(), process_cpu_s(server_pid)
    await target.open(runner.sink)
    try:
        await runner.run()
        snap = recorder.rotate(clock.now_ns())
        cpu1, srv1 = self_cpu_s(), process_cpu_s(server_pid)
        await target.drain(clock.now_ns() + int(DRAIN_S * NS_PER_S))
    finally:
        await target.close()
    stats = window_stats([snap])
    wall_s = snap.duration_s
    return ToolResult(
        tool=f"loadlab {kind}",
        requests_per_s=stats.achieved_per_s,
        p50_ms=stats.latency.p50_ms,
        p99_ms=stats.latency.p99_ms,
        generator_cpu_percent=100 * (cpu1 - cpu0) / wall_s,
        server_cpu_percent=100 * (srv1 - srv0) / wall_s,
        errors=stats.errors,
        command=f"ClosedLoopRunner(concurrency={connections}) + {TARGETS[kind].__name__}"
        f"(connections={connections}) on uvloop",
    )


async def loadlab_open(
    url: str, duration_s: float, connections: int, rate_per_s: float, basis: str, kind: str
) -> OpenLoopResult:
    clock = MonotonicClock()
    target = TARGETS[kind](url, [OPERATION], connections=connections, clock=clock)
    start_ns = clock.now_ns()
    end_ns = start_ns + int(duration_s * NS_PER_S)
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    runner = OpenLoopRunner(
        clock,
        target,
        ConstantRate(rate_per_s, start_ns=start_ns, end_ns=end_ns),
        OpMix.single(),
        recorder,
        end_ns=end_ns,
        max_lag_ns=int(MAX_LAG_S * NS_PER_S),
        max_backlog=MAX_BACKLOG,
    )
    cpu0 = self_cpu_s()
    await target.open(recorder)
    try:
        run = await runner.run()
        await clock.sleep_until(end_ns)
        snap = recorder.rotate(clock.now_ns())
        cpu1 = self_cpu_s()
        await target.drain(clock.now_ns() + int(DRAIN_S * NS_PER_S))
    finally:
        await target.close()
    stats = window_stats([snap], offered_per_s=rate_per_s)
    # OK answers only: window_stats counts every outcome, and OVERFLOW completes at 0 latency.
    ok = summarize_histogram(
        merge_blobs(b for key, b in snap.corrected.items() if key[1] is Outcome.OK)
    )
    return OpenLoopResult(
        basis=f"{kind}, {basis}",
        offered_per_s=rate_per_s,
        sent_per_s=stats.sent / stats.duration_s,
        achieved_per_s=stats.achieved_per_s,
        skipped=run.skipped,
        overflowed=run.overflowed,
        lag_p99_ms=stats.lag_p99_ms,
        p50_ms=ok.p50_ms,
        p99_ms=ok.p99_ms,
        generator_cpu_percent=100 * (cpu1 - cpu0) / stats.duration_s,
    )


def run_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    with runloop.runner() as runner:
        return runner.run(coro)


# -- output --------------------------------------------------------------------------------------


def render_table(results: Sequence[ToolResult], open_loops: Sequence[OpenLoopResult]) -> str:
    head = f"{'tool':<16} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'gen CPU%':>9} {'srv CPU%':>9}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.tool:<16} {r.requests_per_s:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            f" {r.generator_cpu_percent:>9.0f} {r.server_cpu_percent:>9.0f}"
            + (f"  ({r.errors} errors)" if r.errors else "")
        )
    if open_loops:
        head = (
            f"{'open loop':<26} {'offered/s':>10} {'sent/s':>10} {'OK/s':>10} {'skipped':>8}"
            f" {'overflow':>8}"
            f" {'lag p99 ms':>11} {'p50 ms':>8} {'p99 ms':>9} {'gen CPU%':>9}"
        )
        lines += ["", head, "-" * len(head)]
        for o in open_loops:
            lines.append(
                f"{o.basis:<26} {o.offered_per_s:>10,.0f} {o.sent_per_s:>10,.0f}"
                f" {o.achieved_per_s:>10,.0f} {o.skipped:>8,} {o.overflowed:>8,}"
                f" {o.lag_p99_ms:>11.2f}"
                f" {o.p50_ms:>8.2f} {o.p99_ms:>9.2f} {o.generator_cpu_percent:>9.0f}"
            )
        lines.append(
            "(open-loop latency: OK answers, from the intended send time; overflow = sends refused"
            f" at once because {MAX_BACKLOG:,} were already queued or in flight)"
        )
    return "\n".join(lines)


def _profiled(path: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` under cProfile when ``path`` is given: stats to ``path``, top 25 to stderr."""
    if path is None:
        return fn()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return fn()
    finally:
        profiler.disable()
        profiler.dump_stats(path)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def open_rates(args: argparse.Namespace, results: Sequence[ToolResult]) -> list[tuple[str, float]]:
    """(basis, rate/s) of each open-loop run: ``--open-rate``, else a fraction of each tool."""
    if args.open_rate:
        return [("--open-rate", float(args.open_rate))]
    pct = f"{100 * args.open_fraction:.0f}%"
    return [
        (f"{pct} of {r.tool.removeprefix('loadlab ')}", args.open_fraction * r.requests_per_s)
        for r in results
        if r.requests_per_s > 0
    ]


def median_result(runs: Sequence[ToolResult]) -> ToolResult:
    """The run with the median req/s (the lower middle one for an even count), with the median
    req/s itself: a run's p99 and CPU belong to that run, not to a mix of runs."""
    middle = sorted(runs, key=lambda r: r.requests_per_s)[(len(runs) - 1) // 2]
    return replace(middle, requests_per_s=statistics.median(r.requests_per_s for r in runs))


def default_out() -> Path:
    return RESULTS_DIR / f"{datetime.now(UTC):%Y-%m-%d}-http.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/sidebyside_http.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per tool (5)")
    parser.add_argument("--connections", type=int, default=64, help="in flight / wrk -c (64)")
    parser.add_argument("--server", choices=["raw", "capacity"], default="raw")
    parser.add_argument(
        "--open-rate",
        type=float,
        help="one open-loop run at this rate/s (default: two, at 80%% of wrk and of loadlab)",
    )
    parser.add_argument("--open-fraction", type=float, default=0.8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each closed-loop tool, in turn (3)"
    )
    parser.add_argument("--open-target", choices=sorted(TARGETS), default="fast")
    parser.add_argument("--out", type=Path, help="where the JSON document goes")
    parser.add_argument("--no-save", action="store_true", help="write no JSON file")
    parser.add_argument("--no-open", action="store_true", help="skip the open-loop runs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generators")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile loadlab's closed loop (slows it down)"
    )
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.duration = float(round(args.duration))  # the reference tools take whole seconds
    if not 1.0 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be within 1..{MAX_DURATION_S:g} s")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be within 1..20")
    if not 1 <= args.connections <= 10_000:
        parser.error("--connections must be within 1..10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_raw:
        run_uvloop(_serve_raw())
        return 0
    if shutil.which(WRK) is None:
        print(f"{WRK} not found: run `make debs` (installs wrk)", file=sys.stderr)
        return 2
    # SIGTERM unwinds through the finally blocks below, so the server never outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server, url = start_server(args.server)
    runs: dict[str, list[ToolResult]] = {"wrk": [], **{kind: [] for kind in TARGETS}}
    open_loops: list[OpenLoopResult] = []
    try:
        pinning = pin_cores(server.pid, not args.no_pin, server="server", generators="loadlab, wrk")
        if not args.json:
            print(f"server: {args.server} at {url}; {pinning}", flush=True)
        for _ in range(args.rounds):
            runs["wrk"].append(run_wrk(url, args.duration, args.connections, server.pid))
            for kind in TARGETS:
                time.sleep(PAUSE_S)
                runs[kind].append(run_closed(args, url, server.pid, kind))
        results = [median_result(r) for r in runs.values()]
        if not args.no_open:
            bases = [results[0], results[1 + list(TARGETS).index(args.open_target)]]
            for basis, rate in open_rates(args, bases):
                time.sleep(PAUSE_S)
                coro = loadlab_open(
                    url, args.duration, args.connections, rate, basis, args.open_target
                )
                open_loops.append(run_uvloop(coro))
    finally:
        stop_process_group(server)
    wrk_rps = results[0].requests_per_s
    ratios = {
        kind: r.requests_per_s / wrk_rps if wrk_rps > 0 else float("nan")
        for kind, r in zip(TARGETS, results[1:], strict=True)
    }
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server": args.server,
        "url": url,
        "duration_s": args.duration,
        "connections": args.connections,
        "rounds": args.rounds,
        "pinning": str(pinning),
        "profiled": args.profile is not None,
        "results": [asdict(r) for r in results],
        "runs_req_per_s": {tool: [r.requests_per_s for r in rs] for tool, rs in runs.items()},
        "ratio_to_wrk": ratios,
        "open_loop": [asdict(o) for o in open_loops],
    }
    if not args.no_save:
        out = args.out or default_out()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
    print_report(args, doc, results, runs, open_loops)
    return 0


def run_closed(args: argparse.Namespace, url: str, server_pid: int, kind: str) -> ToolResult:
    """One closed-loop run of loadlab's ``kind`` target, under cProfile with ``--profile``
    (stats of the last run of each kind to ``FILE.<kind>``)."""
    path = f"{args.profile}.{kind}" if args.profile else None
    return _profiled(
        path,
        lambda: run_uvloop(loadlab_closed(url, args.duration, args.connections, server_pid, kind)),
    )


def print_report(
    args: argparse.Namespace,
    doc: dict[str, Any],
    results: Sequence[ToolResult],
    runs: dict[str, list[ToolResult]],
    open_loops: Sequence[OpenLoopResult],
) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(render_table(results, open_loops))
    runs_line = "; ".join(
        f"{tool} " + ", ".join(f"{r.requests_per_s:,.0f}" for r in rs) for tool, rs in runs.items()
    )
    print(f"\nruns (req/s, in turn): {runs_line}")
    for kind, ratio in doc["ratio_to_wrk"].items():
        print(f"ratio loadlab {kind}/wrk (closed loop, median req/s): {ratio:.2f}")
    if args.profile:
        print(f"(loadlab ran under cProfile: its figures are low; stats in {args.profile}.*)")
    if not args.no_save:
        print(f"(written to {args.out or default_out()})")


if __name__ == "__main__":
    sys.exit(main())
