"""Each shipped profile runs to completion against the embedded control plane, briefly.

A short version of each (``--set`` shortens steps and durations), through the real CLI in its own
process, as a user runs it: a profile that no longer runs is caught here, not by its first user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED
from loadlab.shipped import shipped_profiles

pytestmark = [pytest.mark.slow, pytest.mark.realtime]


def short(*overrides: str, sizes: str | None = None) -> list[str]:
    args = [arg for item in overrides for arg in ("--set", item)]
    return [*args, "--sizes", sizes] if sizes else args


SHORT = {
    "http-knee": short(
        "load.ramp.max_per_s=400", "load.ramp.step_s=2", "load.ramp.warmup_s=0.5", "sim.nodes=100"
    ),
    "dns-knee": short("load.ramp.max_per_s=800", "load.ramp.step_s=2", "load.ramp.warmup_s=0.5"),
    "http-throughput": short("load.duration_s=2", "sim.nodes=100"),
    "dns-throughput": short("load.duration_s=2"),
    "kubelet-baseline": short("phases.duration_s=6", "phases.warmup_s=2", sizes="20"),
    "openai-2024-telemetry": short(
        "phases.duration_s=8",
        "phases.steady_s=2",
        "phases.warmup_s=1",
        "agents.telemetry.interval_s=3",
        "agents.pod_dns.nodes=5",
        sizes="30",
    ),
    "dns-ndots-storm": short("phases.duration_s=6", "phases.warmup_s=1", sizes="5"),
}


def test_every_shipped_profile_has_a_short_version_here() -> None:
    assert {p.name for p in shipped_profiles()} == set(SHORT)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_a_shipped_profile_runs_to_completion(name: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "loadlab", "run", name, "--out", str(out), "--quiet"]
    args += SHORT[name]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    # What the server makes of it may vary on a busy machine; that the run completes may not.
    assert result.returncode in (EXIT_OK, EXIT_SLO_FAILED, EXIT_INCONCLUSIVE), result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["exit_code"] == result.returncode
    assert summary["profile"] == name
    assert result.stdout.strip().splitlines()[-1].startswith("verdict: ")
    # Its report is written at the end, named among the result lines, before the verdict.
    assert "report not written" not in result.stderr, result.stderr
    assert f"report: {out / 'report.html'}" in result.stdout.splitlines()
    for name in ("report.html", "summary.md", "perfdash.json", "machine.json"):
        assert (out / name).is_file(), name
    perfdash = json.loads((out / "perfdash.json").read_text())
    assert perfdash["version"] == "v1"
    assert perfdash["dataItems"], "no latency exported"
