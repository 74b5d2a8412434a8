"""The pod's stub resolver: glibc's search-list walk, A+AAAA, retries, and the node cache."""

from __future__ import annotations

import pytest

from loadlab.agents.base import DnsAnswer, DnsQuery, DnsQuestion
from loadlab.agents.nodecache import NodeLocalCache
from loadlab.agents.resolver import Lookup, LookupResult, NameTried, Verdict, resolve
from loadlab.clock import NS_PER_MS, NS_PER_S
from loadlab.targets.base import Outcome
from loadlab.testing.agents import (
    CannedDns,
    dns_address,
    dns_nodata,
    dns_nxdomain,
    dns_refused,
    dns_servfail,
    dns_timeout,
)

# A pod in namespace `default` (docs/control-plane-model.md, "The pod's resolver").
SEARCH = ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
KUBERNETES = "kubernetes.default.svc.cluster.local."
LATENCY_NS = NS_PER_MS  # CannedDns's default answer time
TIMEOUT_NS = 5 * NS_PER_S  # glibc timeout:5


def drive(lookup: Lookup, dns: CannedDns, start_ns: int = 0) -> LookupResult:
    """Play the engine for one lookup: every DnsQuery answered by ``dns``."""
    now_ns = start_ns
    try:
        action = lookup.send(None)
        for _ in range(100):
            reply = dns(action, now_ns)
            now_ns = reply.now_ns
            action = lookup.send(reply)
    except StopIteration as stop:
        result = stop.value
    else:
        raise AssertionError("the lookup did not end within 100 actions")
    assert isinstance(result, LookupResult)
    return result


def lookup(
    name: str,
    dns: CannedDns,
    *,
    cache: NodeLocalCache | None = None,
    at_ns: int = 0,
    ndots: int = 5,
    timeout_s: float = 5.0,
    attempts: int = 2,
) -> LookupResult:
    flow = resolve(
        name,
        SEARCH,
        now_ns=at_ns,
        cache=cache,
        ndots=ndots,
        timeout_s=timeout_s,
        attempts=attempts,
    )
    return drive(flow, dns, at_ns)


def serving(*names: str, answer: DnsAnswer | None = None) -> CannedDns:
    """A cluster DNS where each of ``names`` has an A record and no AAAA; the rest NXDOMAIN."""
    a = answer or dns_address("192.0.2.1")
    return CannedDns(records={name: {"A": a, "AAAA": dns_nodata()} for name in names})


@pytest.mark.parametrize(
    ("name", "ndots", "expected"),
    [
        pytest.param(
            "svc-2.app-1",
            5,
            [
                "svc-2.app-1.default.svc.cluster.local.",
                "svc-2.app-1.svc.cluster.local.",
                "svc-2.app-1.cluster.local.",
                "svc-2.app-1.",
            ],
            id="short-name-suffixes-first-then-as-given",
        ),
        pytest.param(
            "kubernetes",
            5,
            [
                "kubernetes.default.svc.cluster.local.",
                "kubernetes.svc.cluster.local.",
                "kubernetes.cluster.local.",
                "kubernetes.",
            ],
            id="single-label",
        ),
        pytest.param(
            "a.b.c.d.e.f",
            5,
            [
                "a.b.c.d.e.f.",
                "a.b.c.d.e.f.default.svc.cluster.local.",
                "a.b.c.d.e.f.svc.cluster.local.",
                "a.b.c.d.e.f.cluster.local.",
            ],
            id="five-dots-as-given-first",
        ),
        pytest.param(
            "example.com",
            1,
            [
                "example.com.",
                "example.com.default.svc.cluster.local.",
                "example.com.svc.cluster.local.",
                "example.com.cluster.local.",
            ],
            id="ndots-1-as-given-first",
        ),
        pytest.param("example.com.", 5, ["example.com."], id="trailing-dot-only-as-given"),
    ],
)
def test_walk_order_follows_ndots_and_the_trailing_dot(
    name: str, ndots: int, expected: list[str]
) -> None:
    dns = CannedDns()  # everything NXDOMAIN
    result = lookup(name, dns, ndots=ndots)
    assert result.names == tuple(expected)
    assert [q.questions[0].name for _, q in dns.queries] == expected
    assert result.verdict is Verdict.NXDOMAIN
    assert result.outcome is Outcome.NXDOMAIN
    assert not result.ok


def test_a_and_aaaa_go_out_together_in_one_query() -> None:
    dns = serving(KUBERNETES)
    lookup("kubernetes.default.svc.cluster.local.", dns)
    [(_, query)] = dns.queries
    assert query == DnsQuery(
        "dns-wire", (DnsQuestion(KUBERNETES, "A"), DnsQuestion(KUBERNETES, "AAAA")), 5.0
    )


def test_first_name_with_an_address_ends_the_lookup() -> None:
    # kubernetes.default from namespace default: NXDOMAIN on the first suffix, found on the second.
    dns = serving(KUBERNETES)
    result = lookup("kubernetes.default", dns)
    assert result.ok
    assert result.outcome is Outcome.OK
    assert result.addresses == ("192.0.2.1",)
    assert result.names == ("kubernetes.default.default.svc.cluster.local.", KUBERNETES)
    assert (result.wire_queries, result.wire_questions, result.cache_hits) == (2, 4, 0)
    assert result.finished_ns == 2 * LATENCY_NS


def test_an_aaaa_record_alone_is_an_address() -> None:
    dns = CannedDns(records={KUBERNETES: {"A": dns_nodata(), "AAAA": dns_address("2001:db8::1")}})
    result = lookup(KUBERNETES, dns)
    assert result.ok
    assert result.addresses == ("2001:db8::1",)


def test_servfail_is_retried_at_once_then_the_walk_goes_on() -> None:
    first = "kubernetes.default.default.svc.cluster.local."
    dns = serving(KUBERNETES)
    dns.records[first] = {"A": dns_servfail(), "AAAA": dns_servfail()}
    result = lookup("kubernetes.default", dns)
    assert result.ok
    assert result.tried[0] == NameTried(
        first, Verdict.SERVFAIL, tries=2, wire_queries=2, cache_hits=0
    )
    # send_dg treats SERVFAIL as "next server": the retry goes out as soon as it came back.
    assert [at for at, _ in dns.queries] == [0, LATENCY_NS, 2 * LATENCY_NS]


def test_a_cached_servfail_answers_the_retry_from_the_node_cache() -> None:
    first = "kubernetes.default.default.svc.cluster.local."
    dns = serving(KUBERNETES)
    dns.records[first] = {"A": dns_servfail(), "AAAA": dns_servfail()}
    result = lookup("kubernetes.default", dns, cache=NodeLocalCache())
    # CoreDNS caches SERVFAIL for 5 s (coredns#5074): the pod's second try never leaves the node.
    assert result.tried[0] == NameTried(
        first, Verdict.SERVFAIL, tries=2, wire_queries=1, cache_hits=2
    )
    assert result.ok


@pytest.mark.parametrize(
    ("name", "attempts", "timeout_s", "expected_names"),
    [
        # The search list ends at the first suffix that times out; the name as given is still
        # tried after the loop (glibc res_query.c: "If the query has not already been tried as
        # is then try it").
        pytest.param(
            "svc-2.app-1",
            2,
            5,
            ["svc-2.app-1.default.svc.cluster.local.", "svc-2.app-1."],
            id="short-name",
        ),
        pytest.param(
            "a.b.c.d.e.f",
            2,
            5,
            ["a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local."],
            id="long-name-as-given-then-one-suffix",
        ),
        pytest.param("example.com.", 2, 5, ["example.com."], id="trailing-dot"),
        pytest.param("example.com.", 3, 2, ["example.com."], id="three-attempts-of-2s"),
    ],
)
def test_timeout_on_every_attempt_ends_the_search_list(
    name: str, attempts: int, timeout_s: int, expected_names: list[str]
) -> None:
    dns = CannedDns(default=dns_timeout())
    result = lookup(name, dns, attempts=attempts, timeout_s=timeout_s)
    assert result.verdict is Verdict.TIMEOUT
    assert result.outcome is Outcome.TIMEOUT
    assert result.names == tuple(expected_names)
    assert all(t.tries == attempts for t in result.tried)
    sends = len(expected_names) * attempts
    assert result.wire_queries == sends
    timeout_ns = timeout_s * NS_PER_S
    assert [at for at, _ in dns.queries] == [i * timeout_ns for i in range(sends)]
    assert result.finished_ns == sends * timeout_ns


class SilentAtFirst(CannedDns):
    """Lets the first query time out, then answers from its table."""

    def answer(self, question: DnsQuestion) -> DnsAnswer:
        return dns_timeout() if len(self.queries) == 1 else super().answer(question)


def test_an_answer_on_the_second_attempt_succeeds_after_one_timeout() -> None:
    dns = SilentAtFirst(records=serving(KUBERNETES).records)
    result = lookup(KUBERNETES, dns)
    assert result.ok
    assert result.tried[0].tries == 2
    assert result.finished_ns == TIMEOUT_NS + LATENCY_NS


def test_refused_ends_the_search_list_after_its_retries() -> None:
    first = "svc-2.app-1.default.svc.cluster.local."
    dns = CannedDns(records={first: {"A": dns_refused(), "AAAA": dns_refused()}})
    result = lookup("svc-2.app-1", dns)
    assert result.names == (first, "svc-2.app-1.")
    assert result.tried[0].verdict is Verdict.REFUSED
    assert result.wire_queries == 3
    # glibc reports what the last query left: the as-given name's NXDOMAIN.
    assert result.verdict is Verdict.NXDOMAIN


@pytest.mark.parametrize(
    ("name", "records", "verdict", "outcome"),
    [
        pytest.param("svc-2.app-1", {}, Verdict.NXDOMAIN, Outcome.NXDOMAIN, id="all-nxdomain"),
        pytest.param(
            "svc-2.app-1",
            {"svc-2.app-1.svc.cluster.local.": {"A": dns_nodata(), "AAAA": dns_nodata()}},
            Verdict.NODATA,
            Outcome.NXDOMAIN,
            id="nodata-on-a-suffix-wins-over-nxdomain",
        ),
        pytest.param(
            "svc-2.app-1",
            {"svc-2.app-1.cluster.local.": {"A": dns_servfail(), "AAAA": dns_servfail()}},
            Verdict.SERVFAIL,
            Outcome.SERVFAIL,
            id="servfail-on-a-suffix-wins-over-nxdomain",
        ),
        pytest.param(
            "a.b.c.d.e.f",
            {"a.b.c.d.e.f.": {"A": dns_servfail(), "AAAA": dns_servfail()}},
            Verdict.SERVFAIL,
            Outcome.SERVFAIL,
            id="as-given-first-decides",
        ),
        pytest.param(
            "svc-2.app-1",
            {
                "svc-2.app-1.default.svc.cluster.local.": {
                    "A": dns_servfail(),
                    "AAAA": dns_nxdomain(),
                }
            },
            Verdict.NXDOMAIN,
            Outcome.NXDOMAIN,
            id="the-answer-beside-a-servfail-decides",
        ),
    ],
)
def test_failed_lookup_reports_what_glibc_would(
    name: str, records: dict[str, dict[str, DnsAnswer]], verdict: Verdict, outcome: Outcome
) -> None:
    result = lookup(name, CannedDns(records=records))
    assert (result.verdict, result.outcome) == (verdict, outcome)


def test_cache_answers_within_the_ttl_without_a_wire_query() -> None:
    cache = NodeLocalCache()
    dns = serving(KUBERNETES)
    first = lookup("kubernetes.default", dns, cache=cache)
    assert (first.wire_queries, first.cache_hits) == (2, 0)
    # At 4 s both the denial of the first suffix (5 s) and the address (30 s) are still cached.
    again = lookup("kubernetes.default", dns, cache=cache, at_ns=4 * NS_PER_S)
    assert again.ok
    assert (again.wire_queries, again.cache_hits) == (0, 4)
    assert again.finished_ns == again.started_ns  # nothing left the node


@pytest.mark.parametrize(
    ("at_s", "wire_queries", "cache_hits"),
    [
        pytest.param(4.9, 0, 4, id="denial-and-success-fresh"),
        # Both denials (the first suffix's NXDOMAIN, the service's AAAA NODATA) are gone; the
        # A record is still served: 2 queries, the second for AAAA alone.
        pytest.param(5.1, 2, 1, id="denials-expired-after-5s"),
        pytest.param(30.1, 2, 0, id="success-expired-after-30s"),
    ],
)
def test_cached_entries_expire_after_30s_success_and_5s_denial(
    at_s: float, wire_queries: int, cache_hits: int
) -> None:
    cache = NodeLocalCache()
    dns = serving(KUBERNETES, answer=dns_address("192.0.2.1", ttl_s=30))
    lookup("kubernetes.default", dns, cache=cache)
    later = lookup("kubernetes.default", dns, cache=cache, at_ns=int(at_s * NS_PER_S))
    assert later.ok
    assert (later.wire_queries, later.cache_hits) == (wire_queries, cache_hits)


def test_a_cached_question_leaves_only_the_other_for_the_wire() -> None:
    cache = NodeLocalCache()
    cache.store(KUBERNETES, "A", dns_nodata(), 0)
    dns = CannedDns(records={KUBERNETES: {"AAAA": dns_address("2001:db8::1")}})
    result = lookup(KUBERNETES, dns, cache=cache)
    [(_, query)] = dns.queries
    assert query.questions == (DnsQuestion(KUBERNETES, "AAAA"),)
    assert result.ok
    assert (result.cache_hits, result.wire_questions) == (1, 1)


def test_cached_answers_hide_a_failing_server_until_they_expire() -> None:
    # The incident's DNS half: the node cache keeps answering, then the failure shows.
    cache = NodeLocalCache()
    dns = serving(KUBERNETES)
    assert lookup(KUBERNETES, dns, cache=cache).ok
    dns.records.clear()
    dns.default = dns_servfail()
    assert lookup(KUBERNETES, dns, cache=cache, at_ns=29 * NS_PER_S).ok
    late = lookup(KUBERNETES, dns, cache=cache, at_ns=31 * NS_PER_S)
    assert late.outcome is Outcome.SERVFAIL
    assert cache.stats().stale_hits == 0


@pytest.mark.parametrize(
    ("ndots", "timeout_s", "attempts"),
    [
        pytest.param(5, 5.0, 0, id="no-attempts"),
        pytest.param(-1, 5.0, 2, id="negative-ndots"),
        pytest.param(5, 0.0, 2, id="no-timeout"),
    ],
)
def test_impossible_options_are_refused(ndots: int, timeout_s: float, attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts must be"):
        lookup(KUBERNETES, CannedDns(), ndots=ndots, timeout_s=timeout_s, attempts=attempts)
