"""kubectl (a client nobody here wrote) against the sim: discovery, Table output, watch."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from loadlab.sim.server import SimEndpoints
from tests.sim.helpers import (
    KUBECTL_TIMEOUT_S,
    kubectl_argv,
    kubectl_env,
    kubectl_installed,
    run_kubectl,
)

pytestmark = [pytest.mark.needs_kubectl, pytest.mark.realtime, kubectl_installed]
RUN_TIMEOUT_S = KUBECTL_TIMEOUT_S


def kubectl(sim: SimEndpoints, cache: Path, *args: str) -> list[str]:
    out = run_kubectl(*args, cache=cache, server=sim.api_url)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "header", "expected_rows"),
    [
        pytest.param(
            ("get", "nodes"), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], 5, id="nodes"
        ),
        pytest.param(
            ("get", "pods", "-A"), ["NAMESPACE", "NAME", "READY", "STATUS"], 15, id="pods"
        ),
        pytest.param(
            ("get", "leases", "-n", "kube-node-lease"), ["NAME", "HOLDER", "AGE"], 5, id="leases"
        ),
        pytest.param(
            ("get", "services", "-A"), ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP"], 6, id="services"
        ),
        pytest.param(
            ("get", "endpointslices", "-A"), ["NAMESPACE", "NAME", "ADDRESSTYPE"], 6, id="slices"
        ),
    ],
)
def test_kubectl_get_lists_the_seeded_objects(
    sim_thread: SimEndpoints,
    tmp_path: Path,
    args: tuple[str, ...],
    header: list[str],
    expected_rows: int,
) -> None:
    lines = kubectl(sim_thread, tmp_path, *args)
    assert lines[0].split()[: len(header)] == header
    assert len(lines) - 1 == expected_rows


def test_kubectl_get_nodes_json_decodes_seeded_nodes(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    doc = json.loads("\n".join(kubectl(sim_thread, tmp_path, "get", "nodes", "-o", "json")))
    assert [n["metadata"]["name"] for n in doc["items"]] == [f"node-{i}" for i in range(5)]


def _post_pod(api_url: str, name: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node-0",
            "containers": [{"name": "c", "image": "registry.example/c:1"}],
        },
    }
    req = urllib.request.Request(
        f"{api_url}/api/v1/namespaces/default/pods",
        data=json.dumps(pod).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=RUN_TIMEOUT_S) as resp:
        assert resp.status == 201


def _read_until(proc: subprocess.Popen[bytes], needle: str, deadline: float) -> str:
    """Read kubectl's output until a line contains ``needle`` (bounded by ``deadline``)."""
    assert proc.stdout is not None
    seen = b""
    while needle.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"kubectl never printed {needle!r}; got {seen.decode()!r}"
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"kubectl exited early; got {seen.decode()!r}"
            seen += chunk
    return seen.decode()


def test_kubectl_get_pods_watch_shows_a_pod_created_by_another_client(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        kubectl_argv("get", "pods", "-A", "--watch", cache=tmp_path, server=sim_thread.api_url),
        env=kubectl_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        _read_until(proc, "node-4-pod-2", deadline)  # the initial list is out
        _post_pod(sim_thread.api_url, "watched-pod")
        output = _read_until(proc, "watched-pod", deadline)
    finally:
        proc.kill()
        proc.wait(RUN_TIMEOUT_S)
        assert proc.stdout is not None
        proc.stdout.close()
    line = next(ln for ln in output.splitlines() if "watched-pod" in ln)
    assert line.split()[0] == "default"
