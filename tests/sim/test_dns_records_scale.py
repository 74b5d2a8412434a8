"""The record table at scale: Services with thousands of endpoints over many EndpointSlices, built
from a LIST or slice by slice, then changed a slice at a time. Answers are checked against counts
worked out from the objects themselves; how long it takes is bench/test_bench_sim.py's business.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Callable
from typing import Any

import dns.name
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from aiohttp import web

from loadlab.sim.dns.informer import HttpApiSource, StreamEvent
from loadlab.sim.dns.records import Rcode, RecordTable
from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL, JsonObj

ENDPOINTS = 3000
PER_SLICE = 100  # kube-controller-manager --max-endpoints-per-slice default
SLICES = ENDPOINTS // PER_SLICE
SERVICE = "big.default.svc.cluster.local."
SRV = "_http._tcp." + SERVICE
SLICE_PORT = 8080


def address(i: int) -> str:
    """Endpoint ``i``'s address: loopback, one per endpoint; every 11th is off TEST-NET/loopback."""
    if i % 11 == 5:
        return f"10.0.{i // 256}.{i % 256}"
    return f"127.1.{i // 256}.{i % 256}"


def hostname(i: int) -> str | None:
    """Every 5th endpoint has no hostname (CoreDNS then names it by its address with dashes)."""
    return None if i % 5 == 0 else f"big-{i}"


def ready(i: int) -> bool:
    return i % 7 != 3


def host_of(i: int) -> str:
    return f"{hostname(i) or address(i).replace('.', '-')}.{SERVICE}"


def answered(i: int) -> bool:
    """What the DNS should answer for endpoint ``i``: ready, and an address it may hand out."""
    return ready(i) and not address(i).startswith("10.")


def big_service(*, headless: bool = True) -> JsonObj:
    port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    return {
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None" if headless else "192.0.2.40", "ports": [port]},
    }


def big_slice(index: int, members: range | None = None) -> JsonObj:
    """Slice ``index`` of the big Service, holding endpoints ``members`` (default: its 100)."""
    members = members if members is not None else range(index * PER_SLICE, (index + 1) * PER_SLICE)
    endpoints: list[JsonObj] = []
    for i in members:
        endpoint: JsonObj = {"addresses": [address(i)], "conditions": {"ready": ready(i)}}
        if hostname(i):
            endpoint["hostname"] = hostname(i)
        endpoints.append(endpoint)
    return {
        "metadata": {
            "name": f"big-{index:03d}",
            "namespace": "default",
            "labels": {SERVICE_NAME_LABEL: "big"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": SLICE_PORT, "protocol": "TCP"}],
    }


def q(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def rrset(table: RecordTable, name: str, rdtype: int) -> dns.rrset.RRset:
    answer = table.lookup(q(name), rdtype)
    assert answer.rcode == Rcode.NOERROR, name
    assert len(answer.answer) == 1, name
    return answer.answer[0]


def texts(rrset: dns.rrset.RRset) -> list[str]:
    return sorted(rdata.to_text() for rdata in rrset)


def ptr(table: RecordTable, text: str) -> list[str]:
    return texts(rrset(table, dns.reversename.from_address(text).to_text(), dns.rdatatype.PTR))


def built_by_events(table: RecordTable) -> None:
    table.upsert_service(big_service())
    for index in range(SLICES):
        table.upsert_endpoint_slice(big_slice(index))


def built_by_events_shuffled(table: RecordTable) -> None:
    order = list(range(SLICES))
    random.Random(7).shuffle(order)
    for index in order:  # slices before their Service, in no particular order
        table.upsert_endpoint_slice(big_slice(index))
    table.upsert_service(big_service())


def built_by_list(table: RecordTable) -> None:
    table.replace_services([big_service()])
    table.replace_endpoint_slices([big_slice(index) for index in range(SLICES)])


BUILDS = [
    pytest.param(built_by_events, id="slice-events"),
    pytest.param(built_by_events_shuffled, id="slices-first-shuffled"),
    pytest.param(built_by_list, id="list"),
]


@pytest.mark.parametrize("build", BUILDS)
def test_a_headless_service_with_thousands_of_endpoints_answers_every_ready_one(
    build: Callable[[RecordTable], None],
) -> None:
    table = RecordTable()
    build(table)

    served = [i for i in range(ENDPOINTS) if answered(i)]
    assert len(served) > 2000  # the fixture really is large
    assert texts(rrset(table, SERVICE, dns.rdatatype.A)) == sorted(address(i) for i in served)
    srv = rrset(table, SRV, dns.rdatatype.SRV)
    assert len(srv) == len(served)
    # 100 // 2,000+ targets: floored at weight 1.
    assert {(r.port, r.weight, r.target.to_text()) for r in srv} == {
        (SLICE_PORT, 1, host_of(i)) for i in served
    }
    assert table.record_count == 3 * len(served)  # the Service's A, each host's A, each SRV
    assert table.skipped_addresses == sum(1 for i in range(ENDPOINTS) if ready(i)) - len(served)
    for i in (1, 20, 2998):  # with a hostname, without one, near the end
        assert texts(rrset(table, host_of(i), dns.rdatatype.A)) == [address(i)]
        assert ptr(table, address(i)) == [host_of(i)]
    not_ready = table.lookup(q(host_of(3)), dns.rdatatype.A)
    assert not_ready.rcode == Rcode.NXDOMAIN
    assert len(table.lookup(q(SRV), dns.rdatatype.SRV).additional) == len(served)


def test_a_clusterip_service_with_thousands_of_endpoints_answers_their_ptrs() -> None:
    table = RecordTable()
    table.upsert_service(big_service(headless=False))
    for index in range(SLICES):
        table.upsert_endpoint_slice(big_slice(index))

    assert texts(rrset(table, SERVICE, dns.rdatatype.A)) == ["192.0.2.40"]
    srv = rrset(table, SRV, dns.rdatatype.SRV)
    assert [(r.port, r.weight, r.target.to_text()) for r in srv] == [(80, 100, SERVICE)]
    assert table.record_count == 2
    assert table.skipped_addresses == 0  # endpoint addresses are no answer of a ClusterIP Service
    for i in range(ENDPOINTS):
        reverse = dns.reversename.from_address(address(i))
        if answered(i):
            assert ptr(table, address(i)) == [host_of(i)]
        else:
            assert not table.in_zone(reverse)


def answers(table: RecordTable, names: list[str]) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for name in names:
        for rdtype in (dns.rdatatype.A, dns.rdatatype.SRV, dns.rdatatype.PTR):
            answer = table.lookup(q(name), rdtype)
            out[name, rdtype] = [str(answer.rcode), *(t for r in answer.answer for t in texts(r))]
    return out


def every_name() -> list[str]:
    hosts = [host_of(i) for i in range(ENDPOINTS)]
    ptrs = [dns.reversename.from_address(address(i)).to_text() for i in range(ENDPOINTS)]
    return [SERVICE, SRV, *hosts, *ptrs]


def test_slice_by_slice_changes_end_where_a_fresh_build_of_the_same_slices_does() -> None:
    table = RecordTable()
    built_by_events(table)
    first_addresses = [r.to_text() for r in rrset(table, SERVICE, dns.rdatatype.A)][:50]
    assert answered(901)
    assert answered(1001)
    slices = {index: big_slice(index) for index in range(SLICES)}

    for endpoint in slices[7]["endpoints"]:  # pods of one slice go unready, as a rollout does
        endpoint["conditions"]["ready"] = False
    table.upsert_endpoint_slice(slices[7])
    table.delete_endpoint_slice(slices.pop(8))
    slices[9] = big_slice(9, range(900, 950))  # half its pods went away
    table.upsert_endpoint_slice(slices[9])
    slices[30] = big_slice(30, range(800, 850))  # a new slice repeats endpoints of slice 8
    table.upsert_endpoint_slice(slices[30])

    fresh = RecordTable()
    fresh.replace_services([big_service()])
    fresh.replace_endpoint_slices(slices.values())
    names = every_name()
    assert answers(table, names) == answers(fresh, names)
    assert table.record_count == fresh.record_count
    assert table.skipped_addresses == fresh.skipped_addresses
    # Slices 0 to 6 did not change: their records keep their place at the head of the answer;
    # the endpoints slice 9 kept stay ahead of slice 10's.
    order = [r.to_text() for r in rrset(table, SERVICE, dns.rdatatype.A)]
    assert order[:50] == first_addresses
    assert order.index(address(901)) < order.index(address(1001))


def test_srv_weights_follow_the_number_of_targets_as_slices_come_and_go() -> None:
    table = RecordTable()
    table.upsert_service(big_service())
    table.upsert_endpoint_slice(big_slice(0, range(1, 5)))  # endpoints 1-4: 3 answered (3 unready)

    assert {r.weight for r in rrset(table, SRV, dns.rdatatype.SRV)} == {100 // 3}

    table.upsert_endpoint_slice(big_slice(1, range(100, 140)))
    served = sum(1 for i in [*range(1, 5), *range(100, 140)] if answered(i))
    weights = {r.weight for r in rrset(table, SRV, dns.rdatatype.SRV)}
    assert weights == {100 // served}

    table.delete_endpoint_slice(big_slice(0))
    assert {r.weight for r in rrset(table, SRV, dns.rdatatype.SRV)} == {100 // (served - 3)}


def test_a_thousand_small_services_each_answer_their_own_records() -> None:
    table = RecordTable()
    for s in range(1000):
        name, ip = f"s{s}", f"192.0.2.{s % 200 + 20}"
        port = {"name": "http", "port": 80, "protocol": "TCP"}
        table.upsert_service(
            {"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": [port]}}
        )
        table.upsert_endpoint_slice(
            {
                "metadata": {"name": f"{name}-x", "labels": {SERVICE_NAME_LABEL: name}},
                "endpoints": [
                    {"addresses": [f"127.2.{s // 100}.{s % 100 * 2 + j}"], "hostname": f"p{j}"}
                    for j in range(2)
                ],
            }
        )

    assert table.record_count == 2000  # an A and an SRV each
    for s in (0, 499, 999):
        assert texts(rrset(table, f"s{s}.default.svc.cluster.local.", 1)) == [
            f"192.0.2.{s % 200 + 20}"
        ]
        assert ptr(table, f"127.2.{s // 100}.{s % 100 * 2 + 1}") == [
            f"p1.s{s}.default.svc.cluster.local."
        ]


def test_an_address_shared_by_many_services_answers_each_until_its_service_goes() -> None:
    """In the sim pod IPs repeat (one /24 for 150,000 pods): one address, hundreds of names."""
    table = RecordTable()
    services = [{"metadata": {"name": f"s{s}"}, "spec": {"clusterIP": "None"}} for s in range(500)]
    for s, service in enumerate(services):
        table.upsert_service(service)
        table.upsert_endpoint_slice(
            {
                "metadata": {"name": f"s{s}-x", "labels": {SERVICE_NAME_LABEL: f"s{s}"}},
                "endpoints": [{"addresses": ["198.51.100.9"], "hostname": "web"}],
            }
        )
    assert len(ptr(table, "198.51.100.9")) == 500

    for service in services[:499]:
        table.delete_service(service)

    assert ptr(table, "198.51.100.9") == ["web.s499.default.svc.cluster.local."]
    assert table.record_count == 2  # s499's A and its endpoint's A


@pytest.mark.realtime
def test_watch_events_split_across_chunks_arrive_whole_and_in_order() -> None:
    """A big object's line comes in many reads, and many small lines come in one."""
    big = {"type": "ADDED", "object": big_slice(0, range(3000))}
    small = [{"type": "MODIFIED", "object": {"metadata": {"name": f"s{i}"}}} for i in range(500)]
    lines = [json.dumps(event).encode() + b"\n" for event in [big, *small, big]]
    stream = b"".join(lines)

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        cuts = [0, 1000, 1001, len(lines[0]) - 1, len(stream) - len(lines[-1]) + 7, len(stream)]
        for start, end in itertools.pairwise(cuts):
            await resp.write(stream[start:end])
            await asyncio.sleep(0)
        return resp

    async def main() -> list[StreamEvent]:
        app = web.Application()
        app.router.add_get("/w", watch)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        source = HttpApiSource(f"http://127.0.0.1:{port}")
        try:
            async with source.watch("/w", resource_version="1", timeout_s=5) as events:
                return [event async for event in events]
        finally:
            await source.close()
            await runner.cleanup()

    got: list[Any] = asyncio.run(main())

    sent = [big, *small, big]
    assert [(e.type, e.object) for e in got] == [(e["type"], e["object"]) for e in sent]
