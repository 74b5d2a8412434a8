"""The sim's controllers: created pods are bound and started, EndpointSlices follow selectors.

On the fake clock (no sockets): a pod's way from Pending to Running, taints, the slice plan. Over
real HTTP and kubectl 1.32: ``kubectl wait --for=condition=Ready`` on a created pod, and slices
that gain and lose pods as they come, go and change labels.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.config import SimConfig
from loadlab.sim.controllers.endpoints import MAX_ENDPOINTS_PER_SLICE, plan_slices
from loadlab.sim.controllers.loops import ControlLoops
from loadlab.sim.controllers.pods import fits
from loadlab.sim.k8s.objects import NODES, PODS, JsonObj
from loadlab.sim.k8s.strategies import prepare_create
from loadlab.sim.server import SimEndpoints, seeded_store
from loadlab.sim.storage.selection import FieldSelector
from tests.sim.conftest import small_sim_config
from tests.sim.helpers import MERGE, kubectl_installed, run, run_kubectl

SimFactory = Callable[[SimConfig], AbstractContextManager[SimEndpoints]]
SERVING = {"app": "svc-0", "app.kubernetes.io/component": "server"}
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
WAIT_S = 10.0
"""A bound on waiting for a slice to change: the controllers react within one loop turn."""


def pod_manifest(name: str, labels: dict[str, str], **spec: Any) -> JsonObj:
    containers = [{"name": "web", "image": "registry.example/web:1"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": containers, **spec},
    }


# -- on the fake clock --------------------------------------------------------------------------


def test_a_created_pod_is_bound_at_once_and_running_exactly_pod_start_s_later() -> None:
    clock = FakeClock()
    store = seeded_store(small_sim_config())
    seen: list[tuple[float, str, str, list[str]]] = []

    async def body() -> None:
        loops = ControlLoops(store, clock, pod_start_s=2.5, first_pod_ip=15)
        loops.start()
        fields = FieldSelector.parse("metadata.name=web")
        watcher = store.watch(PODS, "default", fields=fields, resource_version="0")
        store.create(PODS, prepare_create(PODS, pod_manifest("web", {"app": "web"})))
        while not seen or seen[-1][2] != "Running":
            event = await watcher.queue.get()
            assert event is not None
            pod = event.obj
            conditions = [c["type"] for c in pod["status"].get("conditions") or []]
            node = pod["spec"].get("nodeName", "")
            seen.append((clock.now_ns() / NS_PER_S, node, pod["status"]["phase"], conditions))
        await loops.stop()

    run(clock, body())
    ready = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    # Seeded: five nodes of three pods each, so the first node is the least loaded.
    assert seen == [
        (0.0, "", "Pending", []),
        (0.0, "node-0", "Pending", []),
        (0.0, "node-0", "Pending", ["PodScheduled"]),
        (2.5, "node-0", "Running", ready),
    ]


def test_a_pod_no_node_tolerates_waits_unschedulable_until_one_does() -> None:
    clock = FakeClock()
    store = seeded_store(small_sim_config(nodes=2))
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}

    async def body() -> tuple[JsonObj, JsonObj]:
        for name in ("node-0", "node-1"):
            node = store.get(NODES, "", name)
            store.update(NODES, {**node, "spec": {"taints": [taint]}})
        loops = ControlLoops(store, clock, pod_start_s=1.0, first_pod_ip=6)
        loops.start()
        store.create(PODS, prepare_create(PODS, pod_manifest("picky", {"app": "x"})))
        await clock.sleep(5.0)
        waiting = store.get(PODS, "default", "picky")
        toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
        tolerant = pod_manifest("tolerant", {"app": "x"}, tolerations=[toleration])
        store.create(PODS, prepare_create(PODS, tolerant))
        await clock.sleep(5.0)
        await loops.stop()
        return waiting, store.get(PODS, "default", "tolerant")

    waiting, tolerant = run(clock, body())
    assert waiting["spec"].get("nodeName") is None
    assert waiting["status"]["phase"] == "Pending"
    [condition] = waiting["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    assert (tolerant["spec"]["nodeName"], tolerant["status"]["phase"]) == ("node-0", "Running")


def test_the_controllers_relist_and_go_on_after_a_restart_ends_their_watches() -> None:
    clock = FakeClock()
    store = seeded_store(small_sim_config())

    async def body() -> JsonObj:
        loops = ControlLoops(store, clock, pod_start_s=1.0, first_pod_ip=15)
        loops.start()
        await clock.sleep(1.0)
        store.rebuild_watch_cache()  # what the API server's simulated restart does
        store.create(PODS, prepare_create(PODS, pod_manifest("late", {"app": "late"})))
        await clock.sleep(10.0)
        await loops.stop()
        return store.get(PODS, "default", "late")

    late = run(clock, body())
    assert (late["spec"]["nodeName"], late["status"]["phase"]) == ("node-0", "Running")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, True, id="plain"),
        pytest.param({"unschedulable": True}, False, id="cordoned"),
        pytest.param(
            {"taints": [{"key": "k", "effect": "NoExecute"}]}, False, id="untolerated-taint"
        ),
        pytest.param(
            {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}, True, id="soft-taint"
        ),
    ],
)
def test_the_scheduler_skips_cordoned_and_tainted_nodes(spec: JsonObj, expected: bool) -> None:
    node = {"spec": spec, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert fits(pod_manifest("p", {}), node) is expected


def _endpoint(name: str) -> JsonObj:
    return {
        "addresses": ["198.51.100.9"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "default", "name": name, "uid": name},
    }


def _stored(plan_objects: list[JsonObj]) -> list[JsonObj]:
    return [
        {**obj, "metadata": {**obj["metadata"], "name": f"s-{i}", "resourceVersion": str(i)}}
        for i, obj in enumerate(plan_objects)
    ]


def test_slices_hold_at_most_100_endpoints_and_keep_them_where_they_are() -> None:
    service = {
        "metadata": {"name": "big", "namespace": "default", "uid": "u", "labels": {"a": "b"}},
        "spec": {"selector": {"a": "b"}, "clusterIP": "192.0.2.99"},
    }
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    names = [f"p{i:03d}" for i in range(250)]
    first = plan_slices(service, [(ports, _endpoint(n)) for n in names], [])
    assert [len(s["endpoints"]) for s in first.create] == [100, 100, 50]
    existing = _stored(first.create)
    # One pod goes, 60 come: only the slice that held it changes, then the emptiest fills up.
    names = [n for n in names if n != "p005"] + [f"q{i:02d}" for i in range(60)]
    second = plan_slices(service, [(ports, _endpoint(n)) for n in names], existing)
    assert [s["metadata"]["name"] for s in second.update] == ["s-0", "s-2"]
    assert [len(s["endpoints"]) for s in second.update] == [100, MAX_ENDPOINTS_PER_SLICE]
    assert [len(s["endpoints"]) for s in second.create] == [9]
    assert second.delete == []
    last = plan_slices(service, [], existing)
    assert ([s["endpoints"] for s in last.update], len(last.delete)) == ([[]], 2)


# -- over HTTP and kubectl ----------------------------------------------------------------------


async def _wait_for_slices(
    api_url: str, selector: str, done: Callable[[list[JsonObj]], bool]
) -> list[JsonObj]:
    """Watch the slices ``selector`` picks until ``done`` holds for them (bounded by WAIT_S)."""
    query = urllib.parse.urlencode({"labelSelector": selector})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api_url}{SLICES}?{query}") as resp:
            listed = await resp.json()
        current = {s["metadata"]["name"]: s for s in listed["items"]}
        rv = listed["metadata"]["resourceVersion"]
        if done(list(current.values())):
            return list(current.values())
        url = f"{api_url}{SLICES}?{query}&watch=1&resourceVersion={rv}"
        async with asyncio.timeout(WAIT_S), session.get(url) as stream:
            async for line in stream.content:
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "DELETED":
                    current.pop(name, None)
                else:
                    current[name] = event["object"]
                if done(list(current.values())):
                    return list(current.values())
    raise AssertionError(f"the slices never got there: {list(current.values())}")


def targets(slices: list[JsonObj]) -> dict[str, JsonObj]:
    return {e["targetRef"]["name"]: e for s in slices for e in s.get("endpoints") or []}


def wait_for_slices(
    sim: SimEndpoints, service: str, done: Callable[[dict[str, JsonObj]], bool]
) -> dict[str, JsonObj]:
    selector = f"kubernetes.io/service-name={service}"
    slices = asyncio.run(_wait_for_slices(sim.api_url, selector, lambda s: done(targets(s))))
    return targets(slices)


def get_json(sim: SimEndpoints, path: str) -> Any:
    async def fetch() -> Any:
        async with aiohttp.ClientSession() as session, session.get(sim.api_url + path) as resp:
            return await resp.json()

    return asyncio.run(fetch())


@pytest.mark.realtime
@pytest.mark.needs_kubectl
@kubectl_installed
def test_kubectl_waits_for_a_created_pod_to_be_ready_and_its_service_slice_follows(
    sim_thread_factory: SimFactory, tmp_path: Path
) -> None:
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(pod_manifest("web", SERVING)))
    with sim_thread_factory(small_sim_config(pod_start_s=0.5)) as sim:

        def k(*args: str) -> str:
            out = run_kubectl(*args, cache=tmp_path, server=sim.api_url)
            assert out.returncode == 0, out.stderr
            return out.stdout

        before = wait_for_slices(sim, "svc-0", lambda t: True)
        k("create", "-f", str(manifest), "--validate=false")
        k("wait", "--for=condition=Ready", "pod/web", "--timeout=20s")
        pod = json.loads(k("get", "pod", "web", "-o", "json"))
        ip = pod["status"]["podIP"]
        joined = wait_for_slices(sim, "svc-0", lambda t: "web" in t)
        k("delete", "pod", "web")
        left = wait_for_slices(sim, "svc-0", lambda t: "web" not in t)
    assert pod["spec"]["nodeName"] in {f"node-{i}" for i in range(5)}
    assert pod["status"]["phase"] == "Running"
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("198.51.100.0/24")
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    endpoint = joined["web"]
    assert (endpoint["addresses"], endpoint["conditions"]["ready"]) == ([ip], True)
    assert endpoint["nodeName"] == pod["spec"]["nodeName"]
    assert endpoint["targetRef"]["uid"] == pod["metadata"]["uid"]
    assert set(joined) == set(before) | {"web"}
    assert left == before


@pytest.mark.realtime
def test_seeded_slices_list_exactly_the_ready_pods_their_selectors_pick(
    sim_thread_factory: SimFactory,
) -> None:
    with sim_thread_factory(small_sim_config(services=5, headless_services=1)) as sim:
        services = get_json(sim, "/api/v1/services")["items"]
        pods = get_json(sim, "/api/v1/pods")["items"]
        slices = get_json(sim, "/apis/discovery.k8s.io/v1/endpointslices")["items"]
    selecting = [s for s in services if s["spec"].get("selector")]
    assert len(selecting) == 5
    for service in selecting:
        meta, selector = service["metadata"], service["spec"]["selector"]
        picked = {
            p["metadata"]["name"]: p["status"]["podIP"]
            for p in pods
            if p["metadata"]["namespace"] == meta["namespace"]
            and selector.items() <= p["metadata"]["labels"].items()
        }
        mine = [
            s
            for s in slices
            if s["metadata"]["namespace"] == meta["namespace"]
            and s["metadata"]["labels"]["kubernetes.io/service-name"] == meta["name"]
        ]
        listed = {name: e["addresses"][0] for name, e in targets(mine).items()}
        assert listed == picked, meta["name"]
        assert all(e["conditions"]["ready"] for e in targets(mine).values())
        assert len(picked) == 3  # endpoints_per_service
        assert [o["uid"] for s in mine for o in s["metadata"]["ownerReferences"]] == [meta["uid"]]


@pytest.mark.realtime
def test_a_slice_follows_label_changes_readiness_and_a_new_service(
    sim_thread_factory: SimFactory,
) -> None:
    with sim_thread_factory(small_sim_config()) as sim:
        serving = set(wait_for_slices(sim, "svc-0", lambda t: True))
        gone = sorted(serving)[0]
        url = f"{sim.api_url}/api/v1/namespaces/default/pods/{gone}"
        unlabel = {"metadata": {"labels": {"app.kubernetes.io/component": None}}}
        not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        kept = sorted(serving)[1]
        kept_url = f"{sim.api_url}/api/v1/namespaces/default/pods/{kept}/status"

        async def patch(target: str, body: JsonObj) -> int:
            async with aiohttp.ClientSession() as s, s.patch(target, json=body, headers=MERGE) as r:
                return r.status

        assert asyncio.run(patch(url, unlabel)) == 200
        after_unlabel = wait_for_slices(sim, "svc-0", lambda t: gone not in t)
        assert asyncio.run(patch(kept_url, not_ready)) == 200
        after_not_ready = wait_for_slices(
            sim, "svc-0", lambda t: not t[kept]["conditions"]["ready"]
        )
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "all-of-svc-0"},
            "spec": {"selector": {"app": "svc-0"}, "ports": [{"port": 80}]},
        }

        async def create() -> int:
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{sim.api_url}/api/v1/namespaces/default/services", json=service) as r,
            ):
                return r.status

        assert asyncio.run(create()) == 201
        wider = wait_for_slices(sim, "all-of-svc-0", lambda t: gone in t)
    assert set(after_unlabel) == serving - {gone}
    assert after_not_ready[kept]["conditions"] == {
        "ready": False,
        "serving": False,
        "terminating": False,
    }
    assert gone in wider
    assert serving <= set(wider)
