"""DNS wire helpers for the hot path: queries encoded once, answers checked by header bytes.

dnspython builds each query's wire once (``encode_query``); per send only the 16-bit ID in bytes 0-1
changes. Answers are not parsed by dnspython on the hot path: the header flags, the rcode and the
echoed question are enough to classify them (RFC 1035 section 4.1.1).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import dns.message
import dns.rdatatype

from loadlab.targets.base import Outcome

HEADER_LEN = 12
"""RFC 1035 4.1.1: ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT, two bytes each."""
FLAG_QR = 0x80  # in byte 2: this is a response
FLAG_TC = 0x02  # in byte 2: truncated, retry over TCP (RFC 7766)
RCODE_MASK = 0x0F  # in byte 3
QDCOUNT_ONE = b"\x00\x01"

RCODE_OUTCOMES = {0: Outcome.OK, 2: Outcome.SERVFAIL, 3: Outcome.NXDOMAIN, 5: Outcome.REFUSED}
"""NOERROR, SERVFAIL, NXDOMAIN, REFUSED. Any other rcode (FORMERR, NOTIMP, ...) is an answer we
cannot use, reported as MALFORMED."""


@dataclass(frozen=True)
class DnsQuery:
    """One kind of query in the mix."""

    name: str
    """Fully qualified or not; a trailing dot is added."""
    rdtype: str = "A"
    weight: float = 1.0
    expect_nxdomain: bool = False
    """The name is meant not to exist (a search-path miss): NXDOMAIN is then the right answer
    and counts as OK; for other queries NXDOMAIN is reported as such (a failure)."""

    @property
    def label(self) -> str:
        """Metric key: ``A kubernetes.default.svc.cluster.local``."""
        return f"{self.rdtype.upper()} {self.name.rstrip('.')}"


@dataclass(frozen=True)
class EncodedQuery:
    """A query's wire, pre-built."""

    tail: bytes
    """The wire after the ID (bytes 2..): prepend two ID bytes to send."""
    question: bytes
    """The question section, lower-cased, as a response must echo it."""
    expect_nxdomain: bool


def encode_query(query: DnsQuery) -> EncodedQuery:
    """Build the wire once with dnspython (ID 0, RD set, no EDNS, so at most 512-byte answers)."""
    name = query.name if query.name.endswith(".") else query.name + "."
    msg = dns.message.make_query(name.lower(), dns.rdatatype.from_text(query.rdtype))
    msg.id = 0
    wire = msg.to_wire()
    return EncodedQuery(wire[2:], wire[HEADER_LEN:].lower(), query.expect_nxdomain)


def with_id(qid: int, encoded: EncodedQuery) -> bytes:
    """The wire of ``encoded`` with ID ``qid``."""
    return qid.to_bytes(2, "big") + encoded.tail


ID_SPACE = 1 << 16
"""DNS message IDs are 16 bits (RFC 1035 4.1.1)."""


def next_free_id(outstanding: Container[int], start: int) -> int | None:
    """The first 16-bit ID from ``start`` on, wrapping, that is not in ``outstanding``;
    None when all 65536 are taken (the search is bounded either way)."""
    qid = start
    for _ in range(ID_SPACE):
        if qid not in outstanding:
            return qid
        qid = (qid + 1) & 0xFFFF
    return None


def answer_id(wire: bytes) -> int | None:
    """The ID of an answer, or None when it is too short to be DNS."""
    if len(wire) < HEADER_LEN:
        return None
    return (wire[0] << 8) | wire[1]


def is_truncated(wire: bytes) -> bool:
    """The TC bit of a (matched) answer."""
    return bool(wire[2] & FLAG_TC)


def classify(wire: bytes, encoded: EncodedQuery) -> Outcome:
    """The outcome of an answer whose ID matched: is it for *this* question, and its rcode.

    The question is compared case-insensitively (0x20 randomisation is the client's to use).
    """
    question = encoded.question
    if (
        len(wire) < HEADER_LEN + len(question)
        or not wire[2] & FLAG_QR
        or wire[4:6] != QDCOUNT_ONE
        or wire[HEADER_LEN : HEADER_LEN + len(question)].lower() != question
    ):
        return Outcome.MALFORMED
    outcome = RCODE_OUTCOMES.get(wire[3] & RCODE_MASK, Outcome.MALFORMED)
    if outcome is Outcome.NXDOMAIN and encoded.expect_nxdomain:
        return Outcome.OK
    return outcome
