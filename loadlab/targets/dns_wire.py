"""DNS wire helpers for the hot path: queries encoded once, answers checked by header bytes.

dnspython builds each query's wire once (``encode_query``); per send only the 16-bit ID in bytes 0-1
changes. Answers are not parsed by dnspython on the hot path: the header flags and the echoed
question say whether an answer is for a query (``answers``), the rcode how it ended (``classify``)
(RFC 1035 section 4.1.1).
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
OPCODE_MASK = 0x78  # in byte 2: the opcode; ours is QUERY (0)
FLAG_TC = 0x02  # in byte 2: truncated, retry over TCP (RFC 7766)
PLAIN_RESPONSE_MASK = FLAG_QR | OPCODE_MASK | FLAG_TC
"""Byte 2 masked with this is FLAG_QR alone for a whole (untruncated) response to a QUERY."""
RCODE_MASK = 0x0F  # in byte 3
MAX_UDP_ANSWER = 512
"""RFC 1035 4.2.1: a UDP message is at most 512 bytes without EDNS (we send none); a server with
more to say sets TC and the query is asked again over TCP. A longer datagram is MALFORMED."""
QDCOUNT_ONE = b"\x00\x01"
QDCOUNT_ZERO = b"\x00\x00"
QTYPE_QCLASS_LEN = 4

NO_QUESTION_RCODES = frozenset({1, 2, 4, 5})
"""FORMERR, SERVFAIL, NOTIMP, REFUSED: error answers some servers send without the question.
They are taken on their ID alone, as dnspython's ``Message.is_response`` does."""

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
    def op_name(self) -> str:
        """Its operation name in metrics: ``dns_op_name(name, rdtype)``."""
        return dns_op_name(self.name, self.rdtype)


def dns_op_name(name: str, rdtype: str) -> str:
    """The one name of a DNS operation in metrics, hlog tags and summary.json, for ``loadlab run``
    and bench alike: ``a-kubernetes.default.svc.cluster.local`` (the type in lower case, a dash,
    the name without its trailing dot)."""
    return f"{rdtype.lower()}-{name.rstrip('.')}"


@dataclass(frozen=True)
class EncodedQuery:
    """A query's wire, pre-built."""

    tail: bytes
    """The wire after the ID (bytes 2..): prepend two ID bytes to send."""
    qname: bytes
    """The question's name as on the wire, lower-cased: a response echoes it in any case."""
    qtype_qclass: bytes
    """The question's type and class, four bytes, echoed exactly."""
    expect_nxdomain: bool
    question: bytes
    """``qname + qtype_qclass``: the question section as sent, which a response echoing it byte
    for byte (no 0x20 case change) carries from offset 12 on (``is_plain_ok``)."""


def encode_query(query: DnsQuery) -> EncodedQuery:
    """Build the wire once with dnspython (ID 0, RD set, no EDNS, so at most 512-byte answers)."""
    name = query.name if query.name.endswith(".") else query.name + "."
    msg = dns.message.make_query(name.lower(), dns.rdatatype.from_text(query.rdtype))
    msg.id = 0
    wire = msg.to_wire()
    question = wire[HEADER_LEN:]  # no EDNS, so the question is all that follows the header
    return EncodedQuery(
        wire[2:],
        question[:-QTYPE_QCLASS_LEN].lower(),
        question[-QTYPE_QCLASS_LEN:],
        query.expect_nxdomain,
        question,
    )


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


def answers(wire: bytes, encoded: EncodedQuery) -> bool:
    """Whether ``wire``, whose ID matched, is a response to ``encoded``'s question.

    RFC 5452 section 3: a resolver takes an answer only if its ID *and* question match a query
    waiting for one. So: a response to a standard query echoing the same name (in any case, as
    0x20 case randomisation, draft-vixie-dnsext-dns0x20, may leave it), type and class; or an
    error answer without a question (``NO_QUESTION_RCODES``). Anything else with a right ID is a
    stray: it completes nothing.
    """
    if len(wire) < HEADER_LEN or (wire[2] & (FLAG_QR | OPCODE_MASK)) != FLAG_QR:
        return False
    qdcount = wire[4:6]
    if qdcount == QDCOUNT_ZERO:
        return wire[3] & RCODE_MASK in NO_QUESTION_RCODES
    qname = encoded.qname
    name_end = HEADER_LEN + len(qname)
    return (
        qdcount == QDCOUNT_ONE
        and wire[HEADER_LEN:name_end].lower() == qname
        and wire[name_end : name_end + QTYPE_QCLASS_LEN] == encoded.qtype_qclass
    )


def is_plain_ok(wire: bytes, encoded: EncodedQuery) -> bool:
    """Whether ``wire`` (at least ``HEADER_LEN`` bytes) is a whole NOERROR response to ``encoded``
    echoing its question byte for byte: then ``answers`` holds, ``classify`` says OK and it is not
    truncated, all read from five header bytes and one comparison. The hot path's first test;
    anything else (an error rcode, a 0x20-cased name, TC) takes the full ``answers``."""
    return (
        (wire[2] & PLAIN_RESPONSE_MASK) == FLAG_QR
        and not wire[3] & RCODE_MASK
        and wire[4] == 0
        and wire[5] == 1
        and wire.startswith(encoded.question, HEADER_LEN)
        and len(wire) <= MAX_UDP_ANSWER
    )


def classify(wire: bytes, encoded: EncodedQuery) -> Outcome:
    """The outcome of an answer that ``answers`` ``encoded``: its rcode."""
    outcome = RCODE_OUTCOMES.get(wire[3] & RCODE_MASK, Outcome.MALFORMED)
    if outcome is Outcome.NXDOMAIN and encoded.expect_nxdomain:
        return Outcome.OK
    return outcome
