"""``kubectl apply --server-side`` against the sim, with kubectl's default flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadlab.sim.server import SimEndpoints
from tests.sim.helpers import kubectl_installed, run_kubectl

pytestmark = [pytest.mark.needs_kubectl, pytest.mark.realtime, kubectl_installed]


def manifest(path: Path, obj: dict[str, Any]) -> str:
    """``obj`` written as a file for ``kubectl -f`` (JSON is YAML, so kubectl reads it as YAML)."""
    path.write_text(json.dumps(obj))
    return str(path)


def configmap(**data: str) -> dict[str, Any]:
    meta = {"name": "demo", "namespace": "default"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "web", "namespace": "default"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers}}


def test_kubectl_server_side_apply_creates_merges_conflicts_and_prunes(
    sim_thread: SimEndpoints, tmp_path: Path
) -> None:
    def k(*args: str, ok: bool = True) -> str:
        out = run_kubectl(*args, cache=tmp_path / "cache", server=sim_thread.api_url)
        assert (out.returncode == 0) == ok, out.stdout + out.stderr
        return out.stdout + out.stderr

    def data() -> dict[str, str]:
        got: dict[str, str] = json.loads(k("get", "cm", "demo", "-o", "jsonpath={.data}"))
        return got

    blue = manifest(tmp_path / "cm.yaml", configmap(color="blue", size="large"))
    assert "configmap/demo serverside-applied" in k("apply", "--server-side", "-f", blue)
    red = manifest(tmp_path / "red.yaml", configmap(color="red", size="large"))
    k("apply", "--server-side", "-f", red)
    assert data() == {"color": "red", "size": "large"}

    green = manifest(tmp_path / "green.yaml", configmap(color="green"))
    other = ("apply", "--server-side", "--field-manager", "other", "-f", green)
    refused = k(*other, ok=False)
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .data.color' in refused
    assert data()["color"] == "red"
    k(*other, "--force-conflicts")
    shown = json.loads(k("get", "cm", "demo", "-o", "json", "--show-managed-fields"))
    entries = {e["manager"]: e for e in shown["metadata"]["managedFields"]}
    assert entries["other"]["fieldsV1"] == {"f:data": {"f:color": {}}}
    assert entries["kubectl"]["fieldsV1"] == {"f:data": {"f:size": {}}}
    assert {e["operation"] for e in entries.values()} == {"Apply"}

    # kubectl's own manager stops applying ``size``: it owned it alone, so it goes.
    k("apply", "--server-side", "-f", manifest(tmp_path / "none.yaml", configmap()))
    assert data() == {"color": "green"}

    app = {"name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 80}]}
    k("apply", "--server-side", "-f", manifest(tmp_path / "pod.yaml", pod(app)))
    side = {"name": "side", "image": "registry.example/side:1"}
    sidecar = manifest(tmp_path / "side.yaml", pod(side))
    k("apply", "--server-side", "--field-manager", "injector", "-f", sidecar)
    names = k("get", "pod", "web", "-o", "jsonpath={.spec.containers[*].name}")
    assert names.split() == ["app", "side"]
    # An applied Service is created as any other: the registry gives it a ClusterIP.
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    svc["spec"] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    k("apply", "--server-side", "-n", "default", "-f", manifest(tmp_path / "svc.yaml", svc))
    assert k("get", "svc", "web", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
    # A dry run answers the merged object and stores nothing.
    bumped = manifest(tmp_path / "bump.yaml", pod({**side, "image": "registry.example/side:2"}))
    dry = k(
        "apply",
        "--server-side",
        "--field-manager",
        "injector",
        "-f",
        bumped,
        "--dry-run=server",
        "-o",
        "jsonpath={.spec.containers[1].image}",
    )
    assert dry == "registry.example/side:2"
    image = k("get", "pod", "web", "-o", "jsonpath={.spec.containers[1].image}")
    assert image == "registry.example/side:1"
