"""The sim's cluster DNS, asked by dnspython over real UDP/TCP on loopback, fed by a real HTTP API.

The API is ``FakeApi`` (tests/sim/fake_api.py) or the sim's own API server; the restart policy is
driven by a FakeClock and a scripted API source so its timeline is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pydantic
import pytest

from loadlab.clock import NS_PER_S, FakeClock, MonotonicClock
from loadlab.sim.dns.informer import ApiError, ObjectList, StreamEvent
from loadlab.sim.dns.nameserver import ClusterDns, ClusterDnsConfig, ServingPhase
from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL, JsonObj
from loadlab.testing.waiting import wait_for
from tests.sim.fake_api import SERVICES, SLICES, FakeApi, run_with_fake_api

TIMEOUT_S = 2.0  # bound on every DNS query in these tests


def service(name: str, ip: str, ports: list[JsonObj] | None = None, ns: str = "default") -> JsonObj:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": ports or []},
    }


def endpoint_slice(name: str, svc: str, addresses: list[str], hostnames: bool = False) -> JsonObj:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: svc}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [a], **({"hostname": f"{svc}-{i}"} if hostnames else {})}
            for i, a in enumerate(addresses)
        ],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    }


def seed(api: FakeApi) -> None:
    api.put(SERVICES, service("kubernetes", "192.0.2.1", [{"name": "https", "port": 443}]))
    api.put(SERVICES, service("db", "None", [{"name": "pg", "port": 5432}]))
    api.put(SLICES, endpoint_slice("db-1", "db", ["198.51.100.1", "198.51.100.2"], True))
    many = [f"192.0.2.{i}" for i in range(100, 160)]
    api.put(SERVICES, service("big", "None"))
    api.put(SLICES, endpoint_slice("big-1", "big", many))


async def udp(port: int, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    return await dns.asyncquery.udp(query, "127.0.0.1", timeout=TIMEOUT_S, port=port)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


@contextlib.asynccontextmanager
async def cluster_dns(api_url: str, **config: Any) -> AsyncIterator[ClusterDns]:
    server = ClusterDns(ClusterDnsConfig(**config), api_url=api_url, clock=MonotonicClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def with_seeded_api(body: Callable[[FakeApi], Awaitable[None]]) -> None:
    api = FakeApi()
    seed(api)
    run_with_fake_api(body, api)


@pytest.mark.realtime
def test_answers_kubernetes_service_over_udp_and_tcp() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            assert server.synced
            name = "kubernetes.default.svc.cluster.local."
            over_udp = await udp(server.port, name)
            query = dns.message.make_query(name, "A")
            over_tcp = await dns.asyncquery.tcp(query, "127.0.0.1", TIMEOUT_S, server.port)
            snapshot = server.snapshot()
        for response in (over_udp, over_tcp):
            assert response.rcode() == dns.rcode.NOERROR
            assert response.flags & dns.flags.AA
            assert addresses(response) == ["192.0.2.1"]
            assert response.answer[0].ttl == 30
        assert snapshot["queries_by_rcode"] == {"NOERROR": 2}
        assert api.requests[0][1]["resourceVersion"] == "0"

    with_seeded_api(body)


@pytest.mark.realtime
def test_missing_service_nxdomain_srv_and_headless_answers() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            missing = await udp(server.port, "nope.default.svc.cluster.local.")
            srv = await udp(server.port, "_https._tcp.kubernetes.default.svc.cluster.local.", "SRV")
            headless = await udp(server.port, "db.default.svc.cluster.local.")
            pod = await udp(server.port, "db-1.db.default.svc.cluster.local.")
            outside = await udp(server.port, "example.com.")
        assert missing.rcode() == dns.rcode.NXDOMAIN
        assert missing.authority[0].rdtype == dns.rdatatype.SOA
        assert [(r.port, r.target.to_text()) for r in srv.answer[0]] == [
            (443, "kubernetes.default.svc.cluster.local.")
        ]
        assert addresses(headless) == ["198.51.100.1", "198.51.100.2"]
        assert addresses(pod) == ["198.51.100.2"]
        assert outside.rcode() == dns.rcode.NXDOMAIN
        assert not outside.flags & dns.flags.AA

    with_seeded_api(body)


@pytest.mark.realtime
def test_large_answer_is_truncated_over_udp_and_complete_over_tcp() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            name = "big.default.svc.cluster.local."
            truncated = await udp(server.port, name)
            query = dns.message.make_query(name, "A")
            full, used_tcp = await dns.asyncquery.udp_with_fallback(
                query, "127.0.0.1", TIMEOUT_S, server.port
            )
            with_edns = await udp(server.port, name, use_edns=0, payload=4096)
        assert truncated.flags & dns.flags.TC
        assert used_tcp
        assert len(addresses(full)) == 60
        assert not with_edns.flags & dns.flags.TC
        assert len(addresses(with_edns)) == 60

    with_seeded_api(body)


@pytest.mark.realtime
def test_malformed_packets_are_dropped_and_counted() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"\x12\x34garbage", ("127.0.0.1", server.port))
            await wait_for(lambda: server.dropped_malformed == 1)
            still_fine = await udp(server.port, "kubernetes.default.svc.cluster.local.")
        assert still_fine.rcode() == dns.rcode.NOERROR

    with_seeded_api(body)


@pytest.mark.realtime
def test_keeps_answering_stale_records_after_the_api_goes_away() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            await api.stop()
            await wait_for(lambda: server.api_down_since_ns() is not None)
            stale = await udp(server.port, "kubernetes.default.svc.cluster.local.")
            assert addresses(stale) == ["192.0.2.1"]
            assert server.snapshot()["synced"] is True

    with_seeded_api(body)


@pytest.mark.realtime
def test_watch_events_change_answers() -> None:
    async def body(api: FakeApi) -> None:
        async with cluster_dns(api.url) as server:
            name = "late.default.svc.cluster.local."
            before = await udp(server.port, name)
            records = server.snapshot()["records"]
            api.put(SERVICES, service("late", "198.51.100.9"))
            await wait_for(lambda: server.snapshot()["records"] == records + 1)
            after = await udp(server.port, name)
        assert before.rcode() == dns.rcode.NXDOMAIN
        assert addresses(after) == ["198.51.100.9"]

    with_seeded_api(body)


@pytest.mark.realtime
def test_other_names_are_forwarded_to_a_loopback_upstream() -> None:
    async def body(api: FakeApi) -> None:
        async with contextlib.AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(cluster_dns(api.url, zone="corp.test"))
            server = await stack.enter_async_context(
                cluster_dns(api.url, upstream=f"127.0.0.1:{upstream.port}")
            )
            udp_answer = await udp(server.port, "kubernetes.default.svc.corp.test.")
            query = dns.message.make_query("db.default.svc.corp.test.", "A")
            tcp_answer = await dns.asyncquery.tcp(query, "127.0.0.1", TIMEOUT_S, server.port)
            forwarded = server.snapshot()["forwarded"]
        assert addresses(udp_answer) == ["192.0.2.1"]
        assert addresses(tcp_answer) == ["198.51.100.1", "198.51.100.2"]
        assert forwarded == 2

    with_seeded_api(body)


@pytest.mark.parametrize(
    "upstream",
    [
        pytest.param("8.8.8.8:53", id="public"),
        pytest.param("192.0.2.1:53", id="test-net"),
        pytest.param("localhost:53", id="not-an-address"),
        pytest.param("127.0.0.1", id="no-port"),
    ],
)
def test_config_refuses_upstreams_off_loopback(upstream: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        ClusterDnsConfig(upstream=upstream)


def test_config_refuses_unknown_fields_and_accepts_ipv6_loopback() -> None:
    with pytest.raises(pydantic.ValidationError):
        ClusterDnsConfig.model_validate({"ttl": 30})
    assert ClusterDnsConfig(upstream="[::1]:5353").upstream == "[::1]:5353"


class SwitchableApi:
    """A scripted ApiSource: serves one Service while up; refuses, and cuts watches, while down."""

    def __init__(self) -> None:
        self.up = True
        self._cut = asyncio.Event()

    def go_down(self) -> None:
        self.up = False
        self._cut.set()

    def come_back(self) -> None:
        self.up = True
        self._cut = asyncio.Event()

    async def list(self, path: str, *, resource_version: str) -> ObjectList:
        if not self.up:
            raise ApiError(None, "connection refused")
        items = (service("kubernetes", "192.0.2.1"),) if path == SERVICES else ()
        return ObjectList(items, "5")

    @contextlib.asynccontextmanager
    async def watch(
        self, path: str, *, resource_version: str, timeout_s: int
    ) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        if not self.up:
            raise ApiError(None, "connection refused")
        yield self._until_cut()

    async def _until_cut(self) -> AsyncIterator[StreamEvent]:
        await self._cut.wait()
        if self._cut.is_set():  # always: the stream only ever ends by being cut
            raise ApiError(None, "connection reset")
        yield StreamEvent("BOOKMARK", {})


@pytest.mark.realtime  # binds UDP/TCP on 127.0.0.1
def test_restart_policy_drops_records_goes_silent_then_servfails_until_resynced() -> None:
    clock = FakeClock()
    api = SwitchableApi()
    config = ClusterDnsConfig(restart_after_api_down_s=60, restart_s=10, sync_wait_s=5)
    server = ClusterDns(
        config, api_url="http://unused", clock=clock, api_source=api, rng=random.Random(3)
    )
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()
    outside = dns.message.make_query("example.com.", "A").to_wire()
    timeline: list[tuple[float, str, str]] = []

    async def ask(label: str) -> None:
        reply = await server.resolve(query)
        rcode = (
            "silent" if reply is None else dns.rcode.to_text(dns.message.from_wire(reply).rcode())
        )
        timeline.append((clock.now_ns() / NS_PER_S, label, rcode))

    async def at(t_s: float) -> None:
        await clock.sleep_until(int(t_s * NS_PER_S))

    async def main() -> None:
        await server.start()
        try:
            await ask("synced")
            await at(100)
            api.go_down()
            await at(159)
            await ask("stale, 59 s without the API")
            await at(160.5)
            await ask("restarting")
            assert server.snapshot()["records"] == 0
            await at(172)  # restart took 10 s; now waiting up to 5 s for a sync that can't come
            await ask("starting")
            await at(176)
            await ask("serving unsynced")
            out = await server.resolve(outside)
            assert out is not None
            assert dns.message.from_wire(out).rcode() == dns.rcode.NXDOMAIN
            api.come_back()
            await at(240)  # reflector backoff is at most 30 s x 2
            await ask("resynced")
            snapshot = server.snapshot()
        finally:
            await server.stop()
        assert snapshot["restarts"] == 1
        assert snapshot["phase"] == ServingPhase.SERVING.value
        assert snapshot["watch_broken_since_s"] is None

    asyncio.run(clock.run(main()))

    assert [(label, rcode) for _, label, rcode in timeline] == [
        ("synced", "NOERROR"),
        ("stale, 59 s without the API", "NOERROR"),
        ("restarting", "silent"),
        ("starting", "silent"),
        ("serving unsynced", "SERVFAIL"),
        ("resynced", "NOERROR"),
    ]


@pytest.mark.realtime  # binds UDP/TCP on 127.0.0.1
def test_without_a_restart_policy_a_long_api_outage_only_makes_answers_stale() -> None:
    clock = FakeClock()
    api = SwitchableApi()
    server = ClusterDns(ClusterDnsConfig(), api_url="http://unused", clock=clock, api_source=api)
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()

    async def main() -> bytes | None:
        await server.start()
        try:
            api.go_down()
            await clock.sleep_until(3600 * NS_PER_S)
            return await server.resolve(query)
        finally:
            await server.stop()

    reply = asyncio.run(clock.run(main()))

    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
    assert server.restarts == 0


def sim_config() -> Any:
    from loadlab.sim.config import SimConfig

    return SimConfig(
        nodes=2, pods_per_node=1, services=3, headless_services=1, endpoints_per_service=2
    )


@pytest.mark.realtime
def test_real_sim_api_feeds_the_dns_and_its_changes_show_up() -> None:
    from loadlab.sim.apiserver.app import SimApiServer
    from loadlab.sim.server import seeded_store

    async def main() -> None:
        clock = MonotonicClock()
        api = SimApiServer(sim_config(), seeded_store(sim_config()), clock=clock)
        await api.start(port=0)
        try:
            async with cluster_dns(api.url) as server:
                kubernetes = await udp(server.port, "kubernetes.default.svc.cluster.local.")
                headless = await udp(server.port, "svc-0.default.svc.cluster.local.")
                pod = await udp(server.port, "svc-0-1.svc-0.default.svc.cluster.local.")
                srv = await udp(
                    server.port, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV"
                )
                records = server.snapshot()["records"]
                new = service("fresh", "192.0.2.250")
                async with aiohttp.ClientSession() as http:
                    created = await http.post(
                        f"{api.url}/api/v1/namespaces/default/services", json=new
                    )
                    assert created.status == 201
                await wait_for(lambda: server.snapshot()["records"] > records)
                fresh = await udp(server.port, "fresh.default.svc.cluster.local.")
        finally:
            await api.stop()
        assert addresses(kubernetes) == ["192.0.2.1"]
        assert len(addresses(headless)) == 2
        assert len(addresses(pod)) == 1
        assert [(r.port, r.target.to_text()) for r in srv.answer[0]] == [
            (53, "kube-dns.kube-system.svc.cluster.local.")
        ]
        assert addresses(fresh) == ["192.0.2.250"]

    asyncio.run(main())


@pytest.mark.realtime
def test_real_sim_api_going_down_leaves_stale_answers_then_a_restart_servfails() -> None:
    from loadlab.sim.apiserver.app import SimApiServer
    from loadlab.sim.server import seeded_store

    async def main() -> None:
        api = SimApiServer(sim_config(), seeded_store(sim_config()), clock=MonotonicClock())
        await api.start(port=0)
        # The restart must come well after the stale query, even on a loaded machine: the
        # stale answer is asked for as soon as the outage is seen, the restart 2 s later.
        small = {"restart_after_api_down_s": 2.0, "restart_s": 0.1, "sync_wait_s": 0.1}
        try:
            async with cluster_dns(api.url, **small) as server:
                await api.stop()
                await wait_for(lambda: server.api_down_since_ns() is not None)
                stale = await udp(server.port, "kubernetes.default.svc.cluster.local.")
                await wait_for(
                    lambda: server.restarts == 1 and server.phase is ServingPhase.SERVING
                )
                after = await udp(server.port, "kubernetes.default.svc.cluster.local.")
        finally:
            await api.stop()
        assert addresses(stale) == ["192.0.2.1"]
        assert after.rcode() == dns.rcode.SERVFAIL

    asyncio.run(main())


@pytest.mark.realtime  # binds UDP/TCP on 127.0.0.1
def test_start_waits_up_to_sync_wait_then_serves_servfail_for_zone_names() -> None:
    clock = FakeClock()
    api = SwitchableApi()
    api.up = False
    server = ClusterDns(
        ClusterDnsConfig(sync_wait_s=5), api_url="http://unused", clock=clock, api_source=api
    )
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()
    outside = dns.message.make_query("example.com.", "A").to_wire()
    seen: list[tuple[str, bool]] = []

    def rcode(reply: bytes | None) -> str:
        assert reply is not None
        return dns.rcode.to_text(dns.message.from_wire(reply).rcode())

    async def main() -> tuple[float, dict[str, Any]]:
        starting = asyncio.create_task(server.start())
        await clock.sleep_until(int(4.9 * NS_PER_S))
        seen.append((server.phase.value, await server.resolve(query) is None))
        await starting
        started_s = clock.now_ns() / NS_PER_S
        seen.append((rcode(await server.resolve(query)), False))
        seen.append((rcode(await server.resolve(outside)), False))
        snapshot = server.snapshot()
        await server.stop()
        return started_s, snapshot

    started_s, snapshot = asyncio.run(clock.run(main()))

    assert started_s == 5.0
    assert seen == [("starting", True), ("SERVFAIL", False), ("NXDOMAIN", False)]
    assert snapshot["synced"] is False
    assert snapshot["watch_broken_since_s"] is not None


class BadVersUpstream(asyncio.DatagramProtocol):
    """A loopback upstream answering every query BADVERS: extended rcode 16 (RFC 6891 9)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = dns.message.make_response(dns.message.from_wire(data))
        reply.set_rcode(dns.rcode.BADVERS)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


@pytest.mark.realtime
def test_an_upstream_answer_with_an_extended_rcode_is_passed_on_and_counted() -> None:
    async def main() -> tuple[bytes | None, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            BadVersUpstream, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        config = ClusterDnsConfig(upstream=f"127.0.0.1:{port}")
        server = ClusterDns(
            config, api_url="http://unused", clock=MonotonicClock(), api_source=SwitchableApi()
        )
        try:
            await server.start()
            try:
                reply = await server.resolve(dns.message.make_query("example.com.", "A").to_wire())
                return reply, server.snapshot()
            finally:
                await server.stop()
        finally:
            transport.close()

    reply, snapshot = asyncio.run(main())

    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.BADVERS
    assert snapshot["queries_by_rcode"] == {"BADVERS": 1}
    assert snapshot["forward_errors"] == 0
