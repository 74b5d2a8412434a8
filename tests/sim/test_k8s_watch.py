"""The informer: client-go reflector rules, on a real HTTP fake API on loopback and a FakeClock.

The API is ``FakeApi`` (tests/sim/fake_api.py): LIST with pages, WATCH streams, 410 Gone, refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from loadlab.clock import NS_PER_S, FakeClock, MonotonicClock
from loadlab.sim.dns.informer import (
    ApiError,
    Backoff,
    BackoffPolicy,
    HttpApiSource,
    Informer,
    ObjectList,
    StreamEvent,
)
from loadlab.sim.k8s.objects import JsonObj
from loadlab.testing.waiting import WAIT_S, wait_for
from tests.sim.fake_api import SERVICES, FakeApi, run_with_fake_api

FAST_BACKOFF = BackoffPolicy(initial_s=0.01, cap_s=0.05)  # real-time tests: keep waits tiny


class RecordingHandler:
    """Keeps the informer's view of the collection and wakes waiters on every change."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonObj] = {}
        self.calls: list[str] = []
        self._changed = asyncio.Event()

    def on_replace(self, items: Sequence[JsonObj]) -> None:
        self.objects = {obj["metadata"]["name"]: obj for obj in items}
        self.calls.append("replace")
        self._changed.set()

    def on_event(self, event_type: str, obj: JsonObj) -> None:
        name = obj["metadata"]["name"]
        if event_type == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self.calls.append(event_type)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def svc(name: str, ip: str = "192.0.2.10") -> JsonObj:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip}}


@contextlib.asynccontextmanager
async def running(informer: Informer, source: HttpApiSource) -> AsyncIterator[None]:
    task = asyncio.create_task(informer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


@pytest.mark.realtime
def test_informer_lists_from_the_watch_cache_then_streams_changes() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("kubernetes"))
        source = HttpApiSource(api.url, token="t0ken")
        handler = RecordingHandler()
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock())
        async with running(informer, source):
            async with asyncio.timeout(WAIT_S):
                await informer.wait_synced()
            assert set(handler.objects) == {"kubernetes"}
            await wait_for(lambda: informer.watches == 1)
            api.put(SERVICES, svc("web"))
            api.delete(SERVICES, "default", "kubernetes")
            await handler.until(lambda: set(handler.objects) == {"web"})
        assert handler.calls == ["replace", "ADDED", "DELETED"]
        assert api.requests[0] == (SERVICES, {"resourceVersion": "0", "limit": "500"})
        watch_params = api.requests[1][1]
        assert watch_params["allowWatchBookmarks"] == "true"
        assert 300 <= int(watch_params["timeoutSeconds"]) < 600
        assert informer.resource_version == str(api.rv)

    run_with_fake_api(body)


@pytest.mark.realtime
def test_list_follows_continue_tokens_across_pages() -> None:
    async def body(api: FakeApi) -> None:
        for i in range(1201):
            api.put(SERVICES, svc(f"s{i}"))
        source = HttpApiSource(api.url)
        try:
            listed = await source.list(SERVICES, resource_version="0")
        finally:
            await source.close()
        assert len(listed.items) == 1201
        assert listed.resource_version == str(api.rv)
        assert [p.get("continue") for _, p in api.requests] == [None, "500", "1000"]

    run_with_fake_api(body)


@pytest.mark.realtime
def test_throttled_list_is_retried_after_retry_after_without_the_informer_failing() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        api.throttle_lists = 3
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock())
        async with running(informer, source):
            async with asyncio.timeout(WAIT_S):
                await informer.wait_synced()
        assert informer.failures == 0
        assert set(handler.objects) == {"a"}
        assert sum(1 for _, p in api.requests if "watch" not in p) == 4

    run_with_fake_api(body)


@pytest.mark.realtime
def test_gone_error_event_relists_with_a_consistent_read() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        api.gone_next_watch = True
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await wait_for(lambda: informer.lists == 2 and informer.watches == 2)
        lists = [p for _, p in api.requests if "watch" not in p]
        assert [p["resourceVersion"] for p in lists] == ["0", ""]
        assert handler.calls == ["replace", "replace"]

    run_with_fake_api(body)


@pytest.mark.realtime
def test_refused_watch_backs_off_and_rewatches_without_relisting() -> None:
    async def body(api: FakeApi) -> None:
        api.refuse_watches = 3
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await wait_for(lambda: informer.watches == 1)
            assert informer.broken_since_ns is None
        assert informer.lists == 1
        assert informer.failures == 3
        assert [p.get("watch") for _, p in api.requests] == [None, "1", "1", "1", "1"]

    run_with_fake_api(body)


@pytest.mark.realtime
def test_api_going_away_marks_the_watch_broken_until_it_returns() -> None:
    async def body(api: FakeApi) -> None:
        api.put(SERVICES, svc("a"))
        handler = RecordingHandler()
        source = HttpApiSource(api.url)
        informer = Informer(source, SERVICES, handler, clock=MonotonicClock(), backoff=FAST_BACKOFF)
        async with running(informer, source):
            await wait_for(lambda: informer.watches == 1)
            await api.stop()
            await wait_for(lambda: informer.broken_since_ns is not None)
            assert informer.synced  # a broken watch does not unsync: the cache is kept
            assert set(handler.objects) == {"a"}
            await api.start()  # same port
            api.put(SERVICES, svc("b"))
            await wait_for(lambda: informer.broken_since_ns is None and informer.watches >= 2)
            await handler.until(lambda: "b" in handler.objects)
        assert informer.lists == 1  # came back by re-watching, not relisting

    run_with_fake_api(body)


class ScriptedSource:
    """An ApiSource that never answers: every LIST fails as if the API were down."""

    def __init__(self) -> None:
        self.attempts_ns: list[int] = []
        self.clock: FakeClock | None = None

    async def list(self, path: str, *, resource_version: str) -> ObjectList:
        assert self.clock is not None
        self.attempts_ns.append(self.clock.now_ns())
        raise ApiError(None, "connection refused")

    def watch(
        self, path: str, *, resource_version: str, timeout_s: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        raise AssertionError("never gets that far")


def test_unreachable_api_is_retried_with_reflector_backoff_and_reported_broken() -> None:
    clock = FakeClock(start_ns=7 * NS_PER_S)
    source = ScriptedSource()
    source.clock = clock
    informer = Informer(source, SERVICES, RecordingHandler(), clock=clock, rng=random.Random(1))

    async def main() -> None:
        task = asyncio.create_task(informer.run())
        await clock.sleep_until(clock.now_ns() + 120 * NS_PER_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(clock.run(main()))

    gaps_s = [
        (b - a) / NS_PER_S for a, b in zip(source.attempts_ns, source.attempts_ns[1:], strict=False)
    ]
    bases_s = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0]
    for gap_s, base_s in zip(gaps_s, bases_s, strict=False):
        assert base_s <= gap_s < 2 * base_s
    assert len(gaps_s) >= 5
    assert informer.broken_since_ns == 7 * NS_PER_S
    assert not informer.synced


@pytest.mark.parametrize(
    ("quiet_s", "expected_base_s"),
    [
        pytest.param(119.0, 3.2, id="within-2-min-keeps-doubling"),
        pytest.param(121.0, 0.8, id="reset"),
    ],
)
def test_backoff_resets_after_two_minutes_without_failures(
    quiet_s: float, expected_base_s: float
) -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), random.Random(0))
    assert backoff.next_delay_s(0) == 0.8
    assert backoff.next_delay_s(1 * NS_PER_S) == 1.6

    delay_s = backoff.next_delay_s(int((1 + quiet_s) * NS_PER_S))

    assert delay_s == pytest.approx(expected_base_s)


def test_backoff_is_capped_at_thirty_seconds() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0.0), random.Random(0))
    delays_s = [backoff.next_delay_s(i * NS_PER_S) for i in range(12)]
    assert delays_s[-1] == 30.0
    assert max(delays_s) == 30.0
