"""CPU pinning and CPU-time readings for side-by-side measurements (bench/ uses them)."""

from __future__ import annotations

import os
import resource

import psutil


def pin_cores(server_pid: int, enabled: bool, *, server: str, generators: str) -> str:
    """Server (every thread) on one core, this process on another; its children inherit it."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return f"not pinned ({len(cpus)} usable core(s){'' if enabled else ', --no-pin'})"
    server_cpu, generator_cpu = cpus[0], cpus[1]
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        os.sched_setaffinity(int(tid), {server_cpu})
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        os.sched_setaffinity(int(tid), {generator_cpu})
    return (
        f"{server} pinned to core {server_cpu}, generators ({generators}) to core {generator_cpu}"
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
