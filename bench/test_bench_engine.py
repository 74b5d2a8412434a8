"""Hot paths of the engine and the targets (pytest-benchmark; not part of the test suite).

Run: ``.venv/bin/pytest bench/test_bench_engine.py --benchmark-only``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns.message
import dns.rcode

from loadlab.clock import NS_PER_S
from loadlab.engine.mix import OpMix
from loadlab.engine.schedule import ConstantRate, JitteredAgents, PoissonArrivals
from loadlab.targets.base import Outcome
from loadlab.targets.dns_wire import DnsQuery, classify, encode_query, with_id
from loadlab.targets.http import HttpOperation, HttpTarget

FOREVER_NS = 10**6 * NS_PER_S


def test_bench_constant_rate_tick(benchmark: Any) -> None:
    benchmark(ConstantRate(100_000, start_ns=0, end_ns=FOREVER_NS).next_ns)


def test_bench_poisson_tick(benchmark: Any) -> None:
    benchmark(PoissonArrivals(100_000, start_ns=0, end_ns=FOREVER_NS, seed=1).next_ns)


def test_bench_jittered_agents_tick(benchmark: Any) -> None:
    sched = JitteredAgents(5000, 10.0, jitter=0.04, start_ns=0, end_ns=FOREVER_NS, seed=1)
    benchmark(sched.next_ns)


def test_bench_mix_next_op(benchmark: Any) -> None:
    benchmark(OpMix([5, 3, 1, 1], seed=1).next_op)


def test_bench_dns_encode_with_id(benchmark: Any) -> None:
    encoded = encode_query(DnsQuery("kubernetes.default.svc.cluster.local"))
    benchmark(with_id, 0xABCD, encoded)


def test_bench_dns_classify_answer(benchmark: Any) -> None:
    encoded = encode_query(DnsQuery("kubernetes.default.svc.cluster.local"))
    response = dns.message.make_response(dns.message.from_wire(with_id(1, encoded)))
    response.set_rcode(dns.rcode.NOERROR)
    wire = response.to_wire()
    assert benchmark(classify, wire, encoded) is Outcome.OK


def test_bench_dnspython_parse_for_comparison(benchmark: Any) -> None:
    encoded = encode_query(DnsQuery("kubernetes.default.svc.cluster.local"))
    wire = dns.message.make_response(dns.message.from_wire(with_id(1, encoded))).to_wire()
    benchmark(dns.message.from_wire, wire)


def test_bench_http_target_submit(benchmark: Any) -> None:
    """submit() with no idle worker to wake: the deque append and bookkeeping."""

    async def main() -> None:
        target = HttpTarget("http://127.0.0.1:9", [HttpOperation("get", "GET", "/")])

        def submit_and_trim() -> None:
            target.submit(0, 0)
            if len(target._queue) > 10_000:
                target._queue.clear()

        benchmark(submit_and_trim)

    asyncio.run(main())
