"""CPU pinning and CPU-time readings for side-by-side measurements (bench/ uses them)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Pinning:
    """Where a side-by-side measurement put its processes."""

    description: str
    """One line for the report: which process runs on which core, or why nothing was pinned."""
    server_core: int | None
    """The core the server was pinned to, None when not pinned."""

    def __str__(self) -> str:
        return self.description


def pin_cores(server_pid: int, enabled: bool, *, server: str, generators: str) -> Pinning:
    """Server (every thread) on one core, this process on another; its children inherit it."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        why = f"not pinned ({len(cpus)} usable core(s){'' if enabled else ', --no-pin'})"
        return Pinning(why, None)
    server_cpu, generator_cpu = cpus[0], cpus[1]
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        os.sched_setaffinity(int(tid), {server_cpu})
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        os.sched_setaffinity(int(tid), {generator_cpu})
    return Pinning(
        f"{server} pinned to core {server_cpu}, generators ({generators}) to core {generator_cpu}",
        server_cpu,
    )


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
    """CPU of children already waited for: the server is not, so a delta is the tool's own."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class ToolRun:
    """An external load tool's run: its output, and CPU use of it and of the server, in %."""

    stdout: str
    wall_s: float
    tool_cpu_percent: float
    server_cpu_percent: float


def run_tool(argv: Sequence[str], *, timeout_s: float, server_pid: int) -> ToolRun:
    """Run ``argv`` to the end (killed past ``timeout_s``) and measure its and the server's CPU."""
    cpu0, srv0, t0 = children_cpu_s(), process_cpu_s(server_pid), time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    wall_s = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.strip()}")
    return ToolRun(
        stdout=out,
        wall_s=wall_s,
        tool_cpu_percent=100 * (children_cpu_s() - cpu0) / wall_s,
        server_cpu_percent=100 * (process_cpu_s(server_pid) - srv0) / wall_s,
    )
