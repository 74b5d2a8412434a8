"""``machine.json``: the machine a run ran on, so a report can say where its figures came from.

A knee measured on 2 cores of a laptop and one measured on 64 cores of a server are different
facts; a result without its machine cannot be compared or reproduced."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psutil

from loadlab import __version__

MACHINE_FILE = "machine.json"


def machine_info() -> dict[str, Any]:
    """Host, OS, Python, loadlab, CPU model and count, memory. Never raises: a field that
    cannot be read is None."""
    return {
        "hostname": platform.node(),
        "os": platform.platform(terse=True),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadlab": __version__,
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None
