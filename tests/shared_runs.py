"""Real runs shared by the tests of a session: one short ramp and one short sweep of the embedded
control plane, each made once by ``loadlab run`` in its own process (about a minute together).
The report, compare, sweep and gate tests read them instead of running their own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED

RAMP_ARGS = (
    "http-knee",
    "--set",
    "load.ramp.start_per_s=100",
    "--set",
    "load.ramp.max_per_s=1600",
    "--set",
    "load.ramp.step_s=3",
    "--set",
    "load.ramp.warmup_s=1",
    "--set",
    "load.ramp.refine_within=0.5",
)
"""About 30 s: the default sim's knee (about 520/s with the full ramp) is bracketed between 400
and 600/s in two refining steps; 100, 200 and 400/s pass with 2 measured intervals each, enough
for a latency verdict in compare (test_compare_runs runs the same ramp against a cheaper sim)."""
SHORT_SIZE = (
    "--set",
    "phases.duration_s=14",  # a kubelet renews every 10 s: one renewal after the warm-up
    "--set",
    "phases.warmup_s=2",
    "--set",
    "sweep.window_s=2",
    "--set",
    "agents.kubelet.start_spread_s=1",
)
"""A kubelet scenario's size in about 14 s: the shortest that still judges a steady state (a
kubelet renews every 10 s, so one renewal falls after the warm-up)."""
SWEEP_ARGS = (
    "kubelet-baseline",
    "--sizes",
    "20,40",
    *SHORT_SIZE,
    "--set",
    "agents.pod_dns.nodes=5",
    "--gate",
    "--set",
    "require.min_nodes=40",
)
"""Two short sizes, run with ``--gate`` so the one run also shows the gate passing a cluster that
fits."""


@dataclass(frozen=True)
class RunResult:
    out: Path
    returncode: int
    stdout: str
    stderr: str


def run_loadlab(out: Path, *args: str) -> RunResult:
    result = subprocess.run(
        [sys.executable, "-m", "loadlab", "run", *args, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    # A verdict either way is a finished run; anything else is a broken fixture, not a bug of
    # what the tests using it check.
    assert result.returncode in (EXIT_OK, EXIT_SLO_FAILED, EXIT_INCONCLUSIVE), (
        result.stdout + result.stderr
    )
    return RunResult(out, result.returncode, result.stdout, result.stderr)
