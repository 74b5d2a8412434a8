"""Reads as consistent as a real kube-apiserver's: paged LISTs are one snapshot, Exact and
NotOlderThan, versions too old (410) and too new (504, after the watch cache's wait).

Watch starts and field selectors: ``test_sim_watch_start.py`` (which borrows the helpers here)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.apiserver.consistency import BLOCK_TIMEOUT_S, POLL_INTERVAL_S
from loadlab.sim.k8s.objects import CONFIGMAPS, NAMESPACES, PODS, namespace_obj, pod_obj
from loadlab.sim.storage.errors import ContinueExpired
from loadlab.sim.storage.selection import FieldSelector
from loadlab.sim.storage.snapshot import CONTINUE_TOO_OLD, LIST_TOO_OLD
from loadlab.sim.storage.store import Store
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST, MERGE

READ_TIMEOUT_S = 10.0
Row = tuple[str, str, str, str]
"""(namespace, name, label app, resourceVersion) of a listed pod."""


def rows(items: list[Any]) -> list[Row]:
    """What a snapshot comparison looks at: identity, one label, and the version."""
    return [
        (p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["labels"]["app"],
         p["metadata"]["resourceVersion"])
        for p in items
    ]  # fmt: skip


def store_with_pods(window: int = 100) -> Store:
    store = Store(event_window=window)
    store.create(NAMESPACES, namespace_obj("default"))
    for i in range(6):
        pod = pod_obj(f"p{i}", "default", f"node-{i % 2}", "198.51.100.1", "198.51.100.2", "a")
        store.create(PODS, pod)
    return store


async def get_json(s: aiohttp.ClientSession, url: str) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with s.get(url) as resp:
        return resp.status, await resp.json(), resp


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any] | None:
    line = await asyncio.wait_for(resp.content.readline(), READ_TIMEOUT_S)
    return json.loads(line) if line else None


async def watch_events(
    s: aiohttp.ClientSession, url: str, count: int
) -> tuple[int, list[dict[str, Any] | None]]:
    """The status of a watch and its first ``count`` events (None past its end)."""
    async with s.get(url) as stream:
        return stream.status, [await next_event(stream) for _ in range(count)]


async def relabel(
    s: aiohttp.ClientSession, api: SimApiServer, ns: str, name: str, app: str
) -> None:
    url = f"{api.url}/api/v1/namespaces/{ns}/pods/{name}"
    async with s.patch(url, json={"metadata": {"labels": {"app": app}}}, headers=MERGE) as resp:
        assert resp.status == 200


# -- the store, without HTTP -----------------------------------------------------------------


def test_a_read_at_an_earlier_version_undoes_every_later_create_update_delete_and_move() -> None:
    store = store_with_pods()
    before = store.list_objects(PODS, None)
    on_node_1 = store.list_objects(PODS, None, fields=FieldSelector.parse("spec.nodeName=node-1"))
    store.create(PODS, pod_obj("p9", "default", "node-1", "198.51.100.3", "198.51.100.2", "a"))
    store.delete(PODS, "default", "p3")
    store.patch(PODS, "default", "p4", {"metadata": {"labels": {"app": "b"}}})
    store.patch(PODS, "default", "p1", {"spec": {"nodeName": "node-7"}})  # leaves node-1's index
    store.delete(PODS, "default", "p9")  # created and deleted since: absent at the version
    then = store.list_objects(PODS, None, resource_version=before.resource_version)
    then_on_1 = store.list_objects(
        PODS,
        None,
        fields=FieldSelector.parse("spec.nodeName=node-1"),
        resource_version=before.resource_version,
    )
    now = store.list_objects(PODS, None)
    assert rows(then.items) == rows(before.items)
    assert rows(then_on_1.items) == rows(on_node_1.items)
    assert [p["metadata"]["name"] for p in now.items] == ["p0", "p1", "p2", "p4", "p5"]


def test_an_expired_continue_token_gets_one_that_resumes_at_the_latest_version() -> None:
    store = store_with_pods(window=2)
    first = store.list_objects(PODS, None, limit=2)
    assert first.continue_token is not None
    store.create(PODS, pod_obj("p8", "default", "node-0", "198.51.100.3", "198.51.100.2", "a"))
    for app in ("b", "c"):
        store.patch(PODS, "default", "p5", {"metadata": {"labels": {"app": app}}})
    with pytest.raises(ContinueExpired) as refused:
        store.list_objects(PODS, None, limit=2, continue_token=first.continue_token)
    assert str(refused.value) == CONTINUE_TOO_OLD
    rest = store.list_objects(PODS, None, continue_token=refused.value.continue_token)
    assert rest.resource_version == store.resource_version > first.resource_version
    assert [(p["metadata"]["name"], p["metadata"]["labels"]["app"]) for p in rest.items] == [
        ("p2", "a"),
        ("p3", "a"),
        ("p4", "a"),
        ("p5", "c"),
        ("p8", "a"),
    ]


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.mark.realtime
def test_kubernetes_asyncio_pages_are_one_snapshot_whatever_is_written_between_them(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        config = client.Configuration()
        config.host = api.url
        async with client.ApiClient(configuration=config) as c:
            core = client.CoreV1Api(c)
            whole = c.sanitize_for_serialization(await core.list_pod_for_all_namespaces())
            pages = [await core.list_pod_for_all_namespaces(limit=4)]
            # Written after the first page, on keys later pages serve: the last pod goes, the
            # one before it changes, a new one sorts after both.
            ns, last = (
                whole["items"][-1]["metadata"]["namespace"],
                whole["items"][-1]["metadata"]["name"],
            )
            changed = whole["items"][-2]["metadata"]["name"]
            new = client.V1Pod(
                metadata=client.V1ObjectMeta(name="zzz-new", labels={"app": "new"}),
                spec=client.V1PodSpec(
                    node_name="node-0",
                    containers=[client.V1Container(name="app", image="registry.k8s.io/pause:3.10")],
                ),
            )
            await core.create_namespaced_pod(ns, new)
            await core.delete_namespaced_pod(last, ns)
            await core.patch_namespaced_pod(
                changed, ns, {"metadata": {"labels": {"app": "changed"}}}
            )
            while pages[-1].metadata._continue:
                token = pages[-1].metadata._continue
                pages.append(await core.list_pod_for_all_namespaces(limit=4, _continue=token))
            after = c.sanitize_for_serialization(await core.list_pod_for_all_namespaces())
            served = [c.sanitize_for_serialization(p) for p in pages]
        assert len(served) > 2
        versions = {p["metadata"]["resourceVersion"] for p in served}
        assert versions == {whole["metadata"]["resourceVersion"]}
        assert rows([item for p in served for item in p["items"]]) == rows(whole["items"])
        now = {p["metadata"]["name"]: p["metadata"]["labels"]["app"] for p in after["items"]}
        assert last not in now
        assert (now["zzz-new"], now[changed]) == ("new", "changed")

    run_with_api(body)


@pytest.mark.realtime
def test_a_continue_token_older_than_the_window_is_410_with_a_token_for_the_rest(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        pods = f"{api.url}/api/v1/pods"
        async with aiohttp.ClientSession() as s:
            _, first, _ = await get_json(s, f"{pods}?limit=4")
            meta = first["items"][0]["metadata"]
            for app in ("b", "c", "d", "e"):  # a window of 3 events: the first page's falls out
                await relabel(s, api, meta["namespace"], meta["name"], app)
            code, gone, _ = await get_json(
                s, f"{pods}?limit=4&continue={first['metadata']['continue']}"
            )
            token = gone["metadata"]["continue"]
            _, rest, _ = await get_json(s, f"{pods}?continue={token}")
        assert code == 410
        assert gone == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {"continue": token},
            "status": "Failure",
            "message": CONTINUE_TOO_OLD,
            "reason": "Expired",
            "code": 410,
        }
        assert int(rest["metadata"]["resourceVersion"]) == api.store.resource_version
        listed = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in rest["items"]]
        everything = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in
                      api.store.list_objects(PODS, None).items]  # fmt: skip
        assert listed == everything[4:]

    run_with_api(body, sim_config(api={"event_window": 3}))


@pytest.mark.realtime
def test_exact_reads_the_state_at_its_version_then_410_once_it_left_the_window_504_ahead(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        pods = f"{api.url}/api/v1/pods"
        async with aiohttp.ClientSession() as s:
            _, then, _ = await get_json(s, pods)
            rv = then["metadata"]["resourceVersion"]
            meta = then["items"][0]["metadata"]
            await relabel(s, api, meta["namespace"], meta["name"], "changed")
            _, exact, _ = await get_json(
                s, f"{pods}?resourceVersion={rv}&resourceVersionMatch=Exact"
            )
            _, legacy, _ = await get_json(s, f"{pods}?resourceVersion={rv}&limit=100")
            _, newer, _ = await get_json(
                s, f"{pods}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"
            )
            for app in ("b", "c", "d"):
                await relabel(s, api, meta["namespace"], meta["name"], app)
            too_old, old, _ = await get_json(
                s, f"{pods}?resourceVersion={rv}&resourceVersionMatch=Exact"
            )
            ahead = api.store.resource_version + 10
            too_new, new, resp = await get_json(
                s, f"{pods}?resourceVersion={ahead}&resourceVersionMatch=Exact"
            )
        assert (exact["metadata"]["resourceVersion"], rows(exact["items"])) == (
            rv,
            rows(then["items"]),
        )
        assert rows(legacy["items"]) == rows(then["items"])
        assert newer["items"][0]["metadata"]["labels"]["app"] == "changed"
        assert (too_old, old["reason"], old["message"]) == (410, "Expired", LIST_TOO_OLD)
        current = ahead - 10
        assert (too_new, new["reason"], new["message"]) == (
            504,
            "Timeout",
            f"Timeout: Too large resource version: {ahead}, current: {current}",
        )
        assert new["details"] == {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ]
        }  # etcd answers at once, without Retry-After
        assert "Retry-After" not in resp.headers

    run_with_api(body, sim_config(api={"event_window": 3}))


def executing(api: SimApiServer) -> int:
    """Requests holding an APF seat (a read waiting for its version holds one)."""
    levels = api.model.snapshot()["levels"].values()
    return sum(int(level["executing_requests"]) for level in levels)


def too_large(requested: int, current: int) -> tuple[str, dict[str, Any]]:
    """The message and details of the watch cache's 504 for a version it has not reached."""
    cause = {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
    message = f"Timeout: Too large resource version: {requested}, current: {current}"
    return message, {"causes": [cause], "retryAfterSeconds": 1}


@pytest.mark.realtime
def test_a_version_not_reached_yet_waits_3_s_on_the_clock_then_504_retry_after_1(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()

    async def body(api: SimApiServer) -> None:
        current = api.store.resource_version
        ahead = current + 5
        pod = api.store.list_objects(PODS, None, limit=1).items[0]["metadata"]
        urls = [
            f"{api.url}/api/v1/pods?resourceVersion={ahead}&resourceVersionMatch=NotOlderThan",
            f"{api.url}/api/v1/pods?resourceVersion={ahead}",  # legacy, no limit: the cache
            f"{api.url}/api/v1/namespaces/{pod['namespace']}/pods/{pod['name']}"
            f"?resourceVersion={ahead}",
        ]
        async with aiohttp.ClientSession() as s:
            reads = [asyncio.ensure_future(get_json(s, url)) for url in urls]
            await wait_for(lambda: executing(api) == len(urls), "the reads waiting")
            clock.advance(int((BLOCK_TIMEOUT_S - POLL_INTERVAL_S) * NS_PER_S))
            for _ in range(20):  # the waiting reads' polls run: none may answer yet
                await asyncio.sleep(0)
            assert not any(read.done() for read in reads)
            assert executing(api) == len(urls)
            clock.advance(int(POLL_INTERVAL_S * NS_PER_S))
            answers = await asyncio.gather(*reads)
        message, details = too_large(ahead, current)
        for code, status, resp in answers:
            assert (code, status["reason"], status["message"]) == (504, "Timeout", message)
            assert status["details"] == details
            assert resp.headers["Retry-After"] == "1"

    run_with_api(body, sim_config(overload={"cost": FREE_COST}), clock)


@pytest.mark.realtime
def test_a_send_initial_events_watch_from_a_version_not_reached_ends_in_a_504_error_event(
    run_with_api: RunWithApi,
) -> None:
    """On the real clock: the watch releases its APF seat before it waits, so nothing shows
    that it waits, and the test waits the server's 3 s with it."""

    async def body(api: SimApiServer) -> None:
        current = api.store.resource_version
        url = (
            f"{api.url}/api/v1/pods?watch=1&resourceVersion={current + 1}&sendInitialEvents=true"
            "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        )
        async with aiohttp.ClientSession() as s:
            status, (error, end) = await watch_events(s, url, 2)
        message, details = too_large(current + 1, current)
        assert status == 200  # the failure is inside the stream, as the cacher's errWatcher
        assert error is not None
        assert error["type"] == "ERROR"
        assert error["object"]["code"] == 504
        assert (error["object"]["message"], error["object"]["details"]) == (message, details)
        assert end is None

    run_with_api(body)


@pytest.mark.realtime
def test_not_older_than_a_version_that_arrives_while_waiting_is_served(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()

    async def body(api: SimApiServer) -> None:
        ahead = api.store.resource_version + 1
        url = (
            f"{api.url}/api/v1/configmaps?resourceVersion={ahead}&resourceVersionMatch=NotOlderThan"
        )
        async with aiohttp.ClientSession() as s:
            read = asyncio.ensure_future(get_json(s, url))
            await wait_for(lambda: executing(api) == 1, "the read waiting")
            api.store.create(CONFIGMAPS, {"metadata": {"name": "late", "namespace": "default"}})
            clock.advance(int(POLL_INTERVAL_S * NS_PER_S))
            code, listed, _ = await read
        assert code == 200
        assert int(listed["metadata"]["resourceVersion"]) == ahead
        assert "late" in [c["metadata"]["name"] for c in listed["items"]]

    run_with_api(body, sim_config(overload={"cost": FREE_COST}), clock)
