"""Shared by the target tests: a DNS answer builder and a bounded wait for real loopback I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode

IO_POLL_S = 0.01
IO_WAIT_POLLS = 500
"""At most 5 s for a loopback round trip that takes well under a millisecond."""


def answer_to(
    query_wire: bytes, *, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, tc: bool = False
) -> bytes:
    """A response to ``query_wire``: its ID and question echoed, with ``rcode`` and the TC bit."""
    response = dns.message.make_response(dns.message.from_wire(query_wire))
    response.set_rcode(rcode)
    if tc:
        response.flags |= dns.flags.TC
    return response.to_wire()


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds: real socket I/O has no clock a test could advance."""
    for _ in range(IO_WAIT_POLLS):
        if condition():
            return
        await asyncio.sleep(IO_POLL_S)
    raise AssertionError(f"gave up waiting for {what}")
