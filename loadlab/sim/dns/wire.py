"""What CoreDNS's server layer does to a packet before and after the kubernetes plugin. No I/O.

CoreDNS 1.11 serves through miekg/dns, whose ``defaultMsgAcceptFunc`` (server.go) screens the
header before anything is parsed, and ``Msg.Truncate`` (called from ``request.Scrub``) fits the
answer to the client's buffer:

- fewer than 12 bytes, or the QR bit set: no answer at all (a reply could amplify an attack);
- an opcode other than QUERY or NOTIFY: NOTIMP, header only;
- QDCOUNT != 1, ANCOUNT > 1, NSCOUNT > 1 or ARCOUNT > 2, or a body that does not parse: FORMERR,
  header only (miekg's ``SetRcodeFormatError`` also resets the opcode to QUERY);
- an OPT record with EDNS version > 0: BADVERS (extended rcode 16) with an OPT of version 0
  (CoreDNS ``plugin/pkg/edns.Version``);
- an answer larger than the buffer (512 bytes without EDNS, the advertised size with it, never
  below 512; 65535 over TCP: ``edns.Size``) keeps as many *whole* records as fit, section by
  section, and sets TC.
"""

from __future__ import annotations

import enum

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset

HEADER_LEN = 12  # RFC 1035 4.1.1
UDP_MIN_SIZE = 512  # RFC 1035 / RFC 6891 6.2.5: a smaller advertised buffer counts as 512
TCP_MAX_SIZE = 65535  # RFC 1035 4.2.2: 2-byte length prefix

_QR = 0x8000
_AA = 0x0400
_Z = 0x0040
_OPCODE_MASK = 0x7800
_RCODE_MASK = 0x000F


class Screening(enum.Enum):
    """miekg/dns's verdict on a header (``MsgAcceptAction``)."""

    ACCEPT = "accept"
    IGNORE = "ignore"  # no reply
    FORMERR = "formerr"  # MsgReject
    NOTIMP = "notimp"  # MsgRejectNotImplemented


def screen(data: bytes) -> Screening:
    """miekg/dns ``defaultMsgAcceptFunc`` (v1.1.x), applied to the raw header."""
    if len(data) < HEADER_LEN:
        return Screening.IGNORE
    flags = int.from_bytes(data[2:4], "big")
    if flags & _QR:
        return Screening.IGNORE
    opcode = (flags & _OPCODE_MASK) >> 11
    if opcode not in (dns.opcode.QUERY, dns.opcode.NOTIFY):
        return Screening.NOTIMP
    qd, an, ns, ar = (int.from_bytes(data[i : i + 2], "big") for i in range(4, 12, 2))
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        return Screening.FORMERR
    return Screening.ACCEPT


def header_only_reply(data: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """The header-only answer miekg/dns writes for a rejected query (``serveDNS``).

    The request's own header bits (RD, CD...) are kept, as miekg replies with the request
    header; QR is set, AA and Z cleared, and the opcode reset to QUERY unless NOTIMP.
    """
    flags = int.from_bytes(data[2:4], "big")
    flags = (flags | _QR) & ~(_AA | _Z | _RCODE_MASK)
    if rcode != dns.rcode.NOTIMP:
        flags &= ~_OPCODE_MASK
    flags |= int(rcode) & _RCODE_MASK
    return data[:2] + flags.to_bytes(2, "big") + bytes(8)


def bad_version_reply(query: dns.message.Message) -> dns.message.Message:
    """BADVERS for a query whose OPT asks for EDNS version > 0 (RFC 6891 6.1.3)."""
    response = dns.message.make_response(query)  # answers with an OPT of version 0
    response.set_rcode(dns.rcode.BADVERS)
    return response


def buffer_size(query: dns.message.Message, *, tcp: bool) -> int:
    """How large an answer may be (CoreDNS ``request.Size`` with ``edns.Size``)."""
    if tcp:
        return TCP_MAX_SIZE
    if query.edns >= 0:
        return max(UDP_MIN_SIZE, min(query.payload, TCP_MAX_SIZE))
    return UDP_MIN_SIZE


def to_wire_fitting(response: dns.message.Message, max_size: int) -> bytes:
    """``response`` in at most ``max_size`` bytes, dropping whole records as miekg's
    ``Msg.Truncate`` does: answer first, then authority, then additional, each kept as long as
    its records fit; TC is set when any record was dropped.

    dnspython's own ``prefer_truncation`` drops a whole RRset at once, so a headless Service
    with 60 addresses would come back with none of them.
    """
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        pass
    sections = [
        _records(response.answer),
        _records(response.authority),
        _records(response.additional),
    ]
    kept = [0, 0, 0]
    for i, records in enumerate(sections):
        low, high = 0, len(records)  # invariant: ``low`` records fit
        while low < high:
            mid = (low + high + 1) // 2
            kept[i] = mid
            if _fits(response, sections, kept, max_size):
                low = mid
            else:
                high = mid - 1
        kept[i] = low
    trimmed = _with_records(response, sections, kept)
    trimmed.flags |= dns.flags.TC
    return trimmed.to_wire(max_size=max_size)


Record = tuple[dns.rrset.RRset, int]  # (its RRset, index in it)


def _records(section: list[dns.rrset.RRset]) -> list[Record]:
    return [(rrset, i) for rrset in section for i in range(len(rrset))]


def _with_records(
    response: dns.message.Message, sections: list[list[Record]], kept: list[int]
) -> dns.message.Message:
    trimmed = dns.message.Message(id=response.id)
    trimmed.flags = response.flags
    trimmed.question = list(response.question)
    if response.edns >= 0:
        trimmed.use_edns(
            response.edns, response.ednsflags, response.payload, options=list(response.options)
        )
    targets = (trimmed.answer, trimmed.authority, trimmed.additional)
    for records, count, target in zip(sections, kept, targets, strict=True):
        by_rrset: dict[int, tuple[dns.rrset.RRset, list[int]]] = {}
        for rrset, index in records[:count]:
            by_rrset.setdefault(id(rrset), (rrset, []))[1].append(index)
        for rrset, indexes in by_rrset.values():
            rdatas = list(rrset)
            target.append(
                dns.rrset.from_rdata_list(rrset.name, rrset.ttl, [rdatas[i] for i in indexes])
            )
    return trimmed


def _fits(
    response: dns.message.Message, sections: list[list[Record]], kept: list[int], max_size: int
) -> bool:
    try:
        _with_records(response, sections, kept).to_wire(max_size=max_size)
    except dns.exception.TooBig:
        return False
    return True
