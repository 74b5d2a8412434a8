"""Hot paths of the wire (pytest-benchmark; not part of the test suite): DNS encode, parse and
classify, a DNS round trip through ``DnsTarget``, and parsing an HTTP response as the lean client
does. No timing is asserted; per-query figures go to ``extra_info``.

Run: ``.venv/bin/pytest bench/test_bench_targets.py --benchmark-only``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import dns.message
import dns.rcode
import httptools
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from loadlab import runloop
from loadlab.metrics.recorder import Recorder
from loadlab.targets.base import Outcome
from loadlab.targets.dns import DnsTarget
from loadlab.targets.dns_wire import (
    DnsQuery,
    EncodedQuery,
    answers,
    classify,
    encode_query,
    is_plain_ok,
    with_id,
)

QUERY = DnsQuery("kubernetes.default.svc.cluster.local")
BATCH = 100
"""Queries per round trip: ``dns-throughput``'s 100 outstanding."""
NGINX_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 01:02:53 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 36\r\nConnection: keep-alive\r\n\r\n"
    b'{"kind":"Status","status":"Success"}'
)
"""What the HTTP side-by-side's nginx answers, byte for byte."""


def _answer(encoded: EncodedQuery, *, rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(with_id(1, encoded)))
    response.set_rcode(rcode)
    return response.to_wire()


@pytest.fixture(scope="module")
def encoded() -> EncodedQuery:
    return encode_query(QUERY)


# -- DNS encode ----------------------------------------------------------------------------------


def test_bench_dns_encode_with_id(benchmark: BenchmarkFixture, encoded: EncodedQuery) -> None:
    """A new bytes object per query (the TCP fallback's and the agents' client's way)."""
    benchmark(with_id, 0xABCD, encoded)


def test_bench_dns_encode_id_into_the_wire(
    benchmark: BenchmarkFixture, encoded: EncodedQuery
) -> None:
    """Two bytes written into the op's pre-built wire (``DnsTarget.submit``'s way)."""
    wire = bytearray(with_id(0, encoded))

    def write_id(qid: int) -> bytearray:
        wire[0] = qid >> 8
        wire[1] = qid & 0xFF
        return wire

    assert benchmark(write_id, 0xABCD) == with_id(0xABCD, encoded)


# -- DNS parse and classify ----------------------------------------------------------------------


def test_bench_dns_is_plain_ok(benchmark: BenchmarkFixture, encoded: EncodedQuery) -> None:
    """The target's first test of an answer: NOERROR, whole, the question byte for byte."""
    assert benchmark(is_plain_ok, _answer(encoded), encoded) is True


def test_bench_dns_answers_then_classify(
    benchmark: BenchmarkFixture, encoded: EncodedQuery
) -> None:
    """The full check an answer takes when the first one fails (here NXDOMAIN)."""
    wire = _answer(encoded, rcode=dns.rcode.NXDOMAIN)

    def full(wire: bytes) -> Outcome | None:
        return classify(wire, encoded) if answers(wire, encoded) else None

    assert benchmark(full, wire) is Outcome.NXDOMAIN


def test_bench_dnspython_parse_for_comparison(
    benchmark: BenchmarkFixture, encoded: EncodedQuery
) -> None:
    benchmark(dns.message.from_wire, _answer(encoded))


# -- a DNS round trip ----------------------------------------------------------------------------


class _Countdown:
    """The recorder as the target's sink, and an event set when ``left`` completions came."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.left = 0
        self.done = asyncio.Event()

    def complete(
        self, op: int, outcome: Outcome, intended_ns: int, sent_ns: int, done_ns: int
    ) -> None:
        self.recorder.complete(op, outcome, intended_ns, sent_ns, done_ns)
        self.left -= 1
        if not self.left:
            self.done.set()


def test_bench_dns_target_round_trip(benchmark: Any, encoded: EncodedQuery) -> None:
    """``BATCH`` queries through ``DnsTarget`` (uvloop, as ``loadlab run``) to a responder on a
    loopback socket in the same thread, which answers them all, and back into a ``Recorder``.
    Per query: the target's send, its read, match and completion, the recorder's append, and
    the responder's ``recvfrom`` and ``sendto`` (two of the four syscalls)."""
    answer_tail = _answer(encoded)[2:]
    responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    responder.bind(("127.0.0.1", 0))
    port = int(responder.getsockname()[1])
    target = DnsTarget("127.0.0.1", port, [QUERY], timeout_s=60)
    recorder = Recorder("dns", target.op_names, start_ns=time.monotonic_ns())
    sink = _Countdown(recorder)

    async def round_trip() -> None:
        sink.left = BATCH
        sink.done.clear()
        for _ in range(BATCH):
            target.submit(0, time.monotonic_ns())
        for _ in range(BATCH):
            wire, address = responder.recvfrom(512)
            responder.sendto(wire[:2] + answer_tail, address)
        await sink.done.wait()

    with runloop.runner() as runner, responder:
        runner.run(target.open(sink))
        try:
            benchmark(lambda: runner.run(round_trip()))
        finally:
            runner.run(target.close())
    snap = recorder.rotate(time.monotonic_ns())
    assert snap.completed == snap.counts[(0, Outcome.OK)] > 0
    assert target.stray == 0
    benchmark.extra_info["per_query_ns"] = benchmark.stats.stats.median / BATCH * 1e9


# -- HTTP parse ----------------------------------------------------------------------------------


class _Callbacks:
    """What the lean client's slot reads from each response (``fast_http._Slot``)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.keep_alive = False
        self.body_bytes = 0
        self.done = 0

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.done += 1


def test_bench_http_parse_one_response(benchmark: BenchmarkFixture) -> None:
    """One nginx response through httptools, with the callbacks the lean client registers."""
    callbacks = _Callbacks()
    benchmark(callbacks.parser.feed_data, NGINX_RESPONSE)
    assert callbacks.done > 0
    assert (callbacks.status, callbacks.keep_alive) == (200, True)
