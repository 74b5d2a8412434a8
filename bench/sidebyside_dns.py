"""dnsperf and ``loadlab run dns-throughput`` against the same loopback unbound, A B A B, with the
ratio of their medians.

Run from the repository root: ``.venv/bin/python bench/sidebyside_dns.py`` (``make bench`` does).

A real unbound (``loadlab.testing.unbound``: one thread, a static ``cluster.local.`` zone whose
records point into 192.0.2.0/24, answered from local-data) is pinned to one core and the
generators to the other. Then, ``--rounds`` times in turn, for ``--duration`` seconds each:
``dnsperf -q 100`` over a query file of the profile's questions, and ``loadlab run dns-throughput``
(100 outstanding over the profile's sockets, as a user runs it). dnsperf reports only an average
latency, so p50/p99 are loadlab's alone. The JSON document goes to ``--out`` (default
``bench/results/<UTC date>-dns.json``, or ``-dns-2.json`` and so on after a run that day).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.sidebyside import (
    ToolResult,
    add_common_arguments,
    alternate,
    check_common_arguments,
    document,
    machine_facts,
    run_loadlab,
    save_and_print,
)
from loadlab.profile import DnsSection, Profile, load_profile
from loadlab.shipped import profile_file
from loadlab.testing.cpu import pin_cores, run_tool

DNSPERF = "/usr/bin/dnsperf"
PROFILE = "dns-throughput"
PACKAGES = ("dnsperf", "unbound")


def unbound_pid() -> int:
    """The unbound that ``running_unbound`` started: our only child named unbound."""
    for child in psutil.Process().children():
        if child.name() == "unbound":
            return int(child.pid)
    raise RuntimeError("unbound is not running as a child of this process")


def shipped_profile() -> Profile:
    """The profile as shipped: its questions and concurrency go to dnsperf too."""
    with profile_file(PROFILE) as path:
        return load_profile(path)


def query_file(section: DnsSection, directory: Path) -> Path:
    """dnsperf's input: one ``name type`` line per question (dnsperf cycles through them)."""
    path = directory / "queries.txt"
    path.write_text("".join(f"{q.name} {q.type}\n" for q in section.queries))
    return path


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
    port: int, queries: Path, duration_s: float, outstanding: int, server_pid: int
) -> ToolResult:
    argv = [
        DNSPERF,
        *("-s", "127.0.0.1", "-p", str(port), "-d", str(queries)),
        *("-l", str(round(duration_s)), "-q", str(outstanding)),
    ]
    run = run_tool(argv, timeout_s=duration_s + 15, server_pid=server_pid)
    qps, avg_ms, lost = parse_dnsperf(run.stdout)
    return ToolResult(
        tool=f"dnsperf -q{outstanding}",
        rate_per_s=qps,
        p50_ms=None,
        p99_ms=None,
        avg_ms=avg_ms,
        generator_cpu_percent=run.tool_cpu_percent,
        server_cpu_percent=run.server_cpu_percent,
        errors=lost,
        command=" ".join(argv),
    )


# -- the run -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/sidebyside_dns.py", description=(__doc__ or "").split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a profile override for loadlab's runs, e.g. dns.sockets=1 (repeatable)",
    )
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for binary in (DNSPERF, "/usr/sbin/unbound"):
        if not Path(binary).exists():
            print(f"{binary} not found: `make bench` installs dnsperf and unbound", file=sys.stderr)
            return 2
    from loadlab.testing.unbound import running_unbound

    # SIGTERM unwinds through running_unbound's finally, so unbound never outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = shipped_profile()
    assert profile.dns is not None, f"{PROFILE} has a dns section"
    outstanding = profile.traffic.concurrency  # dnsperf -q: queries outstanding, the same
    facts = machine_facts(PACKAGES)
    with tempfile.TemporaryDirectory(prefix="sidebyside-dns-") as tmp:
        queries = query_file(profile.dns, Path(tmp))
        with running_unbound(Path(tmp)) as server:
            pid = unbound_pid()
            pinning = pin_cores(
                pid, not args.no_pin, server="unbound", generators="loadlab, dnsperf"
            )
            if not args.json:
                print(f"unbound at {server.addr}; {pinning}", flush=True)
            tools = {
                "dnsperf": lambda _: run_dnsperf(
                    server.port, queries, args.duration, outstanding, pid
                ),
                "loadlab": lambda round_no: run_loadlab(
                    PROFILE,
                    "--dns",
                    server.addr,
                    target="dns",
                    duration_s=args.duration,
                    server_pid=pid,
                    out_dir=Path(tmp) / f"run-{round_no}",
                    settings=args.settings,
                    profile_to=args.profile,
                ),
            }
            runs = alternate(args.rounds, tools, quiet=args.json)
    doc = document("dns", args, facts, pinning, runs, outstanding=outstanding)
    save_and_print(args, doc, "dns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
