"""The sim's /metrics carries what dashboards and clusterloader2 read, with kube-apiserver's labels.

One real sim API server on loopback, driven over HTTP: a watch the client closes, an etcd-backed
LIST that holds the only seat of its level, a GET that queues behind it and one more that finds
the queue full (429). /metrics is scraped while that happens and after, and each family is
checked for its label names (k8s.io/apiserver, Kubernetes 1.32) and for counts that match what
was sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from loadlab.clock import MonotonicClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.server import seeded_store
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import small_sim_config
from tests.sim.test_promtext import parse

pytestmark = pytest.mark.realtime

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]

NODES, PODS_PER_NODE = 5, 3
LEVEL = "global-default"
"""Where an anonymous client lands; the only queueing level configured here."""
ETCD_OBJECT_S = 0.1
"""15 pods x 0.1 s: the etcd-backed LIST holds its seat ~1.5 s, long enough to queue behind."""
REQUEST_LABELS = (
    "verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component",
)  # fmt: skip
SLI_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")


def one_seat_config() -> Any:
    """One seat for everyone but system:masters, a single queue holding one request."""
    levels = [
        {"name": "exempt", "exempt": True},
        {
            "name": LEVEL,
            "shares": 1,
            "queues": 1,
            "hand_size": 1,
            "queue_length_limit": 1,
        },
    ]
    return small_sim_config(
        nodes=NODES,
        pods_per_node=PODS_PER_NODE,
        overload={
            "total_seats": 1,
            "priority_levels": levels,
            "cost": {"etcd_object_s": ETCD_OBJECT_S},
        },
    )


async def scrape(session: aiohttp.ClientSession, api: SimApiServer) -> Samples:
    async with session.get(f"{api.url}/metrics") as resp:
        assert resp.status == 200
        return parse(await resp.text())


def series(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of ``name`` whose labels include ``labels``."""
    return {
        key: value
        for key, value in samples.get(name, {}).items()
        if all(dict(key).get(k) == v for k, v in labels.items())
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(series(samples, name, **labels).values())


def label_names(samples: Samples, name: str) -> set[tuple[str, ...]]:
    """Every label-name tuple ``name`` is written with (one, for a well-formed family)."""
    return {tuple(k for k, _ in key) for key in samples.get(name, {})}


async def drive(api: SimApiServer) -> tuple[Samples, Samples]:
    """Send the burst; return /metrics while the watch is open and the LIST holds, and after."""

    def level() -> dict[str, Any]:
        levels: dict[str, dict[str, Any]] = api.model.snapshot()["levels"]
        return levels[LEVEL]

    async with aiohttp.ClientSession() as s:
        # 1. A watch on every pod: it gets its initial ADDED events, then stays open.
        watch = await s.get(f"{api.url}/api/v1/pods?watch=1")
        assert watch.status == 200
        first = json.loads(await watch.content.readline())
        assert first["type"] == "ADDED"
        await wait_for(lambda: level()["executing_seats"] == 0, "the watch's seat to end at init")
        # 2. A cluster-wide LIST without resourceVersion: a consistent read from etcd.
        listing = asyncio.ensure_future(s.get(f"{api.url}/api/v1/pods"))
        await wait_for(lambda: level()["executing_seats"] == 1, "the LIST to hold the seat")
        # 3. A GET that queues behind it, 4. one that finds the queue full.
        queued = asyncio.ensure_future(s.get(f"{api.url}/api/v1/namespaces/default"))
        await wait_for(lambda: level()["queued"] == 1, "the GET to queue")
        async with s.get(f"{api.url}/api/v1/namespaces/kube-system") as refused:
            assert refused.status == 429
        during = await scrape(s, api)
        # 5. The client closes its watch.
        watch.close()
        for pending in (listing, queued):
            resp = await pending
            assert resp.status == 200
            await resp.read()
            resp.release()
        await wait_for(lambda: not any(api.store.watchers()), "the server to see the watch go")
        after = await scrape(s, api)
    return during, after


async def observe() -> tuple[Samples, Samples]:
    config = one_seat_config()
    api = SimApiServer(config, seeded_store(config), clock=MonotonicClock())
    await api.start()
    try:
        return await asyncio.wait_for(drive(api), timeout=60)
    finally:
        await api.stop()


@pytest.fixture(scope="module")
def scraped() -> tuple[Samples, Samples]:
    """(during, after): one burst, scraped while the watch is open and once it is closed."""
    return asyncio.run(observe())


def test_every_family_is_there_with_kube_apiservers_label_names(
    scraped: tuple[Samples, Samples],
) -> None:
    during, after = scraped
    expected = {
        "apiserver_request_total": {(*REQUEST_LABELS, "code")},
        "apiserver_request_duration_seconds_bucket": {(*REQUEST_LABELS, "le")},
        "apiserver_request_sli_duration_seconds_bucket": {(*SLI_LABELS, "le")},
        "etcd_request_duration_seconds_bucket": {("operation", "type", "le")},
        "apiserver_storage_objects": {("resource",)},
        "apiserver_flowcontrol_request_wait_duration_seconds_bucket": {
            ("priority_level", "flow_schema", "execute", "le")
        },
        "apiserver_flowcontrol_dispatched_requests_total": {("priority_level", "flow_schema")},
        "apiserver_flowcontrol_rejected_requests_total": {
            ("priority_level", "flow_schema", "reason")
        },
        "apiserver_flowcontrol_nominal_limit_seats": {("priority_level",)},
        "apiserver_registered_watchers": {("group", "version", "kind")},
        "apiserver_longrunning_requests": {SLI_LABELS},
    }
    assert {name: label_names(after, name) for name in expected} == expected
    # Mid-burst too, but for etcd: the LIST's etcd read has not ended yet.
    del expected["etcd_request_duration_seconds_bucket"]
    assert {name: label_names(during, name) for name in expected} == expected
    for sample in series(after, "apiserver_request_total"):
        assert dict(sample)["component"] == "apiserver"


def test_request_counts_match_the_requests_sent(scraped: tuple[Samples, Samples]) -> None:
    _, after = scraped
    core = {"group": "", "version": "v1", "subresource": "", "dry_run": ""}
    sent = {
        ("LIST", "pods", "cluster", "200"): 1,
        ("WATCH", "pods", "cluster", "200"): 1,
        ("GET", "namespaces", "resource", "200"): 1,
        ("GET", "namespaces", "resource", "429"): 1,
    }
    counted = {
        (d["verb"], d["resource"], d["scope"], d["code"]): value
        for key, value in series(after, "apiserver_request_total", **core).items()
        for d in [dict(key)]
    }
    assert counted == sent
    durations = {
        (d["verb"], d["resource"]): value
        for key, value in series(after, "apiserver_request_duration_seconds_count").items()
        for d in [dict(key)]
    }
    assert durations == {("LIST", "pods"): 1, ("WATCH", "pods"): 1, ("GET", "namespaces"): 2}


def test_a_watch_closed_by_its_client_is_counted_as_200_not_an_error(
    scraped: tuple[Samples, Samples],
) -> None:
    during, after = scraped
    watch = {"verb": "WATCH", "resource": "pods", "scope": "cluster"}
    # While open it is a long-running request and a registered watcher, not yet a finished one.
    assert total(during, "apiserver_longrunning_requests", **watch) == 1
    assert total(during, "apiserver_request_total", verb="WATCH") == 0
    assert total(after, "apiserver_longrunning_requests") == 0
    assert series(after, "apiserver_request_total", verb="WATCH") == {
        (
            ("verb", "WATCH"), ("dry_run", ""), ("group", ""), ("version", "v1"),
            ("resource", "pods"), ("subresource", ""), ("scope", "cluster"),
            ("component", "apiserver"), ("code", "200"),
        ): 1
    }  # fmt: skip
    errors = [
        dict(key)
        for key in series(after, "apiserver_request_total")
        if dict(key)["code"].startswith("5")
    ]
    assert errors == []


def test_storage_objects_and_watchers_come_from_the_store(
    scraped: tuple[Samples, Samples],
) -> None:
    during, after = scraped
    assert total(after, "apiserver_storage_objects", resource="pods") == NODES * PODS_PER_NODE
    assert total(after, "apiserver_storage_objects", resource="nodes") == NODES
    assert total(after, "apiserver_storage_objects", resource="leases.coordination.k8s.io") > 0
    pod_watchers = {"group": "", "version": "v1", "kind": "Pod"}
    assert total(during, "apiserver_registered_watchers", **pod_watchers) == 1
    assert total(after, "apiserver_registered_watchers", **pod_watchers) == 0


def test_apf_families_count_dispatches_rejections_and_queue_waits(
    scraped: tuple[Samples, Samples],
) -> None:
    _, after = scraped
    ours = {"priority_level": LEVEL, "flow_schema": "global-default"}
    # Dispatched: the watch (its seat until init), the LIST, the GET that queued.
    assert total(after, "apiserver_flowcontrol_dispatched_requests_total", **ours) == 3
    assert series(after, "apiserver_flowcontrol_rejected_requests_total") == {
        (("priority_level", LEVEL), ("flow_schema", "global-default"), ("reason", "queue-full")): 1
    }
    wait = "apiserver_flowcontrol_request_wait_duration_seconds"
    assert total(after, f"{wait}_count", execute="true", **ours) == 3
    assert total(after, f"{wait}_count", execute="false", **ours) == 1
    # Two went straight to a seat; the queued GET waited for the LIST (well over 0.5 s).
    assert total(after, f"{wait}_bucket", execute="true", le="0", **ours) == 2
    assert total(after, f"{wait}_bucket", execute="true", le="0.5", **ours) == 2
    assert total(after, f"{wait}_sum", execute="true", **ours) > 0.5
    assert total(after, "apiserver_flowcontrol_nominal_limit_seats", priority_level=LEVEL) == 1


def test_the_sli_histogram_leaves_out_the_queue_wait(scraped: tuple[Samples, Samples]) -> None:
    _, after = scraped
    get = {"verb": "GET", "resource": "namespaces"}
    duration_s = total(after, "apiserver_request_duration_seconds_sum", **get)
    sli_s = total(after, "apiserver_request_sli_duration_seconds_sum", **get)
    waited_s = total(
        after, "apiserver_flowcontrol_request_wait_duration_seconds_sum", execute="true"
    )
    assert duration_s > 0.5  # the queued GET
    assert sli_s == pytest.approx(duration_s - waited_s, abs=0.05)
    assert total(after, "apiserver_request_sli_duration_seconds_count", **get) == 2


def test_the_etcd_backed_list_shows_in_etcd_request_duration(
    scraped: tuple[Samples, Samples],
) -> None:
    _, after = scraped
    etcd = "etcd_request_duration_seconds"
    assert total(after, f"{etcd}_count", operation="list", type="pods") == 1
    held_s = total(after, f"{etcd}_sum", operation="list", type="pods")
    assert held_s == pytest.approx(NODES * PODS_PER_NODE * ETCD_OBJECT_S, rel=0.2)
