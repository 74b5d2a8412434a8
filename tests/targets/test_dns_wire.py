"""Pre-encoded queries and header-only answer classification."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from loadlab.targets.base import Outcome
from loadlab.targets.dns_wire import (
    DnsQuery,
    answer_id,
    classify,
    encode_query,
    is_truncated,
    next_free_id,
    with_id,
)

from .helpers import answer_to, query_wire


def test_encoded_query_parses_back_with_the_patched_id() -> None:
    encoded = encode_query(DnsQuery("Web.Default.svc.cluster.local", "AAAA"))
    msg = dns.message.from_wire(with_id(0xBEEF, encoded))
    assert msg.id == 0xBEEF
    assert str(msg.question[0].name) == "web.default.svc.cluster.local."
    assert msg.question[0].rdtype == dns.rdatatype.AAAA
    assert msg.flags & dns.flags.RD


@pytest.mark.parametrize(
    ("rcode", "expect_nxdomain", "outcome"),
    [
        (dns.rcode.NOERROR, False, Outcome.OK),
        (dns.rcode.NXDOMAIN, False, Outcome.NXDOMAIN),
        (dns.rcode.NXDOMAIN, True, Outcome.OK),
        (dns.rcode.SERVFAIL, False, Outcome.SERVFAIL),
        (dns.rcode.REFUSED, True, Outcome.REFUSED),
        (dns.rcode.NOTIMP, False, Outcome.MALFORMED),
    ],
)
def test_classify_maps_rcodes(
    rcode: dns.rcode.Rcode, expect_nxdomain: bool, outcome: Outcome
) -> None:
    query = DnsQuery("a.cluster.local", expect_nxdomain=expect_nxdomain)
    assert classify(answer_to(query_wire(query), rcode=rcode), encode_query(query)) is outcome


def test_truncation_and_id_are_read_from_the_header() -> None:
    wire = answer_to(query_wire(DnsQuery("a.cluster.local"), qid=0x1234), tc=True)
    assert answer_id(wire) == 0x1234
    assert is_truncated(wire)
    assert answer_id(b"short") is None


@pytest.mark.parametrize(
    ("taken", "start", "expected"),
    [
        pytest.param(set(), 5, 5, id="start-free"),
        pytest.param({5, 6}, 5, 7, id="skips-taken"),
        pytest.param({0xFFFF, 0}, 0xFFFF, 1, id="wraps-past-65535"),
    ],
)
def test_next_free_id_takes_the_first_untaken_id_from_start(
    taken: set[int], start: int, expected: int
) -> None:
    assert next_free_id(taken, start) == expected
