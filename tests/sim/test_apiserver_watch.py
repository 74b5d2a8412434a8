"""Watch streams of the sim API server over HTTP: events, selectors, 410, timeouts, bookmarks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import LEASES
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST, MERGE

pytestmark = pytest.mark.realtime

READ_TIMEOUT_S = 10.0


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """The next event of a watch stream, or None at its end."""
    line = await asyncio.wait_for(resp.content.readline(), READ_TIMEOUT_S)
    return json.loads(line) if line else None


async def list_rv(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url) as resp:
        rv: str = (await resp.json())["metadata"]["resourceVersion"]
        return rv


def test_watch_sees_a_configmap_created_by_another_client(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as watcher, aiohttp.ClientSession() as writer:
            rv = await list_rv(watcher, url)
            async with watcher.get(f"{url}?watch=1&resourceVersion={rv}") as stream:
                assert stream.status == 200
                cm = {"metadata": {"name": "seen"}, "data": {"k": "v"}}
                async with writer.post(url, json=cm) as resp:
                    assert resp.status == 201
                event = await next_event(stream)
        assert event is not None
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "seen")
        assert event["object"]["data"] == {"k": "v"}

    run_with_api(body)


def test_watch_by_node_name_gets_only_that_nodes_pods(run_with_api: RunWithApi) -> None:
    async def body(api: SimApiServer) -> None:
        pods = f"{api.url}/api/v1/pods"
        async with aiohttp.ClientSession() as s:
            rv = await list_rv(s, pods)
            query = f"?watch=true&fieldSelector=spec.nodeName%3Dnode-1&resourceVersion={rv}"
            async with s.get(pods + query) as stream:
                node2_pod = await _pod_url(s, api.url, "node-2-pod-0")
                node1_pod = await _pod_url(s, api.url, "node-1-pod-0")
                for url in (node2_pod, node1_pod):
                    patch = {"metadata": {"annotations": {"touched": "yes"}}}
                    async with s.patch(url, json=patch, headers=MERGE) as resp:
                        assert resp.status == 200
                event = await next_event(stream)
        assert event is not None
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "node-1-pod-0")

    run_with_api(body)


async def _pod_url(s: aiohttp.ClientSession, base: str, name: str) -> str:
    async with s.get(f"{base}/api/v1/pods?fieldSelector=metadata.name%3D{name}") as resp:
        ns = (await resp.json())["items"][0]["metadata"]["namespace"]
    return f"{base}/api/v1/namespaces/{ns}/pods/{name}"


def test_object_that_stops_matching_a_label_watch_arrives_as_deleted(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            url = f"{api.url}/api/v1/nodes"
            rv = await list_rv(s, url)
            async with s.get(
                f"{url}?watch=1&labelSelector=kubernetes.io/os%3Dlinux&resourceVersion={rv}"
            ) as stream:
                patch = {"metadata": {"labels": {"kubernetes.io/os": "plan9"}}}
                async with s.patch(f"{url}/node-3", json=patch, headers=MERGE) as resp:
                    assert resp.status == 200
                event = await next_event(stream)
        assert event is not None
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "node-3")

    run_with_api(body)


def test_watch_from_a_version_older_than_the_event_window_gets_410_error_event(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession() as s:
            old_rv = await list_rv(s, url)
            for i in range(5):  # window of 3 events: the first changes fall out
                async with s.post(url, json={"metadata": {"name": f"c{i}"}}) as resp:
                    assert resp.status == 201
            async with s.get(f"{url}?watch=1&resourceVersion={old_rv}") as stream:
                event = await next_event(stream)
                end = await next_event(stream)
            fresh_rv = await list_rv(s, url)
            async with s.get(f"{url}?watch=1&resourceVersion={fresh_rv}&timeoutSeconds=1") as ok:
                assert ok.status == 200
        assert event is not None
        assert event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
        assert end is None

    run_with_api(body, sim_config(api={"event_window": 3}))


def test_watch_ends_at_timeout_seconds_and_sends_bookmarks_on_the_injected_clock(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()

    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        async with aiohttp.ClientSession() as s:
            rv = await list_rv(s, url.replace("/leases", "/leases?resourceVersion=0"))
            query = f"?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=5"
            async with s.get(url + query) as stream:
                assert stream.status == 200
                await wait_for(lambda: api.store.watcher_count(LEASES) == 1)
                clock.advance(2 * NS_PER_S)  # past the 1 s bookmark interval
                bookmark = await next_event(stream)
                clock.advance(4 * NS_PER_S)  # past timeoutSeconds=5
                events = [await next_event(stream) for _ in range(3)]
        assert bookmark is not None
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["resourceVersion"] == rv
        assert None in events  # the stream ended (maybe after one more bookmark)

    config = sim_config(api={"bookmark_interval_s": 1.0}, overload={"cost": FREE_COST})
    run_with_api(body, config, clock)


def test_table_watch_sends_column_definitions_with_its_first_event_only(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        nodes = f"{api.url}/api/v1/nodes?watch=1&resourceVersion=0"
        async with aiohttp.ClientSession() as s, s.get(nodes, headers=accept) as stream:
            events = [await next_event(stream) for _ in range(5)]  # one ADDED per seeded node
        assert all(e is not None and e["object"]["kind"] == "Table" for e in events)
        with_headers = [e is not None and "columnDefinitions" in e["object"] for e in events]
        assert with_headers == [True, False, False, False, False]

    run_with_api(body)
