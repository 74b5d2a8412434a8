"""Both agent clients over real HTTP on loopback: the embedded sim API server and hostile servers.
``FastAgentHttpClient`` and ``AgentHttpClient`` (aiohttp) must say the same about every answer
(scripted answers on the wire: ``test_agent_http_wire``); ``test_agent_fast_http`` covers what only
the lean one has."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from loadlab.agents.base import ApiCall, Identity, WatchEnd, WatchEvent, WatchOpen
from loadlab.clock import NS_PER_MS, NS_PER_S, MonotonicClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.config import SimConfig
from loadlab.sim.server import seeded_store
from loadlab.targets.agent_fast_http import FastAgentHttpClient
from loadlab.targets.agent_http import AgentHttpClient
from loadlab.targets.base import Outcome
from loadlab.testing.hostile import HostileHttpServer, HttpBehaviour
from tests.sim.conftest import small_sim_config

pytestmark = pytest.mark.realtime

NODE_1 = Identity("system:node:node-1", "kubelet/v1.32 (loadlab) node-1")
TIMEOUT_S = 10.0
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"

POLL_S = 0.01
POLLS = 500
"""At most 5 s for something the server does within a second."""

AgentClient = FastAgentHttpClient | AgentHttpClient
AgentClientType = type[FastAgentHttpClient] | type[AgentHttpClient]
AGENT_CLIENTS = pytest.mark.parametrize(
    "client_type",
    [pytest.param(FastAgentHttpClient, id="fast"), pytest.param(AgentHttpClient, id="aiohttp")],
)
"""Both agent clients, for every test of behaviour they share."""

ClientBody = Callable[[SimApiServer, AgentClient], Awaitable[None]]
HostileBody = Callable[[HostileHttpServer], Awaitable[None]]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds: the server's state has no event a test could await."""
    for _ in range(POLLS):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"gave up waiting for {what}")


def with_sim(
    client_type: AgentClientType, body: ClientBody, config: SimConfig | None = None
) -> None:
    """Run ``body`` against an in-process sim API server (same event loop) and a client of it."""

    async def main() -> None:
        cfg = config if config is not None else small_sim_config()
        api = SimApiServer(cfg, seeded_store(cfg), clock=MonotonicClock())
        await api.start()
        try:
            async with client_type(api.url, pool_connections=4, timeout_s=TIMEOUT_S) as client:
                await asyncio.wait_for(body(api, client), TIMEOUT_S * 2)
        finally:
            await api.stop()

    asyncio.run(main())


def executing(api: SimApiServer, level: str) -> int:
    levels: dict[str, Any] = api.model.snapshot()["levels"]
    return int(levels[level]["executing_requests"])


@AGENT_CLIENTS
def test_get_node_as_the_node_is_served_in_the_node_high_priority_level(
    client_type: AgentClientType,
) -> None:
    # A GET held 0.5 s by the sim, so the test can see which APF level it occupies meanwhile.
    config = small_sim_config(overload={"cost": {"get_hold_s": 0.5, "etcd_get_s": 0.5}})

    async def body(api: SimApiServer, client: AgentClient) -> None:
        call = asyncio.ensure_future(
            client.call(NODE_1, ApiCall("get-node", "GET", "/api/v1/nodes/node-1"))
        )
        await wait_for(lambda: executing(api, "node-high") == 1, "the GET to reach node-high")
        assert executing(api, "workload-low") == 0
        reply = await call
        assert (reply.status, reply.outcome) == (200, Outcome.OK)
        assert reply.body is not None
        assert (reply.body["kind"], reply.body["metadata"]["name"]) == ("Node", "node-1")

    with_sim(client_type, body, config)


@AGENT_CLIENTS
def test_missing_object_is_a_404_with_its_status_body(client_type: AgentClientType) -> None:
    async def body(api: SimApiServer, client: AgentClient) -> None:
        reply = await client.call(NODE_1, ApiCall("get-node", "GET", "/api/v1/nodes/no-such-node"))
        assert (reply.status, reply.outcome) == (404, Outcome.CLIENT_ERROR)
        assert reply.body is not None
        assert (reply.body["kind"], reply.body["code"]) == ("Status", 404)

    with_sim(client_type, body)


@AGENT_CLIENTS
def test_watch_yields_the_event_of_a_put_then_waits_to_its_deadline(
    client_type: AgentClientType,
) -> None:
    async def body(api: SimApiServer, client: AgentClient) -> None:
        got = await client.call(NODE_1, ApiCall("get-lease", "GET", LEASE_PATH))
        assert got.body is not None
        lease = got.body
        params = {
            "fieldSelector": "metadata.name=node-1",
            "resourceVersion": lease["metadata"]["resourceVersion"],
        }
        stream = await client.open_watch(NODE_1, WatchOpen("watch-lease", LEASES_PATH, params))
        try:
            assert (stream.head.status, stream.head.outcome) == (200, Outcome.OK)
            lease["spec"]["renewTime"] = "2025-01-01T00:00:00.000000Z"
            put = await client.call(NODE_1, ApiCall("renew", "PUT", LEASE_PATH, body=lease))
            assert (put.status, put.outcome) == (200, Outcome.OK)
            clock = MonotonicClock()
            event = await stream.next(clock.now_ns() + 5 * NS_PER_S)
            assert isinstance(event, WatchEvent)
            assert (event.type, event.object["metadata"]["name"]) == ("MODIFIED", "node-1")
            assert event.object["spec"]["renewTime"] == "2025-01-01T00:00:00.000000Z"
            quiet = await stream.next(clock.now_ns() + 200 * NS_PER_MS)
            assert isinstance(quiet, WatchEnd)
            assert quiet.reason == "deadline"
        finally:
            await stream.close()
        after = await stream.next(MonotonicClock().now_ns() + NS_PER_S)
        assert isinstance(after, WatchEnd)
        assert after.reason == "closed"

    with_sim(client_type, body)


@AGENT_CLIENTS
def test_each_watch_holds_a_connection_of_its_own(client_type: AgentClientType) -> None:
    async def body(api: SimApiServer, client: AgentClient) -> None:
        streams = [
            await client.open_watch(NODE_1, WatchOpen("watch-pods", "/api/v1/pods"))
            for _ in range(6)
        ]
        try:
            # More watches than the pool's 4 connections, all open, and calls still go through.
            assert [s.head.status for s in streams] == [200] * 6
            reply = await client.call(NODE_1, ApiCall("get-node", "GET", "/api/v1/nodes/node-1"))
            assert reply.status == 200
        finally:
            for stream in streams:
                await stream.close()

    with_sim(client_type, body)


def hostile(
    behaviour: HttpBehaviour, body: Callable[[HostileHttpServer], Awaitable[None]], **kw: Any
) -> None:
    async def main() -> None:
        async with HostileHttpServer(behaviour, **kw) as server:
            await asyncio.wait_for(body(server), TIMEOUT_S)

    asyncio.run(main())


@AGENT_CLIENTS
def test_429_carries_its_retry_after_and_is_not_retried(client_type: AgentClientType) -> None:
    async def body(server: HostileHttpServer) -> None:
        async with client_type(server.url, pool_connections=2, timeout_s=TIMEOUT_S) as client:
            reply = await client.call(NODE_1, ApiCall("list-pods", "GET", "/api/v1/pods"))
        assert (reply.status, reply.outcome, reply.retry_after_s) == (429, Outcome.THROTTLED, 7.0)
        assert reply.body is not None
        assert reply.body["reason"] == "TooManyRequests"
        assert server.stats().requests == 1

    hostile(HttpBehaviour.STATUS_429, body, retry_after_s=7)


@AGENT_CLIENTS
def test_watch_refused_with_429_reports_its_head_and_ends(client_type: AgentClientType) -> None:
    async def body(server: HostileHttpServer) -> None:
        async with client_type(server.url, pool_connections=2, timeout_s=TIMEOUT_S) as client:
            stream = await client.open_watch(NODE_1, WatchOpen("watch-pods", "/api/v1/pods"))
            end = await stream.next(MonotonicClock().now_ns() + NS_PER_S)
        assert (stream.head.status, stream.head.retry_after_s) == (429, 3.0)
        assert isinstance(end, WatchEnd)
        assert end.reason == "closed"

    hostile(HttpBehaviour.STATUS_429, body, retry_after_s=3)


@AGENT_CLIENTS
def test_reset_on_a_reused_connection_is_one_conn_error_never_a_resend(
    client_type: AgentClientType,
) -> None:
    # aiohttp resends an idempotent request whose reused keep-alive connection turns out closed;
    # the client must not: the first GET leaves a pooled connection, the second is reset on it.
    async def body(server: HostileHttpServer) -> None:
        async with client_type(server.url, pool_connections=1, timeout_s=TIMEOUT_S) as client:
            first = await client.call(NODE_1, ApiCall("get-lease", "GET", LEASE_PATH))
            second = await client.call(NODE_1, ApiCall("get-lease", "GET", LEASE_PATH))
        assert (first.status, first.outcome) == (200, Outcome.OK)
        assert (second.status, second.outcome) == (0, Outcome.CONN_ERROR)
        assert server.stats().requests == 2

    hostile(HttpBehaviour.RESET, body, good_for_requests=1)


@AGENT_CLIENTS
def test_silent_server_times_out_within_the_call_timeout(client_type: AgentClientType) -> None:
    async def body(server: HostileHttpServer) -> None:
        async with client_type(server.url, pool_connections=1, timeout_s=TIMEOUT_S) as client:
            call = ApiCall("get-lease", "GET", LEASE_PATH, timeout_s=0.2)
            reply = await client.call(NODE_1, call)
        assert (reply.status, reply.outcome) == (0, Outcome.TIMEOUT)

    hostile(HttpBehaviour.SILENCE, body)


@AGENT_CLIENTS
def test_body_over_the_limit_is_too_large_and_not_kept(client_type: AgentClientType) -> None:
    async def body(server: HostileHttpServer) -> None:
        async with client_type(
            server.url, pool_connections=1, timeout_s=TIMEOUT_S, max_body_bytes=1024
        ) as client:
            reply = await client.call(NODE_1, ApiCall("list-pods", "GET", "/api/v1/pods"))
        assert (reply.status, reply.outcome, reply.body) == (200, Outcome.TOO_LARGE, None)

    hostile(HttpBehaviour.HUGE_BODY, body, body_bytes=64 * 1024)


@AGENT_CLIENTS
def test_a_body_the_agent_does_not_keep_is_read_and_dropped_whatever_its_size(
    client_type: AgentClientType,
) -> None:
    # An unpaged LIST of a big cluster: the client reads it to the end (the server did the work)
    # but neither holds nor decodes it, so the small max_body_bytes does not apply.
    async def body(server: HostileHttpServer) -> None:
        async with client_type(
            server.url, pool_connections=1, timeout_s=TIMEOUT_S, max_body_bytes=1024
        ) as client:
            call = ApiCall("list-pods", "GET", "/api/v1/pods", keep_body=False)
            reply = await client.call(NODE_1, call)
            again = await client.call(NODE_1, call)
        assert (reply.status, reply.outcome, reply.body) == (200, Outcome.OK, None)
        assert again.outcome is Outcome.OK
        assert server.stats().requests == 2

    hostile(HttpBehaviour.HUGE_BODY, body, body_bytes=4 * 1024 * 1024)


@AGENT_CLIENTS
def test_identity_goes_as_bearer_token_and_user_agent_and_the_body_as_json(
    client_type: AgentClientType,
) -> None:
    seen: list[tuple[str, str, str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            (
                request.headers["Authorization"],
                request.headers["User-Agent"],
                request.headers["Content-Type"],
                request.query_string,
                await request.read(),
            )
        )
        return web.json_response({"kind": "Lease"})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with client_type(
                f"http://127.0.0.1:{port}", pool_connections=1, timeout_s=TIMEOUT_S
            ) as client:
                call = ApiCall(
                    "patch-node",
                    "PATCH",
                    "/api/v1/nodes/node-1/status",
                    params={"fieldManager": "kubelet"},
                    body={"status": {"phase": "Running"}},
                    content_type="application/strategic-merge-patch+json",
                )
                reply = await client.call(NODE_1, call)
        finally:
            await runner.cleanup()
        assert (reply.status, reply.body) == (200, {"kind": "Lease"})

    asyncio.run(main())
    assert seen == [
        (
            "Bearer system:node:node-1",
            "kubelet/v1.32 (loadlab) node-1",
            "application/strategic-merge-patch+json",
            "fieldManager=kubelet",
            b'{"status": {"phase": "Running"}}',
        )
    ]


@AGENT_CLIENTS
@pytest.mark.parametrize(
    ("behaviour", "status", "outcome"),
    [
        pytest.param(HttpBehaviour.STATUS_500, 500, Outcome.SERVER_ERROR, id="500"),
        pytest.param(HttpBehaviour.GARBAGE, 0, Outcome.MALFORMED, id="garbage"),
        pytest.param(HttpBehaviour.TRICKLE, 200, Outcome.TIMEOUT, id="trickle-past-timeout"),
    ],
)
def test_a_lying_server_is_one_request_and_one_outcome(
    behaviour: HttpBehaviour, status: int, outcome: Outcome, client_type: AgentClientType
) -> None:
    async def body(server: HostileHttpServer) -> None:
        async with client_type(server.url, pool_connections=1, timeout_s=TIMEOUT_S) as client:
            call = ApiCall("get-lease", "GET", LEASE_PATH, timeout_s=0.3)
            reply = await client.call(NODE_1, call)
        assert (reply.status, reply.outcome) == (status, outcome)
        if outcome is Outcome.SERVER_ERROR:
            assert reply.body is not None
            assert (reply.body["kind"], reply.body["code"]) == ("Status", 500)
        else:
            assert reply.body is None
        assert server.stats().requests == 1

    hostile(behaviour, body, trickle_interval_s=1.0)
