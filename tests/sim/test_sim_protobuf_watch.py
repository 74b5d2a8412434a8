"""Protobuf watch streams: the frame's bytes against generated.proto, a client reading frames
(4-byte length, bare WatchEvent, enveloped object) through every kind of event, and which
Accept gets which stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.apiserver.watchstream import ProtobufFrames
from loadlab.sim.k8s.objects import CONFIGMAPS, PODS, JsonObj, configmap_obj, pod_obj
from loadlab.sim.k8s.protobuf import (
    MAGIC,
    MEDIA_TYPE,
    decode_object,
    decode_watch_event,
    encode_object,
    encode_watch_event,
    frame,
    wire_fields,
)
from loadlab.sim.storage.watch import WatchEvent
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST
from tests.sim.test_sim_consistent_reads import relabel

READ_TIMEOUT_S = 10.0
PROTOBUF_WATCH = f"{MEDIA_TYPE};stream=watch"
"""The Content-Type of a protobuf watch (apiserver handlers/watch.go)."""
CLIENT_GO = f"{MEDIA_TYPE}, */*"
"""What a client-go clientset with ContentType protobuf sends as Accept."""


# -- the wire, without HTTP ----------------------------------------------------------------------


def test_a_watch_event_is_type_1_and_object_2_holding_raw_1_in_a_big_endian_length_frame() -> None:
    """meta/v1 generated.proto: WatchEvent{type=1, object=2}, RawExtension{raw=1}; util/framer:
    a 4-byte big-endian length first."""
    event = encode_watch_event("ADDED", MAGIC + b"xyz")
    assert event == b"\x0a\x05ADDED" + b"\x12\x09" + b"\x0a\x07k8s\x00xyz"
    assert frame(event) == b"\x00\x00\x00\x12" + event
    assert frame(b"\x01" * 300)[:4] == b"\x00\x00\x01\x2c"


def test_a_decoded_watch_event_carries_the_object_with_its_kind() -> None:
    pod = pod_obj("p", "default", "node-1", "198.51.100.7", "198.51.100.1", "a")
    event = decode_watch_event(encode_watch_event("MODIFIED", encode_object(pod)))
    assert event == {"type": "MODIFIED", "object": decode_object(encode_object(pod))}
    assert event["object"]["kind"] == "Pod"
    assert event["object"]["metadata"]["labels"] == {"app": "a"}


def test_an_event_shared_by_many_watchers_is_encoded_once_and_the_cache_is_bounded() -> None:
    frames = ProtobufFrames(limit=2)
    first, second, third = (
        WatchEvent("ADDED", configmap_obj(name, "default", {"k": name}), rv)
        for rv, name in enumerate(("a", "b", "c"), start=1)
    )
    once = frames.frame(first)
    assert frames.frame(first) is once  # the second watcher gets the same bytes
    frames.frame(second)
    frames.frame(third)  # the cache is full: ``first`` goes
    again = frames.frame(first)
    assert again == once
    assert again is not once
    bookmark = WatchEvent("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": {}}, 9)
    assert frames.frame(bookmark) is not frames.frame(bookmark)  # per watcher: not kept


# -- a client over HTTP ----------------------------------------------------------------------


async def next_message(resp: aiohttp.ClientResponse) -> bytes | None:
    """The next frame's message, as util/framer's LengthDelimitedFrameReader reads it; None at
    the end of the stream."""
    try:
        head = await asyncio.wait_for(resp.content.readexactly(4), READ_TIMEOUT_S)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise AssertionError("the stream ended inside a frame's length") from exc
        return None
    size = int.from_bytes(head, "big")
    return await asyncio.wait_for(resp.content.readexactly(size), READ_TIMEOUT_S)


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """The next event, decoded as client-go does: the bare WatchEvent, then object.raw with the
    protobuf Serializer (magic, runtime.Unknown, the kind's message)."""
    message = await next_message(resp)
    if message is None:
        return None
    fields = {n: v for n, _, v in wire_fields(message)}
    raw = {n: v for n, _, v in wire_fields(_as_bytes(fields[2]))}[1]
    assert not message.startswith(MAGIC), "the event itself is bare (the RawSerializer)"
    assert _as_bytes(raw).startswith(MAGIC), "the object is a whole body"
    return decode_watch_event(message)


def _as_bytes(value: int | bytes) -> bytes:
    assert isinstance(value, bytes)
    return value


def _protobuf(accept: str = MEDIA_TYPE) -> dict[str, str]:
    return {"Accept": accept}


@pytest.mark.realtime
@pytest.mark.parametrize(
    "accept",
    [
        pytest.param(MEDIA_TYPE, id="protobuf"),
        pytest.param(PROTOBUF_WATCH, id="stream-watch"),
        pytest.param(CLIENT_GO, id="client-go"),
    ],
)
def test_a_pod_created_updated_and_deleted_during_a_protobuf_watch_arrives_as_frames(
    run_with_api: RunWithApi, accept: str
) -> None:
    async def body(api: SimApiServer) -> None:
        pods = f"{api.url}/api/v1/namespaces/default/pods"
        pod = pod_obj("watched", "default", "node-1", "198.51.100.9", "198.51.100.1", "a")
        rv = api.store.resource_version  # from now: no initial events
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{pods}?watch=1&resourceVersion={rv}", headers=_protobuf(accept)) as stream,
        ):
            assert (stream.status, stream.headers["Content-Type"]) == (200, PROTOBUF_WATCH)
            await wait_for(lambda: api.store.watcher_count(PODS) == 1, "the watch")
            async with s.post(pods, json=pod) as created:
                assert created.status == 201
            await relabel(s, api, "default", "watched", "b")
            async with s.delete(f"{pods}/watched") as deleted:
                assert deleted.status == 200
                gone = await deleted.json()
            events = [await next_event(stream) for _ in range(3)]
        seen = [
            (e["type"], e["object"]["kind"], e["object"]["metadata"]["labels"]["app"])
            for e in events
            if e is not None
        ]
        assert seen == [("ADDED", "Pod", "a"), ("MODIFIED", "Pod", "b"), ("DELETED", "Pod", "b")]
        last = events[2]
        assert last is not None
        meta, spec = last["object"]["metadata"], last["object"]["spec"]
        assert (meta["uid"], meta["resourceVersion"]) == (
            gone["metadata"]["uid"],
            gone["metadata"]["resourceVersion"],
        )
        assert spec["nodeName"] == "node-1"
        assert spec["containers"] == gone["spec"]["containers"]

    run_with_api(body)


@pytest.mark.realtime
def test_send_initial_events_then_its_end_bookmark_then_a_periodic_bookmark_in_protobuf(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()

    async def body(api: SimApiServer) -> None:
        url = (
            f"{api.url}/api/v1/pods?watch=1&sendInitialEvents=true"
            "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        )
        count, rv = api.store.count(PODS), str(api.store.resource_version)
        async with aiohttp.ClientSession() as s, s.get(url, headers=_protobuf()) as stream:
            initial = [await next_event(stream) for _ in range(count + 1)]
            clock.advance(2 * NS_PER_S)  # past the 1 s bookmark interval
            periodic = await next_event(stream)
        kinds = [(e["type"], e["object"]["kind"]) for e in initial if e is not None]
        assert kinds == [("ADDED", "Pod")] * count + [("BOOKMARK", "Pod")]
        names = {e["object"]["metadata"]["name"] for e in initial[:-1] if e is not None}
        assert len(names) == count
        end = initial[-1]
        assert end is not None
        assert end["object"] == {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": rv,
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }
        assert periodic == {
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}},
        }

    config = sim_config(api={"bookmark_interval_s": 1.0}, overload={"cost": FREE_COST})
    run_with_api(body, config, clock)


@pytest.mark.realtime
def test_a_too_old_version_is_one_protobuf_error_event_with_a_410_status_then_the_end(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/namespaces/default/configmaps"
        old_rv = api.store.resource_version
        async with aiohttp.ClientSession() as s:
            for i in range(5):  # a window of 3 events: the first changes fall out
                async with s.post(url, json={"metadata": {"name": f"c{i}"}}) as resp:
                    assert resp.status == 201
            watch = f"{url}?watch=1&resourceVersion={old_rv}"
            async with s.get(watch, headers=_protobuf()) as stream:
                ctype = stream.headers["Content-Type"]
                error, end = await next_event(stream), await next_event(stream)
        assert ctype == PROTOBUF_WATCH
        assert error is not None
        assert error["type"] == "ERROR"
        status = error["object"]
        assert (status["kind"], status["apiVersion"]) == ("Status", "v1")
        assert (status["status"], status["code"], status["reason"]) == ("Failure", 410, "Expired")
        assert status["message"].startswith(f"too old resource version: {old_rv} (")
        assert end is None

    run_with_api(body, sim_config(api={"event_window": 3}))


@pytest.mark.realtime
def test_a_protobuf_watch_refused_before_its_stream_gets_a_protobuf_status(
    run_with_api: RunWithApi,
) -> None:
    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/pods?watch=1&fieldSelector=spec.foo%3Dx"
        async with aiohttp.ClientSession() as s, s.get(url, headers=_protobuf()) as resp:
            code, ctype, status = resp.status, resp.headers["Content-Type"], await resp.read()
        assert (code, ctype) == (400, MEDIA_TYPE)
        assert decode_object(status)["message"] == "field label not supported: spec.foo"

    run_with_api(body)


STREAM_TYPES = f"application/json;stream=watch, {PROTOBUF_WATCH}"
ANSWER_TYPES = f"application/json, application/yaml, {MEDIA_TYPE}"
NEGOTIATED = [
    pytest.param(None, 200, "application/json", id="no-accept-is-json"),
    pytest.param("application/json", 200, "application/json", id="json"),
    pytest.param("*/*", 200, "application/json", id="anything-is-json"),
    pytest.param(f"{MEDIA_TYPE};q=0.5, application/json", 200, "application/json", id="by-q"),
    pytest.param(
        f"{MEDIA_TYPE};as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io",
        200,
        "application/json",
        id="table-stays-json",
    ),
    pytest.param("application/yaml", 406, STREAM_TYPES, id="yaml-has-no-stream"),
    pytest.param("text/html", 406, ANSWER_TYPES, id="nothing-served"),
]


@pytest.mark.realtime
@pytest.mark.parametrize(("accept", "code", "expected"), NEGOTIATED)
def test_which_accept_gets_which_watch_stream(
    run_with_api: RunWithApi, accept: str | None, code: int, expected: str
) -> None:
    """``expected``: the stream's Content-Type, or the media types a 406 lists."""

    async def body(api: SimApiServer) -> None:
        url = f"{api.url}/api/v1/configmaps?watch=1&resourceVersion=0"
        headers = {} if accept is None else {"Accept": accept}
        async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
            got = resp.status, resp.headers["Content-Type"]
            if code == 406:
                answer: JsonObj = json.loads(await resp.read())
            else:
                answer = json.loads(await resp.content.readline())  # the first seeded configmap
        if code == 406:
            assert got == (406, "application/json")
            message = f"only the following media types are accepted: {expected}"
            assert (answer["reason"], answer["message"]) == ("NotAcceptable", message)
        else:
            assert got == (200, expected)
            assert answer["type"] == "ADDED"
            kind = "Table" if "as=Table" in (accept or "") else CONFIGMAPS.kind
            assert answer["object"]["kind"] == kind

    run_with_api(body)
