"""API saturation and DNS failure onset on synthetic series with a known answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadlab.analysis.onset import api_saturation, dns_failure, onset_s
from loadlab.analysis.steps import StepCriteria
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.metrics.ledger import LookupSecond, SendSecondLedger
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.targets.base import Outcome

CRITERIA = StepCriteria(max_error_rate=0.01, slo_p99_ms={"lease-renew": 1000.0})


def api_series(
    seconds: int,
    *,
    bad_from_s: int | None,
    outcome: Outcome = Outcome.THROTTLED,
    slow_ms: int | None = None,
    rate: int = 100,
) -> list[IntervalSnapshot]:
    """``rate`` lease renewals a second taking 5 ms; from ``bad_from_s`` on, each fails with
    ``outcome`` (or, with ``slow_ms``, succeeds that slowly)."""
    rec = Recorder("kubelet", ["lease-renew"], start_ns=0)
    snaps = []
    for t in range(seconds):
        base = t * NS_PER_S
        for k in range(rate):
            sent = base + k * (NS_PER_S // rate)
            rec.on_dispatch(sent, sent)
            bad = bad_from_s is not None and t >= bad_from_s
            if bad and slow_ms is None:
                rec.complete(0, outcome, sent, sent, sent + 5 * NS_PER_MS)
            else:
                latency = (slow_ms if bad and slow_ms else 5) * NS_PER_MS
                rec.complete(0, Outcome.OK, sent, sent, sent + latency)
        snaps.append(rec.rotate(base + NS_PER_S))
    return snaps


def test_a_healthy_api_never_saturates() -> None:
    assert api_saturation({"kubelet": api_series(60, bad_from_s=None)}, CRITERIA) is None


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        pytest.param({"outcome": Outcome.THROTTLED}, "429", id="throttled"),
        pytest.param({"outcome": Outcome.CONN_ERROR}, "conn_error", id="reset"),
        pytest.param({"slow_ms": 3000}, "p99", id="slow"),
    ],
)
def test_api_saturation_is_the_first_bad_second_of_a_sustained_breach(
    kwargs: dict[str, object], word: str
) -> None:
    breach = api_saturation({"kubelet": api_series(80, bad_from_s=37, **kwargs)}, CRITERIA)  # type: ignore[arg-type]
    assert breach is not None
    assert breach.at_s == 37.0
    assert word in breach.why
    assert breach.why.startswith("kubelet: ")


def test_a_short_blip_is_not_saturation() -> None:
    snaps = api_series(60, bad_from_s=None)
    blip = api_series(60, bad_from_s=0)
    series = snaps[:20] + blip[20:23] + snaps[23:]
    assert api_saturation({"kubelet": series}, CRITERIA) is None


def lookups(seconds: int, *, fail_from_s: int | None, per_s: int = 100) -> list[LookupSecond]:
    return [
        LookupSecond(float(t), 0, per_s)
        if fail_from_s is not None and t >= fail_from_s
        else LookupSecond(float(t), per_s, 0)
        for t in range(seconds)
    ]


def test_dns_failure_is_the_first_second_whose_lookups_fail_for_a_sustained_while() -> None:
    breach = dns_failure(lookups(120, fail_from_s=71))
    assert breach is not None
    assert breach.at_s == 71.0
    assert "lookups failed" in breach.why


def test_dns_that_keeps_answering_never_fails() -> None:
    assert dns_failure(lookups(120, fail_from_s=None)) is None
    assert dns_failure([]) is None


def test_onset_is_dns_failure_minus_api_saturation() -> None:
    assert onset_s(30.0, 75.0) == 45.0
    assert onset_s(None, 75.0) is None
    assert onset_s(30.0, None) is None


@settings(max_examples=40, deadline=None)
@given(
    fail_from=st.integers(min_value=0, max_value=150),
    share=st.floats(min_value=0.05, max_value=1.0),
)
def test_dns_failure_finds_any_sustained_step_change(fail_from: int, share: float) -> None:
    per_s = 200
    failed = round(per_s * share)
    series = [
        LookupSecond(float(t), per_s - failed, failed)
        if t >= fail_from
        else LookupSecond(float(t), per_s, 0)
        for t in range(180)
    ]
    breach = dns_failure(series)
    if 180 - fail_from >= 20:  # room for two full windows after the change
        assert breach is not None
        assert breach.at_s == float(fail_from)
    else:
        assert breach is None or breach.at_s >= fail_from


def test_the_ledger_counts_lookups_by_the_second_they_were_sent() -> None:
    ledger = SendSecondLedger("pod-dns", ["lookup", "dns-wire"], watched=["lookup"], start_ns=0)
    # Sent at 1.5 s, failed at 12 s: charged to second 1, not 12.
    ledger.complete(0, Outcome.TIMEOUT, int(1.5 * NS_PER_S), int(1.5 * NS_PER_S), 12 * NS_PER_S)
    ledger.complete(0, Outcome.OK, 3 * NS_PER_S, 3 * NS_PER_S, 3 * NS_PER_S + 1)
    ledger.complete(1, Outcome.TIMEOUT, 0, 0, NS_PER_S)  # not watched
    assert ledger.seconds() == [
        LookupSecond(1.0, 0, 1, {"timeout": 1}),
        LookupSecond(2.0, 0, 0),
        LookupSecond(3.0, 1, 0),
    ]
    assert ledger.seconds(since_ns=NS_PER_S)[0].t_s == 0.0
    snap = ledger.rotate(13 * NS_PER_S)
    assert snap.completed == 3  # still a recorder


@pytest.mark.parametrize(
    ("kwargs", "about_answers"),
    [
        pytest.param({"outcome": Outcome.THROTTLED}, True, id="429s-are-answers"),
        pytest.param({"outcome": Outcome.CONN_ERROR}, True, id="refusals-are-answers"),
        pytest.param({"outcome": Outcome.TIMEOUT}, False, id="timeouts-may-be-the-generator"),
        pytest.param({"slow_ms": 3000}, False, id="slowness-may-be-the-generator"),
    ],
)
def test_a_breach_says_whether_it_rests_on_the_servers_answers(
    kwargs: dict[str, object], about_answers: bool
) -> None:
    breach = api_saturation({"kubelet": api_series(80, bad_from_s=37, **kwargs)}, CRITERIA)  # type: ignore[arg-type]
    assert breach is not None
    assert breach.about_answers is about_answers


def test_a_dns_failure_names_its_dominant_outcome() -> None:
    series = [LookupSecond(float(t), 100, 0) for t in range(30)] + [
        LookupSecond(float(t), 10, 90, {"servfail": 80, "timeout": 10}) for t in range(30, 60)
    ]
    breach = dns_failure(series)
    assert breach is not None
    assert (breach.at_s, breach.dominant, breach.about_answers) == (30.0, "servfail", True)
    assert "mostly servfail" in breach.why
