"""Agents' ordinary requests, per client (pytest-benchmark; not part of the test suite): a herd of
lease GETs through ``FastAgentHttpClient`` and through ``AgentHttpClient`` (aiohttp), on uvloop as
``loadlab run`` does, against a canned-answer server in a forked process (so the server's CPU is
not the client's). No timing is asserted. ``extra_info`` carries ``calls_per_s`` (wall clock, with
the server on the other core) and ``client_cpu_us_per_call`` (this process's CPU, which is what
delays every agent's timer when a herd of renewals comes back at once).

Run: ``.venv/bin/pytest bench/test_bench_agents.py --benchmark-only -p no:cacheprovider``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.sidebyside_http import CannedHttp
from loadlab import runloop
from loadlab.agents.base import ApiCall, Identity
from loadlab.targets.agent_fast_http import FastAgentHttpClient
from loadlab.targets.agent_http import AgentHttpClient
from loadlab.targets.base import Outcome

NODE = Identity("system:node:node-1", "kubelet/v1.32 (loadlab) node-1")
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
LEASE = (
    b'{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"node-1",'
    b'"namespace":"kube-node-lease","uid":"5f0d3c1e-2a8b-4a43-9d51-0c3b7e1f2a90",'
    b'"resourceVersion":"123456","creationTimestamp":"2026-12-01T00:00:00Z"},'
    b'"spec":{"holderIdentity":"node-1","leaseDurationSeconds":40,'
    b'"renewTime":"2026-12-01T00:10:00.000000Z"}}'
)
"""A node lease about as kube-apiserver returns it (~390 bytes)."""
ANSWER = (
    b"HTTP/1.1 200 OK\r\nAudit-Id: 0b5e2a9c-6f1d-4d2e-9a7b-3c8f1e0d2b4a\r\n"
    b"Cache-Control: no-cache, private\r\nContent-Type: application/json\r\n"
    b"X-Kubernetes-Pf-Flowschema-Uid: 1\r\nX-Kubernetes-Pf-Prioritylevel-Uid: 2\r\n"
    b"Date: Tue, 01 Dec 2026 01:02:53 GMT\r\nContent-Length: "
    + str(len(LEASE)).encode()
    + b"\r\n\r\n"
    + LEASE
)
"""With the headers kube-apiserver sends on a GET: the client reads each of them."""
FLOWS = 200
CALLS_PER_FLOW = 5
"""A herd: 200 agents' flows at once, each making 5 calls in a row (1,000 calls a round), one
task per flow as the engine runs them."""
POOL_CONNECTIONS = 64
ROUNDS = 20


def _serve(listener: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: CannedHttp(ANSWER), sock=listener
        )
        async with server:
            await server.serve_forever()

    runloop.run(main())


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    # Forked before any event loop runs here; the child serves until terminated.
    child = multiprocessing.get_context("fork").Process(target=_serve, args=(listener,))
    child.start()
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
        child.join(5)


@pytest.mark.parametrize(
    "client_type",
    [pytest.param(FastAgentHttpClient, id="fast"), pytest.param(AgentHttpClient, id="aiohttp")],
)
def test_bench_agent_calls(
    benchmark: Any,  # BenchmarkFixture: its pedantic() and stats are untyped
    server_url: str,
    client_type: type[FastAgentHttpClient] | type[AgentHttpClient],
) -> None:
    call = ApiCall("get-lease", "GET", LEASE_PATH)
    client = client_type(server_url, pool_connections=POOL_CONNECTIONS, timeout_s=10)
    outcomes: list[Outcome] = []

    async def flow() -> None:
        for _ in range(CALLS_PER_FLOW):
            reply = await client.call(NODE, call)
            outcomes.append(reply.outcome)

    async def herd() -> None:
        await asyncio.gather(*[flow() for _ in range(FLOWS)])

    with runloop.runner() as runner:
        runner.run(herd())  # connects the pool: rounds measure kept-alive calls only
        outcomes.clear()
        cpu_s = time.process_time()
        benchmark.pedantic(lambda: runner.run(herd()), rounds=ROUNDS, iterations=1)
        cpu_s = time.process_time() - cpu_s
        runner.run(client.close())
    calls = ROUNDS * FLOWS * CALLS_PER_FLOW
    assert outcomes == [Outcome.OK] * calls
    benchmark.extra_info["calls_per_s"] = round(
        FLOWS * CALLS_PER_FLOW / benchmark.stats.stats.median
    )
    benchmark.extra_info["client_cpu_us_per_call"] = round(cpu_s / calls * 1e6, 1)
