"""kubectl's writes against the sim: server dry runs, the three patch types, namespace deletion."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from loadlab.sim.config import SimConfig
from loadlab.sim.server import SimEndpoints
from tests.sim.conftest import small_sim_config
from tests.sim.helpers import kubectl_installed, run_kubectl

pytestmark = [pytest.mark.needs_kubectl, pytest.mark.realtime, kubectl_installed]
# A bound, not a schedule: the namespace goes 0.5 s after its delete (namespace_finalize_s
# below); ``kubectl wait --for=delete`` watches for that, and fails the test past this.
GONE_TIMEOUT = "10s"
SimFactory = Callable[[SimConfig], AbstractContextManager[SimEndpoints]]


def kubectl(sim: SimEndpoints, cache: Path, *args: str, ok: bool = True) -> str:
    """Run kubectl; ``ok`` says whether it must succeed."""
    out = run_kubectl(*args, cache=cache, server=sim.api_url)
    assert (out.returncode == 0) == ok, out.stderr
    return out.stdout + out.stderr


def test_kubectl_writes_behave_as_against_a_real_server(
    sim_thread_factory: SimFactory, tmp_path: Path
) -> None:
    config = small_sim_config(api={"namespace_finalize_s": 0.5})
    cm = tmp_path / "cm.json"
    cm.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}))
    # From a JSON file: the JSON body path (protobuf: tests/sim/test_sim_protobuf.py).
    ns = tmp_path / "ns.json"
    ns.write_text(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    )
    with sim_thread_factory(config) as sim:

        def k(*args: str, ok: bool = True) -> str:
            return kubectl(sim, tmp_path, *args, ok=ok)

        assert "created (server dry run)" in k(
            "create", "-f", str(cm), "--dry-run=server", "--validate=false"
        )
        k("get", "configmap", "x", ok=False)
        k("delete", "configmap", "kube-root-ca.crt", "--dry-run=server")
        k("get", "configmap", "kube-root-ca.crt")
        pod = ("pod", "node-0-pod-0")
        side = '{"spec":{"containers":[{"name":"side","image":"registry.example/s:1"}]}}'
        k("patch", *pod, "--type", "strategic", "-p", side)
        names = k("get", *pod, "-o", "jsonpath={.spec.containers[*].name}")
        assert names.split() == ["app", "side"]
        ops = '[{"op":"replace","path":"/spec/containers/1/image","value":"registry.example/s:2"}]'
        k("patch", *pod, "--type", "json", "-p", ops)
        k("patch", *pod, "--type", "merge", "-p", '{"metadata":{"labels":{"t":"1"}}}')
        got = json.loads(k("get", *pod, "-o", "json"))
        assert got["spec"]["containers"][1]["image"] == "registry.example/s:2"
        assert got["metadata"]["labels"]["t"] == "1"

        k("create", "-f", str(ns), "--validate=false")
        k("create", "-f", str(cm), "-n", "doomed", "--validate=false")
        k("delete", "namespace", "doomed", "--wait=false")
        phase = k("get", "namespace", "doomed", "-o", "jsonpath={.status.phase}")
        assert phase == "Terminating"
        refused = k("create", "-f", str(cm), "-n", "doomed", ok=False)
        assert "because it is being terminated" in refused
        k("wait", "--for=delete", "namespace/doomed", f"--timeout={GONE_TIMEOUT}")
        assert "NotFound" in k("get", "namespace", "doomed", ok=False)
        assert k("get", "configmaps", "-n", "doomed", "-o", "name").strip() == ""


def test_kubectl_diff_shows_the_change_and_leaves_the_live_object_alone(
    sim_thread_factory: SimFactory, tmp_path: Path
) -> None:
    def manifest(value: str) -> Path:
        path = tmp_path / f"cm-{value}.yaml"
        path.write_text(
            "apiVersion: v1\nkind: ConfigMap\n"
            f"metadata: {{name: diffed, namespace: default}}\ndata: {{mode: {value}}}\n"
        )
        return path

    with sim_thread_factory(small_sim_config()) as sim:

        def k(*args: str, ok: bool = True) -> str:
            return kubectl(sim, tmp_path, *args, ok=ok)

        k("apply", "-f", str(manifest("old")))
        before = json.loads(k("get", "configmap", "diffed", "-o", "json"))
        # kubectl diff exits 1 when it found a difference: a server dry run of the apply.
        for extra in ((), ("--server-side", "--force-conflicts")):
            shown = k("diff", "-f", str(manifest("new")), *extra, ok=False)
            assert "-  mode: old" in shown, shown
            assert "+  mode: new" in shown, shown
            after = json.loads(k("get", "configmap", "diffed", "-o", "json"))
            assert after["data"] == {"mode": "old"}
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        # No difference: exit 0.
        k("diff", "-f", str(manifest("old")))
