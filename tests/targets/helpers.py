"""Shared by the target tests: sending a batch through a target, or running one under a closed
loop, DNS query and answer wires, and whether the DNS sweeper waits."""

from __future__ import annotations

from collections.abc import Sequence

import dns.flags
import dns.message
import dns.rcode

from loadlab.clock import NS_PER_S, Clock, FakeClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import ClosedLoopRunner
from loadlab.targets.base import Target
from loadlab.targets.dns_wire import DnsQuery, encode_query, with_id
from loadlab.testing.fakes import Completion, FakeRecorder

DRAIN_S = 10.0
"""How long ``send_and_drain`` lets a batch take: far beyond a loopback answer, so reaching it
means a bug (the target's own timeout, shorter, is what a test of silence relies on)."""


async def send_and_drain(
    target: Target, clock: Clock, order: Sequence[int], *, drain_s: float = DRAIN_S
) -> list[Completion]:
    """Open ``target`` (whose clock is ``clock``), submit the operations of ``order`` at once,
    drain and close: every completion, in the order they came. Fails if the drain leaves
    anything in flight."""
    recorder = FakeRecorder()
    await target.open(recorder)
    try:
        for op in order:
            target.submit(op, clock.now_ns())
        await target.drain(clock.now_ns() + int(drain_s * NS_PER_S))
        assert target.in_flight == 0
    finally:
        await target.close()
    return recorder.completions


async def closed_loop(
    target: Target, clock: Clock, *, concurrency: int, run_s: float
) -> list[Completion]:
    """Open ``target`` (whose clock is ``clock``) under a ``ClosedLoopRunner`` of one operation
    for ``run_s``, drain and close: every completion, in the order they came. The recorder makes
    a step, so a target with ``set_step`` takes it."""
    recorder = FakeRecorder()
    end_ns = clock.now_ns() + int(run_s * NS_PER_S)
    runner = ClosedLoopRunner(
        clock, target, OpMix.single(), recorder, concurrency=concurrency, end_ns=end_ns
    )
    await target.open(runner.sink)
    try:
        await runner.run()
        await target.drain(clock.now_ns() + int(DRAIN_S * NS_PER_S))
    finally:
        await target.close()
    return recorder.completions


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
    """Whether a target's timeout sweep (DNS, lean HTTP: ``base.sweep_timeouts``) waits on
    ``clock`` for a deadline still ahead."""
    deadline_ns = clock.next_deadline_ns
    return deadline_ns is not None and deadline_ns > clock.now_ns()
