"""dnsperf and loadlab's DNS engine against the same loopback unbound, in one run, with the ratio.

Run from the repository root: ``.venv/bin/python bench/sidebyside_dns.py --duration 5``.

A real unbound (``loadlab.testing.unbound``: one thread, a static ``cluster.local.`` zone whose
records point into 192.0.2.0/24) is pinned to one core and the generators to the other. Then, for
``--duration`` seconds each: ``dnsperf -q 100`` (100 outstanding) over a query file of those names,
and loadlab's ``ClosedLoopRunner`` with 100 in flight over ``DnsTarget`` on uvloop, once per
``--sockets`` value (1 and 2). dnsperf reports only an average latency, so p50/p99 are loadlab's
alone. Generator CPU% is CPU time over wall time of the generating process (100% = one core).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from loadlab import runloop
from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import ClosedLoopRunner
from loadlab.metrics.recorder import Recorder, merge_blobs
from loadlab.metrics.stats import window_stats
from loadlab.targets.dns import DnsQuery, DnsTarget
from loadlab.testing.cpu import pin_cores, process_cpu_s, run_tool, self_cpu_s

T = TypeVar("T")

DNSPERF = "/usr/bin/dnsperf"
MAX_DURATION_S = 120.0
"""Durations are bounded: this is a side-by-side check, not a soak."""
DRAIN_S = 2.0
PAUSE_S = 0.5
"""Between tools, so one run's late answers do not land in the next."""
QUERIES = (
    DnsQuery("kubernetes.default.svc.cluster.local", "A"),
    DnsQuery("kube-dns.kube-system.svc.cluster.local", "A"),
    DnsQuery("web.default.svc.cluster.local", "A"),
    DnsQuery("web.default.svc.cluster.local", "AAAA"),
)
"""The names loadlab/testing/unbound.py's DEFAULT_RECORDS serves (all NOERROR with an answer)."""


@dataclass(frozen=True)
class ToolResult:
    """One generator's figures over one run."""

    tool: str
    queries_per_s: float
    """dnsperf: its Queries per second; loadlab: OK answers per second."""
    avg_ms: float
    p50_ms: float | None
    """None for dnsperf, which reports no percentiles."""
    p99_ms: float | None
    generator_cpu_percent: float
    """CPU time of the generating process over wall time; 100 = one full core."""
    server_cpu_percent: float
    lost_or_errors: int
    """dnsperf: queries lost; loadlab: completions that are not OK (timeouts included)."""
    command: str


def unbound_pid() -> int:
    """The unbound that ``running_unbound`` started: our only child named unbound."""
    for child in psutil.Process().children():
        if child.name() == "unbound":
            return int(child.pid)
    raise RuntimeError("unbound is not running as a child of this process")


# -- dnsperf -------------------------------------------------------------------------------------


def parse_dnsperf(output: str) -> tuple[float, float, int]:
    """Queries per second, average latency in ms and queries lost, from dnsperf's statistics."""
    qps = re.search(r"Queries per second:\s+([\d.]+)", output)
    avg = re.search(r"Average Latency \(s\):\s+([\d.]+)", output)
    lost = re.search(r"Queries lost:\s+(\d+)", output)
    if qps is None or avg is None:
        raise RuntimeError(f"could not parse dnsperf output:\n{output}")
    return float(qps.group(1)), float(avg.group(1)) * 1e3, int(lost.group(1)) if lost else 0


def run_dnsperf(
    port: int, query_file: Path, duration_s: float, outstanding: int, server_pid: int
) -> ToolResult:
    argv = [
        DNSPERF,
        *("-s", "127.0.0.1", "-p", str(port), "-d", str(query_file)),
        *("-l", str(round(duration_s)), "-q", str(outstanding)),
    ]
    run = run_tool(argv, timeout_s=duration_s + 15, server_pid=server_pid)
    qps, avg_ms, lost = parse_dnsperf(run.stdout)
    return ToolResult(
        tool=f"dnsperf -q{outstanding}",
        queries_per_s=qps,
        avg_ms=avg_ms,
        p50_ms=None,
        p99_ms=None,
        generator_cpu_percent=run.tool_cpu_percent,
        server_cpu_percent=run.server_cpu_percent,
        lost_or_errors=lost,
        command=" ".join(argv),
    )


# -- loadlab -------------------------------------------------------------------------------------


async def loadlab_closed(
    port: int, duration_s: float, outstanding: int, sockets: int, server_pid: int
) -> ToolResult:
    clock = MonotonicClock()
    target = DnsTarget("127.0.0.1", port, QUERIES, sockets=sockets, clock=clock)
    start_ns = clock.now_ns()
    end_ns = start_ns + int(duration_s * NS_PER_S)
    recorder = Recorder(target.name, target.op_names, start_ns=start_ns)
    mix = OpMix(target.weights, seed=1)
    runner = ClosedLoopRunner(clock, target, mix, recorder, concurrency=outstanding, end_ns=end_ns)
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
    mean_us = float(merge_blobs(snap.uncorrected.values()).get_mean_value())
    return ToolResult(
        tool=f"loadlab sockets={sockets}",
        queries_per_s=stats.achieved_per_s,
        avg_ms=mean_us / 1e3,
        p50_ms=stats.latency.p50_ms,
        p99_ms=stats.latency.p99_ms,
        generator_cpu_percent=100 * (cpu1 - cpu0) / wall_s,
        server_cpu_percent=100 * (srv1 - srv0) / wall_s,
        lost_or_errors=stats.errors,
        command=f"ClosedLoopRunner(concurrency={outstanding}) + DnsTarget(sockets={sockets}) "
        "on uvloop",
    )


def run_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    with runloop.runner() as runner:
        return runner.run(coro)


# -- output --------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_table(results: Sequence[ToolResult]) -> str:
    base = results[0].queries_per_s
    head = (
        f"{'tool':<18} {'qps':>10} {'avg ms':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'gen CPU%':>9} {'srv CPU%':>9} {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = r.queries_per_s / base if base > 0 else float("nan")
        lines.append(
            f"{r.tool:<18} {r.queries_per_s:>10,.0f} {r.avg_ms:>8.3f} {_ms(r.p50_ms):>8}"
            f" {_ms(r.p99_ms):>8} {r.generator_cpu_percent:>9.0f} {r.server_cpu_percent:>9.0f}"
            f" {ratio:>6.2f}" + (f"  ({r.lost_or_errors} lost/errors)" if r.lost_or_errors else "")
        )
    lines.append("(ratio: qps over dnsperf's; latency from send, all operations)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/sidebyside_dns.py", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per tool (5)")
    parser.add_argument(
        "--outstanding", "--connections", type=int, default=100, help="in flight / -q (100)"
    )
    parser.add_argument(
        "--sockets", default="1,2", help="loadlab UDP socket counts, comma-separated (1,2)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generators")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    args.duration = float(round(args.duration))  # the reference tools take whole seconds
    if not 1.0 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be within 1..{MAX_DURATION_S:g} s")
    if not 1 <= args.outstanding <= 60_000:
        parser.error("--outstanding must be within 1..60000")
    try:
        args.socket_counts = [int(s) for s in args.sockets.split(",")]
    except ValueError:
        parser.error(f"--sockets takes integers like 1,2; got {args.sockets!r}")
    if not all(1 <= n <= 64 for n in args.socket_counts):
        parser.error("--sockets values must be within 1..64")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for binary in (DNSPERF, "/usr/sbin/unbound"):
        if not Path(binary).exists():
            print(
                f"{binary} not found: run `make debs` (installs dnsperf, unbound)", file=sys.stderr
            )
            return 2
    from loadlab.testing.unbound import running_unbound

    # SIGTERM unwinds through running_unbound's finally, so unbound never outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[ToolResult] = []
    with tempfile.TemporaryDirectory(prefix="sidebyside-dns-") as tmp:
        query_file = Path(tmp) / "queries.txt"
        query_file.write_text("".join(f"{q.name} {q.rdtype}\n" for q in QUERIES))
        with running_unbound(Path(tmp)) as server:
            pid = unbound_pid()
            pinning = pin_cores(
                pid, not args.no_pin, server="unbound", generators="loadlab, dnsperf"
            )
            if not args.json:
                print(f"unbound at {server.addr}; {pinning}", flush=True)
            results.append(
                run_dnsperf(server.port, query_file, args.duration, args.outstanding, pid)
            )
            for sockets in args.socket_counts:
                time.sleep(PAUSE_S)
                results.append(
                    run_uvloop(
                        loadlab_closed(server.port, args.duration, args.outstanding, sockets, pid)
                    )
                )
    if args.json:
        base = results[0].queries_per_s
        doc = {
            "duration_s": args.duration,
            "outstanding": args.outstanding,
            "pinning": str(pinning),
            "results": [
                {**asdict(r), "ratio_to_dnsperf": r.queries_per_s / base if base else None}
                for r in results
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
