"""Subprocess helpers for end-to-end tests: servers of known behaviour and the CLI itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 20.0
FAST_RAMP = ("--quiet", "--set", "load.ramp.step_s=4", "--set", "load.ramp.warmup_s=1")
"""Short steps for end-to-end knee tests: 4 s steps with 1 s of warm-up, no live display."""


def loadlab(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "loadlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )


@contextlib.contextmanager
def capacity_server(slots: int, service_ms: float, queue: int) -> Iterator[str]:
    """Start ``loadlab.testing.capacity`` on a free loopback port; yield its base URL."""
    cmd = [sys.executable, "-m", "loadlab.testing.capacity", "--slots", str(slots)]
    cmd += ["--service-ms", str(service_ms), "--queue", str(queue), "--ready-json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"capacity server exited with {proc.wait(timeout=5)}")
        ready: dict[str, Any] = json.loads(line)
        yield str(ready["api"])
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def read_summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data
