"""Real results folders for the report tests: one short ramp and one short sweep, each made by
``loadlab run`` against the embedded control plane once per test session (about 45 s together)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
SWEEP_ARGS = (
    "kubelet-baseline",
    "--sizes",
    "20,40",
    "--set",
    "phases.duration_s=14",  # a kubelet renews every 10 s: one renewal after the warm-up
    "--set",
    "phases.warmup_s=2",
    "--set",
    "sweep.window_s=2",
    "--set",
    "agents.kubelet.start_spread_s=1",
    "--set",
    "agents.pod_dns.nodes=5",
)
REPORT_OUTPUTS = ("report.html", "summary.md", "perfdash.json", "plots")
"""What ``loadlab report`` writes: removed from the copies the tests use, so a test sees only
what its own call wrote (``loadlab run`` may write a report of its own at its end)."""


def _run(out: Path, *args: str) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "loadlab", "run", *args, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    # A verdict either way is a finished run; anything else is a broken fixture, not a report bug.
    assert result.returncode in (EXIT_OK, EXIT_SLO_FAILED, EXIT_INCONCLUSIVE), (
        result.stdout + result.stderr
    )
    return out


@pytest.fixture(scope="session")
def ramp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("ramp") / "run", *RAMP_ARGS)


@pytest.fixture(scope="session")
def sweep_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("sweep") / "run", *SWEEP_ARGS)


def fresh_copy(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst`` without any report in it."""
    shutil.copytree(src, dst)
    for name in REPORT_OUTPUTS:
        path = dst / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return dst


@pytest.fixture
def ramp_folder(ramp_run: Path, tmp_path: Path) -> Path:
    return fresh_copy(ramp_run, tmp_path / "ramp")


@pytest.fixture
def sweep_folder(sweep_run: Path, tmp_path: Path) -> Path:
    return fresh_copy(sweep_run, tmp_path / "sweep")
