"""The store and selectors behind the sim API server, without HTTP."""

from __future__ import annotations

import pytest

from loadlab.sim.k8s.objects import (
    CONFIGMAPS,
    NAMESPACES,
    PODS,
    configmap_obj,
    namespace_obj,
    pod_obj,
)
from loadlab.sim.k8s.patches import merge_patch
from loadlab.sim.storage.selection import FieldSelector, LabelSelector, SelectorError
from loadlab.sim.storage.store import Conflict, Expired, NotFound, Store


def store_with_pods(window: int = 100) -> Store:
    store = Store(event_window=window)
    store.create(NAMESPACES, namespace_obj("default"))
    for i in range(6):
        node = f"node-{i % 2}"
        store.create(
            PODS, pod_obj(f"p{i}", "default", node, "198.51.100.1", "198.51.100.2", f"a{i % 3}")
        )
    return store


def test_merge_patch_removes_null_keys_and_leaves_the_original_untouched() -> None:
    original = {"a": {"b": 1, "c": 2}, "d": [1]}
    patched = merge_patch(original, {"a": {"b": None, "e": 3}, "d": [2], "$setElementOrder/x": []})
    assert patched == {"a": {"c": 2, "e": 3}, "d": [2]}
    assert original == {"a": {"b": 1, "c": 2}, "d": [1]}


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        pytest.param("a=1,b!=2", {"a": "1", "b": "3"}, True, id="and"),
        pytest.param("a in (1, 2)", {"a": "2"}, True, id="in"),
        pytest.param("a notin (1,2),b", {"a": "3"}, False, id="notin-and-exists"),
        pytest.param("!a", {}, True, id="not-exists"),
    ],
)
def test_label_selector_matches_like_kubernetes(
    text: str, labels: dict[str, str], matches: bool
) -> None:
    assert LabelSelector.parse(text).matches({"metadata": {"labels": labels}}) is matches


def test_unparseable_label_selector_raises() -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse("a in")


def test_node_index_follows_a_pod_moving_to_another_node() -> None:
    store = store_with_pods()
    store.patch(PODS, "default", "p0", {"spec": {"nodeName": "node-9"}})
    on_9 = store.list_objects(PODS, None, fields=FieldSelector.parse("spec.nodeName=node-9"))
    on_0 = store.list_objects(PODS, None, fields=FieldSelector.parse("spec.nodeName=node-0"))
    assert [p["metadata"]["name"] for p in on_9.items] == ["p0"]
    assert [p["metadata"]["name"] for p in on_0.items] == ["p2", "p4"]


def test_stale_update_conflicts_and_missing_object_is_not_found() -> None:
    store = store_with_pods()
    old = store.get(PODS, "default", "p1")
    store.patch(PODS, "default", "p1", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(Conflict):
        store.update(PODS, old)
    with pytest.raises(NotFound):
        store.delete(PODS, "default", "nope")


def test_watcher_by_node_gets_only_events_of_its_node_and_a_delete_when_a_pod_leaves() -> None:
    store = store_with_pods()
    watcher = store.watch(
        PODS,
        None,
        fields=FieldSelector.parse("spec.nodeName=node-1"),
        resource_version=str(store.resource_version),
    )
    store.patch(PODS, "default", "p0", {"metadata": {"labels": {"x": "1"}}})  # node-0: not seen
    store.patch(PODS, "default", "p1", {"spec": {"nodeName": "node-0"}})  # leaves node-1
    events = [watcher.queue.get_nowait() for _ in range(watcher.queue.qsize())]
    assert [(e.type, e.obj["metadata"]["name"]) for e in events if e] == [("DELETED", "p1")]


def test_watch_from_before_the_event_window_expires_and_rebuild_expires_everything() -> None:
    store = store_with_pods(window=2)
    start = store.resource_version
    for i in range(3):
        store.create(CONFIGMAPS, configmap_obj(f"c{i}", "default", {}))
    with pytest.raises(Expired):
        store.watch(CONFIGMAPS, None, resource_version=str(start))
    latest = str(store.resource_version)
    live = store.watch(CONFIGMAPS, None, resource_version=latest)
    store.rebuild_watch_cache()
    assert live.queue.get_nowait() is None
    with pytest.raises(Expired):
        store.watch(CONFIGMAPS, None, resource_version=latest)


def test_continue_token_older_than_the_window_is_expired() -> None:
    store = store_with_pods(window=2)
    page = store.list_objects(PODS, None, limit=2)
    assert page.continue_token is not None
    for i in range(3):
        store.patch(PODS, "default", "p5", {"metadata": {"labels": {"n": str(i)}}})
    with pytest.raises(Expired):
        store.list_objects(PODS, None, limit=2, continue_token=page.continue_token)
