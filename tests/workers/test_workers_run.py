"""``loadlab run --workers N`` end to end: real worker processes against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadlab.metrics.hlog import read_hlog
from loadlab.metrics.timeline import read_timeline
from loadlab.testing.cli_output import assert_one_clear_line
from tests.acceptance.helpers import capacity_server, loadlab, read_summary

pytestmark = pytest.mark.realtime

SLOTS, SERVICE_MS, QUEUE = 20, 20.0, 100  # 1,000 req/s by construction

FIXED_PROFILE = """
name: fixed-open
api:
  connections: 8
  mix:
    - {name: get-lease, method: GET, path: /apis/coordination.k8s.io/v1/namespaces/x/leases/y}
load: {mode: open, rate_per_s: 200, duration_s: 30}
"""


def _count(path: Path) -> int:
    return sum(i.histogram.get_total_count() for i in read_hlog(path))


@pytest.mark.slow
def test_two_workers_find_one_knee_and_their_histograms_add_up(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with capacity_server(SLOTS, SERVICE_MS, QUEUE) as url:
        result = loadlab(
            "run", "http-knee", "--api", url, "--workers", "2", "--out", str(out), "--no-report",
            "--set", "load.ramp.start_per_s=500", "--set", "load.ramp.max_per_s=2000",
            "--set", "load.ramp.step_s=2", "--set", "load.ramp.warmup_s=1", "--quiet",
            "--set", "load.ramp.refine_within=0.2",
            timeout_s=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = read_summary(out)
    knee = summary["knee"]["api"]
    assert knee is not None, summary["steps"]
    # The server's capacity is 1,000/s by construction; the two workers' merged steps find it.
    assert 850 <= knee["offered"] <= 1150, summary["steps"]
    assert summary["generator"]["limited"] is False
    # Every completion either worker recorded is in the merged log, once.
    for log in ("api.hlog", "api.uncorrected.hlog"):
        parts = [_count(out / "workers" / str(i) / log) for i in range(2)]
        assert all(p > 0 for p in parts), parts
        assert _count(out / log) == sum(parts)
    # Each worker sent about half of every step.
    sent = [
        sum(
            float(row["api_sent_per_s"]) for row in _rows(out / "workers" / str(i) / "timeline.csv")
        )
        for i in range(2)
    ]
    assert abs(sent[0] - sent[1]) <= 0.05 * sum(sent), sent


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


HLOG_HEADER_BYTES = 400
"""An hlog's comment and legend lines take fewer bytes than this (about 260 in a sweep's
kubelet.hlog here): a file larger than that holds at least one interval."""


def logged_an_interval(path: Path) -> bool:
    return path.exists() and path.stat().st_size > HLOG_HEADER_BYTES


def kill_a_worker_once_both_log(
    cmd: list[str], logs: list[Path], *, index: int = 0
) -> tuple[str, int]:
    """Run ``cmd`` (a ``loadlab run --workers 2``), wait until both workers have written an
    interval to ``logs``, SIGKILL worker ``index`` as the OOM killer would; its stderr and exit
    code once it ends."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(logged_an_interval(p) for p in logs):
            time.sleep(0.1)
        assert all(logged_an_interval(p) for p in logs), f"the workers never logged: {logs}"
        workers = [
            c
            for c in psutil.Process(proc.pid).children()
            if "loadlab.workers" in " ".join(c.cmdline())
        ]
        assert len(workers) == 2
        os.kill(workers[index].pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stderr, proc.returncode


def test_a_worker_killed_mid_run_fails_the_run_in_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "fixed.yaml"
    profile.write_text(FIXED_PROFILE)
    out = tmp_path / "run"
    with capacity_server(SLOTS, SERVICE_MS, QUEUE) as url:
        cmd = [sys.executable, "-m", "loadlab", "run", str(profile), "--api", url]
        cmd += ["--workers", "2", "--out", str(out), "--quiet", "--no-report"]
        logs = [out / "workers" / str(i) / "api.hlog" for i in range(2)]
        stderr, returncode = kill_a_worker_once_both_log(cmd, logs, index=1)
    assert returncode == 4, stderr
    line = assert_one_clear_line(stderr.split("results:")[0] if "results:" in stderr else stderr)
    assert "worker" in line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["passed"] is False
    assert summary["complete"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["http-knee", "--workers", "0"], "--workers '0'"),
        (["http-knee", "--workers", "many"], "--workers 'many'"),
    ],
)
def test_bad_worker_counts_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    result = loadlab("run", *args, "--out", str(tmp_path / "x"), "--quiet", timeout_s=60)
    assert result.returncode == 2, result.stderr
    assert needle in assert_one_clear_line(result.stderr)


AGENT_PROFILE = """
name: tiny-agents
agents:
  kubelet: {}
  telemetry: {interval_s: 5, pace_nodes_per_s: 20}
  pod_dns: {nodes: 20, pods_per_node: 2, interval_s: 2, names: [kubernetes.default, svc-2.app-1]}
sizes: [60]
phases: {steady_s: 4, duration_s: 14, warmup_s: 4}  # one lease renewal after the warm-up
sweep: {window_s: 3}
sim: {pods_per_node: 2}
"""
KINDS = ("kubelet", "telemetry", "pod-dns")


def test_an_agent_scenario_spreads_its_nodes_over_two_workers(tmp_path: Path) -> None:
    profile = tmp_path / "agents.yaml"
    # A duration that is not a whole number of intervals: the last, partial one is run too.
    profile.write_text(AGENT_PROFILE.replace("duration_s: 14", "duration_s: 14.5"))
    out = tmp_path / "run"
    result = loadlab(
        "run", str(profile), "--workers", "2", "--out", str(out), "--quiet", "--no-report",
        timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    size = read_summary(out)["sizes"][0]
    assert size["passed"] is True, size["line"]
    assert size["generator"]["workers"] == 2
    agents = size["agents"]
    # Every node's agents ran, once: the workers' counts add up to the cluster.
    assert agents["kubelet"]["agents"] == agents["telemetry"]["agents"] == 60
    assert agents["pod-dns"]["agents"] == 20
    assert agents["kubelet"]["lists"] >= 60  # each kubelet listed its pods at least once
    # Every completion either worker recorded is in the size's merged log, once.
    folder = out / "size-60"
    for kind in KINDS:
        parts = [_count(folder / "workers" / str(i) / f"{kind}.hlog") for i in range(2)]
        assert all(p > 0 for p in parts), (kind, parts)
        assert _count(folder / f"{kind}.hlog") == sum(parts), kind
    rows = read_timeline(folder / "timeline.csv")
    last_s = rows[-1]["t_s"]
    assert last_s is not None
    assert last_s >= 14.5, [r["t_s"] for r in rows]
    # The lookups counted by send second (the DNS onset's input) are the lookups recorded.
    lookups = agents["pod-dns"]["ops"]["lookup"]["outcomes"]
    assert agents["pod-dns"]["lookups_ok"] + agents["pod-dns"]["lookups_failed"] == sum(
        lookups.values()
    )


def test_a_killed_agent_worker_ends_the_sweep_in_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "agents.yaml"
    profile.write_text(AGENT_PROFILE.replace("duration_s: 14", "duration_s: 40"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "loadlab", "run", str(profile), "--workers", "2"]
    logs = [out / "size-60" / "workers" / str(i) / "kubelet.hlog" for i in range(2)]
    stderr, returncode = kill_a_worker_once_both_log([*cmd, "--out", str(out), "--quiet"], logs)
    assert returncode == 4, stderr
    assert "worker 1 of 2" in assert_one_clear_line(stderr)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["passed"] is False
    assert summary["exit_code"] == 4
    size = summary["sizes"][0]
    assert size["complete"] is False
    assert size["passed"] is False
    assert "nothing is claimed" in size["line"]
