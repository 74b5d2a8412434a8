"""Runs against a cluster named by a kubeconfig context: the embedded control plane serving
HTTPS with tokens (``loadlab sim --tls``), reached through the kubeconfig it wrote, as a kind or
staging cluster would be. What the run creates is deleted however it ends; a context that is not
allowlisted is never contacted; rejected credentials are one line; a slowing cluster stops the
load (exit 5)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadlab import runloop
from loadlab.errors import EXIT_ABORTED, EXIT_OK, EXIT_TERMINATED, EXIT_UNREACHABLE, EXIT_USAGE
from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.testing.cli_output import assert_one_clear_line
from loadlab.testing.waiting import wait_for
from tests.shared_runs import SHORT_SIZE

pytestmark = [pytest.mark.realtime, pytest.mark.slow]

SHORT_SWEEP = ["--sizes", "20", *SHORT_SIZE]
KUBECTL_GET = ("kubectl", "get", "all,leases,configmaps,nodes,namespaces")
READS = """\
name: cluster-reads
api:
  connections: 8
  mix:
    - {name: get-ns, path: /api/v1/namespaces/default}
    - {name: get-node, path: "/api/v1/nodes/node-{i}", spread: 20}
load:
  ramp: {start_per_s: 50, factor: 2, max_per_s: 400, step_s: 4, warmup_s: 1}
"""


RUN = (sys.executable, "-m", "loadlab", "run", "--quiet")


def through(sim: SimProcess) -> list[str]:
    """The flags that aim a run at ``sim`` through its kubeconfig."""
    assert sim.kubeconfig is not None
    return ["--kubeconfig", sim.kubeconfig, "--allow-context", "loadlab-sim"]


def secured_sim(tmp: Path, *extra: str) -> SimProcess:
    return start_sim_process(
        ["--tls", "--kubeconfig-out", str(tmp / "kubeconfig"), "--nodes", "20", *extra]
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    with secured_sim(tmp_path_factory.mktemp("sim")) as process:
        yield process


def loadlab(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadlab", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def kubectl_finds_nothing_labelled(kubeconfig: str) -> None:
    found = subprocess.run(
        [*KUBECTL_GET, "--kubeconfig", kubeconfig, "-A", "-l", "loadlab.io/run", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert found.stdout.strip() == "", found.stdout


def sim_get(sim: SimProcess, path: str) -> bytes:
    """GET ``path`` from the test's own sim as its admin (the token in its kubeconfig), over the
    TLS the kubeconfig's CA verifies: loopback only."""
    assert sim.kubeconfig is not None
    config = yaml.safe_load(Path(sim.kubeconfig).read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    token = config["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cadata=ca.decode())
    req = urllib.request.Request(sim.api_url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        body: bytes = resp.read()
    return body


def requests_seen(sim: SimProcess) -> int:
    """Every API request the sim counted, refused ones included (not /metrics itself)."""
    text = sim_get(sim, "/metrics").decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def wait_for_run_leases(sim: SimProcess, out: Path, count: int) -> str:
    """Wait until the run writing ``out`` has ``count`` labelled leases in the sim (its kubelets
    registered); its run id. A bounded poll of real I/O, not a guess at how long start-up takes."""
    seen = {"run_id": ""}

    def ready() -> bool:
        if not (out / "run.id").exists():
            return False
        run_id = seen["run_id"] = (out / "run.id").read_text().split()[0]
        path = f"/apis/coordination.k8s.io/v1/leases?labelSelector=loadlab.io/run%3D{run_id}"
        return len(json.loads(sim_get(sim, path))["items"]) >= count

    runloop.run(wait_for(ready, f"{count} labelled leases", timeout_s=60))
    return seen["run_id"]


@pytest.mark.needs_kubectl
def test_a_sweep_through_an_allowlisted_context_runs_and_leaves_nothing(
    sim: SimProcess, tmp_path: Path
) -> None:
    assert sim.kubeconfig is not None
    # Over two workers, each of which re-reads the allowlisted context itself (no credential
    # crosses processes); the SIGTERM test below runs the same sweep in one process.
    done = loadlab(
        "run", "kubelet-baseline", "--kubeconfig", sim.kubeconfig,
        "--allow-context", "loadlab-sim", "--out", str(tmp_path / "run"), *SHORT_SWEEP,
        "--workers", "2",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (size,) = summary["sizes"]
    assert size["generator"]["workers"] == 2
    assert size["agents"]["kubelet"]["ops"]["lease-create"]["outcomes"] == {"ok": 20}
    assert "node-create" not in size["agents"]["kubelet"]["ops"]  # no Node unless asked
    assert re.search(r"cleanup of run \w+: deleted 20 leases, 1 namespaces", done.stdout)
    kubectl_finds_nothing_labelled(sim.kubeconfig)


@pytest.mark.needs_kubectl
def test_a_sweep_stopped_by_sigterm_halfway_still_deletes_what_it_created(
    sim: SimProcess, tmp_path: Path
) -> None:
    assert sim.kubeconfig is not None
    proc = subprocess.Popen(
        [*RUN, "kubelet-baseline", *through(sim), "--out", str(tmp_path / "run"), *SHORT_SWEEP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_run_leases(sim, tmp_path / "run", 20)  # every kubelet has its lease now
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, out + err
    assert "cleanup of run" in out
    kubectl_finds_nothing_labelled(sim.kubeconfig)


def test_a_context_not_allowlisted_is_refused_before_any_request(
    sim: SimProcess, tmp_path: Path
) -> None:
    assert sim.kubeconfig is not None
    before = requests_seen(sim)
    done = loadlab(
        "run", "kubelet-baseline", "--kubeconfig", sim.kubeconfig,
        "--out", str(tmp_path / "run"), *SHORT_SWEEP,
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    line = assert_one_clear_line(done.stderr)
    assert "context loadlab-sim: not allowlisted; pass --allow-context loadlab-sim" in line
    assert requests_seen(sim) == before
    assert not (tmp_path / "run").exists()


def test_a_token_the_cluster_rejects_is_one_line_naming_the_context_and_the_401(
    sim: SimProcess, tmp_path: Path
) -> None:
    assert sim.kubeconfig is not None
    bad = tmp_path / "kubeconfig"
    bad.write_text(re.sub(r"token: \S+", "token: not-a-token", Path(sim.kubeconfig).read_text()))
    profile = tmp_path / "reads.yaml"
    profile.write_text(READS)
    done = loadlab(
        "run", str(profile), "--kubeconfig", str(bad), "--allow-context", "loadlab-sim",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == EXIT_UNREACHABLE, done.stdout + done.stderr
    line = assert_one_clear_line(done.stderr)
    assert "context loadlab-sim" in line
    assert "401 Unauthorized" in line


def timeline_rows(out: Path) -> int:
    path = out / "timeline.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_a_cluster_that_slows_down_mid_ramp_stops_the_load_within_2_s_exit_5(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "reads.yaml"
    profile.write_text(READS)
    out = tmp_path / "run"
    with secured_sim(tmp_path) as sim:
        assert sim.kubeconfig is not None
        proc = subprocess.Popen(
            [*RUN, str(profile), *through(sim), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Once the ramp is under way (a second of it written out), slow the sim down.
        runloop.run(wait_for(lambda: timeline_rows(out) >= 1, "the ramp", timeout_s=60))
        os.kill(sim.pid, signal.SIGUSR1)  # the sim's documented slow-down
        stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == EXIT_ABORTED, stdout + stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == EXIT_ABORTED
    abort = summary["abort"]
    assert "readyz" in abort["why"] or "canary" in abort["why"]
    assert summary["stopped_by"].startswith("Aborted: aborted at")
    assert assert_one_clear_line(stderr).startswith("loadlab: aborted at")
    # The load was unwound: after the interval in which the rail fired, and the one that was
    # under way, no interval sent a request.
    rows = (out / "timeline.csv").read_text().splitlines()
    header = rows[0].split(",")
    t, sent = header.index("t_s"), header.index("api_sent_per_s")
    after = [r.split(",") for r in rows[1:] if float(r.split(",")[t]) > abort["at_s"]]
    assert all(float(r[sent]) == 0 for r in after[2:]), after
    assert "verdict: ABORTED" in stdout


@pytest.mark.needs_kubectl
def test_loadlab_cleanup_finds_what_a_sigkilled_run_left_by_its_label(
    sim: SimProcess, tmp_path: Path
) -> None:
    assert sim.kubeconfig is not None
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*RUN, "kubelet-baseline", *through(sim), "--out", str(out), *SHORT_SWEEP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_id = wait_for_run_leases(sim, out, 20)
    proc.kill()  # no chance to clean up
    proc.wait(timeout=30)
    label = f"loadlab.io/run={run_id}"
    left = subprocess.run(
        [*KUBECTL_GET, "--kubeconfig", sim.kubeconfig, "-A", "-l", label, "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "lease" in left.stdout  # the killed run did leave its leases behind
    cleanup = [sys.executable, "-m", "loadlab", "cleanup", *through(sim)]
    done = subprocess.run(
        [*cleanup, "--run", run_id], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(rf"cleanup of run {run_id}: deleted 20 leases, 1 namespaces", done.stdout)
    kubectl_finds_nothing_labelled(sim.kubeconfig)
    again = subprocess.run(
        [*cleanup, "--all"], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0
    assert again.stdout.startswith("cleanup of every loadlab run: nothing left to delete")


def test_a_request_mix_over_workers_carries_the_contexts_token_from_each(
    sim: SimProcess, tmp_path: Path
) -> None:
    profile = tmp_path / "reads.yaml"
    profile.write_text(READS.replace("max_per_s: 400", "max_per_s: 50"))  # one step
    done = loadlab(
        "run", str(profile), *through(sim), "--workers", "2", "--out", str(tmp_path / "mix"),
        "--set", "load.ramp.step_s=2",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    steps = json.loads((tmp_path / "mix" / "summary.json").read_text())["steps"]
    assert steps
    assert all(s["ok_count"] > 0 for s in steps), steps
    assert all(s["errors_by_outcome"] == {} for s in steps), steps  # no 401 from any worker
