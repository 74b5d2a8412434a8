"""The client-go reflector flow, driven by hand: fake engine time and canned API replies."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from loadlab.agents.base import (
    Action,
    ApiReply,
    Reply,
    Sleep,
    WatchClose,
    WatchEnd,
    WatchEvent,
    WatchNext,
    WatchOpen,
)
from loadlab.agents.reflector import (
    ReflectorBackoff,
    ReflectorConfig,
    ReflectorState,
    reflect,
)
from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import Step, api_calls, api_reply, run_flow

S = NS_PER_S
CONFIG = ReflectorConfig()
PATH = "/api/v1/pods"
SELECTOR = {"fieldSelector": "spec.nodeName=node-1"}


class FixedRandom(random.Random):
    """Every ``random()`` draw is ``value``: jitter and watch timeouts become exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def pod(name: str, rv: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv}}


def pod_list(rv: str, *items: dict[str, object], token: str = "") -> dict[str, object]:
    meta: dict[str, object] = {"resourceVersion": rv}
    if token:
        meta["continue"] = token
    return {"kind": "PodList", "metadata": meta, "items": list(items)}


def event(now_ns: int, kind: str, rv: str, name: str = "p") -> WatchEvent:
    return WatchEvent(now_ns, kind, pod(name, rv))


def gone(now_ns: int) -> WatchEvent:
    status = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
    return WatchEvent(now_ns, "ERROR", status)


Answer = Callable[[Action, int], Reply]


def scripted(*answers: Answer) -> Answer:
    """Answer the n-th non-sleep action with the n-th function; past the end, watch for ever."""
    queue = iter(answers)

    def answer(action: Action, now_ns: int) -> Reply:
        step = next(queue, None)
        if step is None:
            if isinstance(action, WatchNext):
                return WatchEnd(action.until_ns, "deadline")
            return api_reply(now_ns, 200, pod_list("999"))
        return step(action, now_ns)

    return answer


def ok_list(rv: str, *items: dict[str, object], token: str = "") -> Answer:
    return lambda action, now: api_reply(now, 200, pod_list(rv, *items, token=token))


def status(code: int, retry_after_s: float | None = None) -> Answer:
    return lambda action, now: api_reply(now, code, retry_after_s=retry_after_s)


def watch_ok() -> Answer:
    return lambda action, now: api_reply(now, 200)


def send(make: Callable[[int], Reply]) -> Answer:
    return lambda action, now: make(now)


def run(
    answer: Answer,
    *,
    until_s: float = 3600,
    rng: random.Random | None = None,
    state: ReflectorState | None = None,
    max_steps: int = 200,
) -> list[Step]:
    flow = reflect(
        "pods-list", "pods-watch", PATH, SELECTOR, CONFIG, rng or FixedRandom(0.0), 0, state
    )
    return run_flow(flow, answer, until_ns=int(until_s * S), max_steps=max_steps)


def actions_of(steps: list[Step], kind: type[object]) -> list[object]:
    return [s.action for s in steps if isinstance(s.action, kind)]


def watch_opens(steps: list[Step]) -> list[WatchOpen]:
    return [s.action for s in steps if isinstance(s.action, WatchOpen)]


def sleeps_s(steps: list[Step]) -> list[float]:
    return [
        round((s.action.until_ns - s.at_ns) / S, 6) for s in steps if isinstance(s.action, Sleep)
    ]


def test_list_follows_continue_pages_then_watches_from_the_lists_resource_version() -> None:
    state = ReflectorState()
    steps = run(
        scripted(
            ok_list("100", pod("a", "90"), token="c1"),
            ok_list("105", pod("b", "95")),
            watch_ok(),
        ),
        state=state,
        max_steps=4,
    )
    first, second = api_calls(steps)
    assert dict(first.params) == {**SELECTOR, "resourceVersion": "0", "limit": "500"}
    # Continue pages carry the token instead of a resourceVersion (pager.go), same limit.
    assert dict(second.params) == {**SELECTOR, "continue": "c1", "limit": "500"}
    (opened,) = watch_opens(steps)
    assert opened.params["resourceVersion"] == "100"  # the first page's: pager.go
    assert opened.params["allowWatchBookmarks"] == "true"
    assert opened.params["fieldSelector"] == SELECTOR["fieldSelector"]
    assert state.objects == {"default/a": "90", "default/b": "95"}
    assert (state.lists, state.relists, state.list_pages, state.watches) == (1, 0, 2, 1)


@pytest.mark.parametrize(
    ("draw", "timeout_s"),
    [(0.0, 300), (0.5, 450), (0.9999, 599)],
    ids=["low-draw-5-min", "mid-draw", "high-draw-under-10-min"],
)
def test_watch_timeout_is_five_minutes_times_one_plus_a_draw(draw: float, timeout_s: int) -> None:
    steps = run(scripted(ok_list("100"), watch_ok()), rng=FixedRandom(draw), max_steps=3)
    (opened,) = watch_opens(steps)
    assert opened.params["timeoutSeconds"] == str(timeout_s)
    nexts = actions_of(steps, WatchNext)
    assert nexts == [WatchNext(until_ns=timeout_s * S)]


@pytest.mark.parametrize(
    "end_reason", ["closed", "error", "deadline"], ids=["server-closed", "cut", "timed-out"]
)
def test_watch_that_ends_is_reopened_at_once_from_the_last_rv_including_bookmarks(
    end_reason: str,
) -> None:
    state = ReflectorState()
    steps = run(
        scripted(
            ok_list("100"),
            watch_ok(),
            send(lambda now: event(now + 5 * S, "ADDED", "101", "x")),
            send(lambda now: event(now + 5 * S, "MODIFIED", "120", "x")),
            send(lambda now: event(now + 5 * S, "BOOKMARK", "150")),
            send(lambda now: WatchEnd(now + 5 * S, end_reason)),
            watch_ok(),
        ),
        state=state,
        max_steps=8 if end_reason == "deadline" else 7,  # up to the second WatchOpen
    )
    first, second = watch_opens(steps)
    assert first.params["resourceVersion"] == "100"
    assert second.params["resourceVersion"] == "150"  # the bookmark's
    assert len(api_calls(steps)) == 1  # no relist
    assert sleeps_s(steps) == []  # no backoff
    assert state.objects == {"default/x": "120"}
    assert (state.watches, state.events) == (2, 3)
    assert (WatchClose() in actions_of(steps, WatchClose)) == (end_reason == "deadline")


def test_deleted_event_forgets_the_object() -> None:
    state = ReflectorState()
    run(
        scripted(
            ok_list("100", pod("a", "90"), pod("b", "91")),
            watch_ok(),
            send(lambda now: event(now + S, "DELETED", "101", "a")),
        ),
        state=state,
        max_steps=4,
    )
    assert state.objects == {"default/b": "91"}
    assert state.resource_version == "101"


@pytest.mark.parametrize(
    ("draw", "expected_s"),
    [
        (0.0, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]),
        (0.5, [1.2, 2.4, 4.8, 9.6, 19.2, 38.4, 45.0, 45.0]),
        (0.999, [1.5992, 3.1984, 6.3968, 12.7936, 25.5872, 51.1744, 59.97, 59.97]),
    ],
    ids=["jitter-low-edge", "jitter-middle", "jitter-high-edge"],
)
def test_failing_list_backs_off_doubling_from_0_8_s_to_30_s_with_jitter_in_d_to_2d(
    draw: float, expected_s: list[float]
) -> None:
    steps = run(status(500), rng=FixedRandom(draw), until_s=400, max_steps=16)
    assert sleeps_s(steps) == expected_s
    # A relist after an error repeats the initial rv=0 LIST: nothing was ever synced.
    assert {c.params["resourceVersion"] for c in api_calls(steps)} == {"0"}


@pytest.mark.parametrize(
    ("healthy_s", "next_backoff_s"),
    [(121, 0.8), (60, 6.4)],
    ids=["healthy-over-2-min-resets", "healthy-under-2-min-keeps-doubling"],
)
def test_backoff_starts_again_at_0_8_s_after_two_minutes_without_one(
    healthy_s: float, next_backoff_s: float
) -> None:
    steps = run(
        scripted(
            status(500),
            status(500),
            status(500),
            ok_list("100"),
            watch_ok(),
            send(lambda now: WatchEnd(now + int(healthy_s * S), "closed")),
            status(503),  # the re-watch fails: ListAndWatch returns, back off, relist
        ),
        max_steps=11,
    )
    assert sleeps_s(steps) == [0.8, 1.6, 3.2, next_backoff_s]


@pytest.mark.parametrize(
    "gone_as",
    ["error-event", "http-reply"],
    ids=["410-as-watch-error-event", "410-as-watch-reply"],
)
def test_gone_watch_relists_at_last_rv_and_falls_back_to_a_consistent_list_if_that_is_gone(
    gone_as: str,
) -> None:
    state = ReflectorState()
    answers: list[Answer] = [ok_list("100")]
    if gone_as == "error-event":
        answers += [watch_ok(), send(gone)]
    else:
        answers += [status(410)]
    answers += [
        status(410),  # the relist at rv=100 is gone too...
        ok_list("300", pod("c", "299")),  # ...so the consistent read
        watch_ok(),
    ]
    steps = run(scripted(*answers), state=state, max_steps=12)
    lists = api_calls(steps)
    assert [dict(c.params) for c in lists] == [
        {**SELECTOR, "resourceVersion": "0", "limit": "500"},
        # reflector.go: after a watch's 410, LIST at the last rv, unpaged (the watch cache)...
        {**SELECTOR, "resourceVersion": "100"},
        # ...and only when that LIST is 410 too, resourceVersion "" (left out) in pages of 500.
        {**SELECTOR, "limit": "500"},
    ]
    assert sleeps_s(steps) == [0.8]  # one backoff before the relist, none between the two LISTs
    assert watch_opens(steps)[-1].params["resourceVersion"] == "300"
    assert state.objects == {"default/c": "299"}
    assert (state.lists, state.relists, state.consistent_lists) == (3, 2, 1)
    assert state.watch_errors == 1
    assert state.rv_unavailable is False


def test_gone_relist_served_at_last_rv_needs_no_consistent_read() -> None:
    state = ReflectorState()
    steps = run(
        scripted(ok_list("100"), watch_ok(), send(gone), ok_list("200"), watch_ok()),
        state=state,
        max_steps=8,
    )
    assert [c.params.get("resourceVersion") for c in api_calls(steps)] == ["0", "100"]
    assert watch_opens(steps)[-1].params["resourceVersion"] == "200"
    assert state.consistent_lists == 0


def test_expired_continue_token_falls_back_to_one_unpaged_list_at_the_requested_rv() -> None:
    steps = run(
        scripted(ok_list("100", token="c1"), status(410), ok_list("130"), watch_ok()),
        max_steps=5,
    )
    assert [dict(c.params) for c in api_calls(steps)] == [
        {**SELECTOR, "resourceVersion": "0", "limit": "500"},
        {**SELECTOR, "continue": "c1", "limit": "500"},
        {**SELECTOR, "resourceVersion": "0"},
    ]
    assert watch_opens(steps)[0].params["resourceVersion"] == "130"


def test_retry_after_of_a_429_is_slept_then_the_same_request_sent_again() -> None:
    steps = run(
        scripted(status(429, retry_after_s=3), ok_list("100"), watch_ok()),
        max_steps=5,
    )
    first, again = api_calls(steps)
    assert first.params == again.params
    (sleep_step,) = [s for s in steps if isinstance(s.action, Sleep)]
    assert sleep_step.action == Sleep(until_ns=3 * S)
    assert again.intended_ns == 3 * S  # latency of the retry counts from the end of the wait


def test_ten_retry_afters_then_the_reflector_backs_off_and_lists_again() -> None:
    steps = run(status(429, retry_after_s=1), until_s=30, max_steps=30)
    # 1 + 10 REST retries a second apart (rest/request.go maxRetries), then the 0.8 s backoff.
    assert sleeps_s(steps)[:11] == [1.0] * 10 + [0.8]
    assert len(api_calls(steps)[:11]) == 11


@pytest.mark.parametrize(
    "refusal",
    [
        [status(429)],
        [lambda a, now: ApiReply(now, 0, Outcome.CONN_ERROR)],
        [watch_ok(), send(lambda now: WatchEvent(now, "ERROR", {"kind": "Status", "code": 429}))],
    ],
    ids=["429-reply", "connection-refused", "429-error-event"],
)
def test_throttled_or_refused_watch_backs_off_and_rewatches_without_relisting(
    refusal: list[Answer],
) -> None:
    state = ReflectorState()
    steps = run(scripted(ok_list("100"), *refusal, watch_ok()), state=state, max_steps=8)
    assert len(api_calls(steps)) == 1
    assert sleeps_s(steps) == [0.8]
    assert [w.params["resourceVersion"] for w in watch_opens(steps)][:2] == ["100", "100"]
    assert state.watch_errors == 1


@pytest.mark.parametrize(
    "failure",
    [status(500), lambda a, now: ApiReply(now + 60 * S, 0, Outcome.TIMEOUT)],
    ids=["5xx", "timeout"],
)
def test_other_watch_failures_back_off_and_relist_at_the_last_rv(
    failure: Answer,
) -> None:
    state = ReflectorState()
    steps = run(scripted(ok_list("100"), failure, ok_list("110"), watch_ok()), state=state)
    assert [c.params.get("resourceVersion") for c in api_calls(steps)[:2]] == ["0", "100"]
    assert sleeps_s(steps)[:1] == [0.8]
    assert state.relists >= 1


def test_watch_closed_within_a_second_with_no_event_is_an_error_that_relists() -> None:
    state = ReflectorState()
    steps = run(
        scripted(
            ok_list("100"),
            watch_ok(),
            send(lambda now: WatchEnd(now + S // 2, "closed")),
            ok_list("100"),
            watch_ok(),
        ),
        state=state,
        max_steps=8,
    )
    assert len(api_calls(steps)) == 2
    assert sleeps_s(steps) == [0.8]
    assert state.watch_errors == 1


def test_backoff_manager_caps_at_30_s_and_resets_after_2_min() -> None:
    backoff = ReflectorBackoff(CONFIG, FixedRandom(0.0), now_ns=0)
    delays = [backoff.next_delay_ns(0) / S for _ in range(8)]
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    assert backoff.next_delay_ns(120 * S) / S == 30.0  # exactly 2 min later: not yet
    assert backoff.next_delay_ns(241 * S) / S == 0.8  # over 2 min since the last one
