"""client-go's token bucket (``flowcontrol.NewTokenBucketRateLimiter``): exact send times."""

from __future__ import annotations

import pytest

from loadlab.agents.ratelimit import TokenBucket
from loadlab.clock import NS_PER_MS, NS_PER_S

# The kubelet's client: 50 QPS, burst 100 (docs/control-plane-model.md, "Watches and client rate
# limits"; kubelet config reference, kubeAPIQPS/kubeAPIBurst).
KUBELET_QPS = 50
KUBELET_BURST = 100
TOKEN_NS = 20 * NS_PER_MS  # 1 / 50 s


def test_full_bucket_lets_the_burst_go_at_once_then_spaces_requests_by_one_token() -> None:
    bucket = TokenBucket(KUBELET_QPS, KUBELET_BURST)
    times = [bucket.reserve(0) for _ in range(KUBELET_BURST + 3)]
    assert times[:KUBELET_BURST] == [0] * KUBELET_BURST
    assert times[KUBELET_BURST:] == [TOKEN_NS, 2 * TOKEN_NS, 3 * TOKEN_NS]


def test_idle_bucket_refills_to_burst_and_no_further() -> None:
    bucket = TokenBucket(KUBELET_QPS, KUBELET_BURST)
    for _ in range(KUBELET_BURST):
        bucket.reserve(0)
    # Ten seconds idle would be 500 tokens; the bucket holds 100.
    later = 10 * NS_PER_S
    assert bucket.tokens(later) == KUBELET_BURST
    times = [bucket.reserve(later) for _ in range(KUBELET_BURST + 1)]
    assert times == [later] * KUBELET_BURST + [later + TOKEN_NS]


def test_partial_refill_pays_for_as_many_requests_as_tokens_came_back() -> None:
    bucket = TokenBucket(KUBELET_QPS, KUBELET_BURST)
    for _ in range(KUBELET_BURST):
        bucket.reserve(0)
    # 100 ms later five tokens are back: five requests go now, the sixth one token later.
    now = 100 * NS_PER_MS
    assert [bucket.reserve(now) for _ in range(6)] == [now] * 5 + [now + TOKEN_NS]


def test_requests_in_debt_queue_in_order_behind_earlier_reservations() -> None:
    bucket = TokenBucket(5, 1)  # client-go's DefaultQPS, 5; burst 1 to show the queue
    assert bucket.reserve(0) == 0
    assert bucket.reserve(0) == 200 * NS_PER_MS
    # Asked later but before the previous reservation's slot: still waits its own turn.
    assert bucket.reserve(100 * NS_PER_MS) == 400 * NS_PER_MS
    assert bucket.tokens(400 * NS_PER_MS) == 0


def test_steady_rate_below_qps_never_waits() -> None:
    bucket = TokenBucket(KUBELET_QPS, 1)
    assert [bucket.reserve(i * TOKEN_NS) for i in range(50)] == [i * TOKEN_NS for i in range(50)]


@pytest.mark.parametrize(
    ("qps", "burst"),
    [pytest.param(0, 10, id="zero-qps"), pytest.param(5, 0, id="zero-burst")],
)
def test_bucket_refuses_a_limit_that_would_allow_nothing(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(qps, burst)
