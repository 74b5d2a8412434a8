"""Where a watch starts and what a field selector may name, as a real kube-apiserver decides:
a plain watch from a future version, ``sendInitialEvents`` and its bookmark, per-kind fields."""

from __future__ import annotations

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import NAMESPACES, PODS
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi
from tests.sim.test_sim_consistent_reads import get_json, next_event, relabel

pytestmark = pytest.mark.realtime


def test_a_plain_watch_from_a_future_version_skips_every_change_up_to_it(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        first = api.store.list_objects(PODS, None, limit=1).items[0]["metadata"]
        ahead = api.store.resource_version + 2
        url = f"{api.url}/api/v1/pods?watch=1&resourceVersion={ahead}"
        async with aiohttp.ClientSession() as s, s.get(url) as stream:
            assert stream.status == 200
            await wait_for(lambda: api.store.watcher_count(PODS) == 1, "the watch")
            for app in ("b", "c", "d"):  # at ahead-1, ahead, ahead+1
                await relabel(s, api, first["namespace"], first["name"], app)
            event = await next_event(stream)
        assert event is not None
        assert event["type"] == "MODIFIED"
        assert event["object"]["metadata"]["resourceVersion"] == str(ahead + 1)
        assert event["object"]["metadata"]["labels"]["app"] == "d"

    run_with_api(body)


UNSUPPORTED_FIELDS = [
    pytest.param(
        "/api/v1/pods?fieldSelector=spec.foo%3Dx", "field label not supported: spec.foo", id="pod"
    ),
    pytest.param(
        "/api/v1/pods?watch=1&fieldSelector=spec.foo%3Dx",
        "field label not supported: spec.foo",
        id="pod-watch",
    ),
    pytest.param(
        "/api/v1/nodes?fieldSelector=metadata.namespace%3Dx",
        "field label not supported: metadata.namespace",
        id="node-namespace",
    ),
    pytest.param(
        "/api/v1/configmaps?fieldSelector=data.k%3Dv",
        '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"',
        id="configmap-default-conversion",
    ),
]


@pytest.mark.parametrize(("path", "message"), UNSUPPORTED_FIELDS)
def test_a_field_selector_the_kind_does_not_support_is_400_with_the_real_message(
    run_with_api: RunWithApi, path: str, message: str
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, status, _ = await get_json(s, api.url + path)
        assert (code, status["reason"], status["message"]) == (400, "BadRequest", message)

    run_with_api(body)


SUPPORTED_FIELDS = [
    pytest.param("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse", 5, id="node-unset-bool"),
    pytest.param("/api/v1/pods?fieldSelector=spec.host%3Dnode-1", 3, id="pod-spec-host-alias"),
    pytest.param("/api/v1/pods?fieldSelector=spec.hostNetwork%3Dfalse", 15, id="pod-unset-bool"),
    pytest.param(
        "/api/v1/namespaces?fieldSelector=status.phase%3DActive", None, id="namespace-phase"
    ),
]


@pytest.mark.parametrize(("path", "count"), SUPPORTED_FIELDS)
def test_the_field_selectors_a_kind_supports_select(
    run_with_api: RunWithApi, path: str, count: int | None
) -> None:
    async def body(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, listed, _ = await get_json(s, api.url + path)
        assert code == 200
        expected = api.store.count(NAMESPACES) if count is None else count
        assert len(listed["items"]) == expected
        if "spec.host%3D" in path:
            assert {p["spec"]["nodeName"] for p in listed["items"]} == {"node-1"}

    run_with_api(body)


def test_send_initial_events_sends_the_state_then_a_bookmark_marking_its_end(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        url = (
            f"{api.url}/api/v1/pods?watch=1&sendInitialEvents=true"
            "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        )
        pods = api.store.count(PODS)
        rv = str(api.store.resource_version)
        first = api.store.list_objects(PODS, None, limit=1).items[0]["metadata"]
        async with aiohttp.ClientSession() as s, s.get(url) as stream:
            initial = [await next_event(stream) for _ in range(pods + 1)]
            await relabel(s, api, first["namespace"], first["name"], "later")
            later = await next_event(stream)
        assert [e["type"] for e in initial if e is not None] == ["ADDED"] * pods + ["BOOKMARK"]
        bookmark = initial[-1]
        assert bookmark is not None
        assert bookmark["object"]["metadata"] == {
            "resourceVersion": rv,
            "annotations": {"k8s.io/initial-events-end": "true"},
        }
        assert later is not None
        assert (later["type"], later["object"]["metadata"]["labels"]["app"]) == (
            "MODIFIED",
            "later",
        )

    run_with_api(body)


def test_send_initial_events_false_starts_from_now_and_true_needs_not_older_than(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        pods = f"{api.url}/api/v1/pods?watch=1"
        first = api.store.list_objects(PODS, None, limit=1).items[0]["metadata"]
        async with aiohttp.ClientSession() as s:
            code, refused, _ = await get_json(s, f"{pods}&sendInitialEvents=true")
            quiet = f"{pods}&sendInitialEvents=false&resourceVersionMatch=NotOlderThan"
            async with s.get(quiet) as stream:
                await wait_for(lambda: api.store.watcher_count(PODS) == 1, "the watch")
                await relabel(s, api, first["namespace"], first["name"], "now")
                event = await next_event(stream)
        assert (code, refused["reason"]) == (422, "Invalid")
        assert refused["message"] == (
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        )
        assert event is not None
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", first["name"])

    run_with_api(body)
