"""``loadlab run --gate`` end to end: a cluster size that fits, and one that saturates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadlab.errors import EXIT_OK, EXIT_SLO_FAILED
from tests.shared_runs import RunResult

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

PROFILE = """\
name: {name}
agents:
  kubelet: {{start_spread_s: 1}}
  pod_dns: {{nodes: 5, interval_s: 2}}
sizes: [20]
phases: {{warmup_s: 2, steady_s: 13, duration_s: 14}}
sweep: {{window_s: 2}}
require: {{min_nodes: 20}}
"""
SATURATED_SIM = """\
sim:
  settings:
    # One seat and half a second per write: 20 kubelets registering and renewing are too many.
    overload: {total_seats: 1, max_mutating_inflight: 1, cost: {etcd_commit_s: 0.5}}
"""


def gate(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(text)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "loadlab", "run", str(profile), "--gate", "--quiet"]
    result = subprocess.run(
        [*command, "--no-report", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, json.loads((out / "summary.json").read_text())


def test_the_gate_passes_a_cluster_that_fits_its_required_size(sweep_result: RunResult) -> None:
    # The session's shared sweep (tests/shared_runs.py) runs with --gate, require.min_nodes=40.
    result = sweep_result
    summary = json.loads((result.out / "summary.json").read_text())
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("gate: passed - fits 40 nodes (required 40): held at 40 nodes")
    assert summary["gate"] == {"exit_code": 0, "line": last, "min_nodes": 40}
    size = summary["sizes"][-1]
    checks = {c["name"]: c for c in size["slo"]["checks"]}
    assert checks["kubelet/lease-renew p99_ms"]["passed"] is True
    assert checks["dns lookup p99_ms"]["threshold"] == 100.0


def test_the_gate_fails_naming_the_size_and_the_check_when_the_required_size_saturates(
    tmp_path: Path,
) -> None:
    result, summary = gate(tmp_path, PROFILE.format(name="saturates") + SATURATED_SIM)
    assert result.returncode == EXIT_SLO_FAILED, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("gate: FAILED - 20 nodes (required 20): API saturated at ")
    assert summary["exit_code"] == EXIT_SLO_FAILED
    assert "Traceback" not in result.stderr
