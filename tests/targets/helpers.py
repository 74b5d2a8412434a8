"""Shared by the target tests: DNS query and answer wires, and whether the DNS sweeper waits."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode

from loadlab.clock import FakeClock
from loadlab.targets.dns_wire import DnsQuery, encode_query, with_id


def query_wire(query: DnsQuery, qid: int = 7) -> bytes:
    """The wire ``DnsTarget`` sends for ``query`` with ID ``qid``."""
    return with_id(qid, encode_query(query))


def answer_to(
    query_wire: bytes, *, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, tc: bool = False
) -> bytes:
    """A response to ``query_wire``: its ID and question echoed, with ``rcode`` and the TC bit."""
    response = dns.message.make_response(dns.message.from_wire(query_wire))
    response.set_rcode(rcode)
    if tc:
        response.flags |= dns.flags.TC
    return response.to_wire()


def sweeper_asleep(clock: FakeClock) -> bool:
    """Whether the DNS target's timeout sweep waits on ``clock`` for a deadline still ahead."""
    deadline_ns = clock.next_deadline_ns
    return deadline_ns is not None and deadline_ns > clock.now_ns()
