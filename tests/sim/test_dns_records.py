"""The record table and answer logic, without sockets: Kubernetes JSON in, DNS answers out."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadlab.sim.dns.records import Rcode, RecordTable, allowed_address
from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL


def service(
    name: str,
    namespace: str = "default",
    cluster_ip: str = "192.0.2.10",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "spec": {"clusterIP": cluster_ip, "ports": ports or []},
    }


def endpoint_slice(
    name: str,
    service_name: str,
    addresses: list[str],
    *,
    namespace: str = "default",
    hostnames: list[str | None] | None = None,
    ready: list[bool | None] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    endpoints: list[dict[str, Any]] = []
    for i, address in enumerate(addresses):
        endpoint: dict[str, Any] = {"addresses": [address]}
        if hostnames and hostnames[i]:
            endpoint["hostname"] = hostnames[i]
        if ready and ready[i] is not None:
            endpoint["conditions"] = {"ready": ready[i]}
        endpoints.append(endpoint)
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SERVICE_NAME_LABEL: service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports or [],
    }


def q(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def addresses(table: RecordTable, name: str, rdtype: int = dns.rdatatype.A) -> list[str]:
    answer = table.lookup(q(name), rdtype)
    assert answer.rcode == Rcode.NOERROR
    return sorted(rdata.to_text() for rrset in answer.answer for rdata in rrset)


def test_service_name_answers_its_cluster_ip_with_the_kubeadm_ttl() -> None:
    table = RecordTable()
    table.upsert_service(service("kubernetes", cluster_ip="192.0.2.1"))

    answer = table.lookup(q("kubernetes.default.svc.cluster.local."), dns.rdatatype.A)

    assert answer.rcode == Rcode.NOERROR
    assert [r.to_text() for r in answer.answer[0]] == ["192.0.2.1"]
    assert answer.answer[0].ttl == 30


def test_missing_service_is_nxdomain_with_soa_in_authority() -> None:
    table = RecordTable(negative_ttl_s=5)
    table.upsert_service(service("kubernetes"))

    answer = table.lookup(q("nope.default.svc.cluster.local."), dns.rdatatype.A)

    assert answer.rcode == Rcode.NXDOMAIN
    assert answer.answer == ()
    assert answer.authority[0].rdtype == dns.rdatatype.SOA
    assert answer.authority[0][0].minimum == 5


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        pytest.param(
            "web.default.svc.cluster.local.", dns.rdatatype.AAAA, id="aaaa-of-ipv4-service"
        ),
        pytest.param("default.svc.cluster.local.", dns.rdatatype.A, id="namespace"),
        pytest.param("svc.cluster.local.", dns.rdatatype.A, id="svc-label"),
        pytest.param("_tcp.web.default.svc.cluster.local.", dns.rdatatype.SRV, id="proto-label"),
        pytest.param("cluster.local.", dns.rdatatype.A, id="apex"),
    ],
)
def test_existing_names_without_that_type_are_nodata(name: str, rdtype: int) -> None:
    table = RecordTable()
    table.upsert_service(service("web", ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))

    answer = table.lookup(q(name), rdtype)

    assert answer.rcode == Rcode.NOERROR
    assert answer.answer == ()
    assert answer.authority[0].rdtype == dns.rdatatype.SOA


def test_ipv6_cluster_ip_answers_aaaa() -> None:
    table = RecordTable()
    table.upsert_service(service("v6", cluster_ip="::1"))

    assert addresses(table, "v6.default.svc.cluster.local.", dns.rdatatype.AAAA) == ["::1"]


def test_named_ports_get_srv_records_pointing_at_the_service() -> None:
    table = RecordTable()
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"port": 9999},  # unnamed: no SRV
    ]
    table.upsert_service(service("web", ports=ports))

    answer = table.lookup(q("_dns._udp.web.default.svc.cluster.local."), dns.rdatatype.SRV)

    assert answer.rcode == Rcode.NOERROR
    srv = answer.answer[0][0]
    assert (srv.port, srv.target.to_text()) == (53, "web.default.svc.cluster.local.")
    assert [r[0].to_text() for r in answer.additional] == ["192.0.2.10"]


def test_headless_service_answers_ready_endpoints_and_their_hostnames() -> None:
    table = RecordTable()
    table.upsert_service(
        service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])
    )
    table.upsert_endpoint_slice(
        endpoint_slice(
            "db-abc",
            "db",
            ["192.0.2.21", "192.0.2.22", "192.0.2.23"],
            hostnames=["db-0", None, "db-2"],
            ready=[True, None, False],
            ports=[{"name": "pg", "port": 5433}],
        )
    )

    assert addresses(table, "db.default.svc.cluster.local.") == ["192.0.2.21", "192.0.2.22"]
    assert addresses(table, "db-0.db.default.svc.cluster.local.") == ["192.0.2.21"]
    assert addresses(table, "192-0-2-22.db.default.svc.cluster.local.") == ["192.0.2.22"]
    not_ready = table.lookup(q("db-2.db.default.svc.cluster.local."), dns.rdatatype.A)
    assert not_ready.rcode == Rcode.NXDOMAIN
    srv = table.lookup(q("_pg._tcp.db.default.svc.cluster.local."), dns.rdatatype.SRV)
    assert sorted((r.port, r.target.to_text()) for r in srv.answer[0]) == [
        (5433, "192-0-2-22.db.default.svc.cluster.local."),
        (5433, "db-0.db.default.svc.cluster.local."),
    ]


def test_addresses_outside_test_net_and_loopback_are_skipped_and_counted() -> None:
    table = RecordTable()
    table.upsert_service(service("evil", cluster_ip="8.8.8.8"))
    table.upsert_service(service("db", cluster_ip="None"))
    table.upsert_endpoint_slice(endpoint_slice("db-x", "db", ["10.0.0.1", "198.51.100.7"]))

    evil = table.lookup(q("evil.default.svc.cluster.local."), dns.rdatatype.A)

    assert evil.answer == ()
    assert addresses(table, "db.default.svc.cluster.local.") == ["198.51.100.7"]
    assert table.skipped_addresses == 2


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param("192.0.2.255", True, id="test-net-1"),
        pytest.param("198.51.100.1", True, id="test-net-2"),
        pytest.param("127.0.0.53", True, id="loopback"),
        pytest.param("::1", True, id="ipv6-loopback"),
        pytest.param("203.0.113.1", False, id="test-net-3-not-in-house-rule"),
        pytest.param("10.96.0.1", False, id="private"),
        pytest.param("2001:db8::1", False, id="ipv6-doc"),
        pytest.param("not-an-ip", False, id="garbage"),
    ],
)
def test_allowed_addresses_are_test_net_1_2_and_loopback(address: str, allowed: bool) -> None:
    assert allowed_address(address) is allowed


def test_deleting_a_service_removes_its_names_and_bumps_the_version() -> None:
    table = RecordTable()
    svc = service("web", ports=[{"name": "http", "port": 80}])
    table.upsert_service(svc)
    version = table.version

    table.delete_service(svc)

    assert table.version > version
    gone = table.lookup(q("web.default.svc.cluster.local."), dns.rdatatype.A)
    assert gone.rcode == Rcode.NXDOMAIN
    ns = table.lookup(q("default.svc.cluster.local."), dns.rdatatype.A)
    assert ns.rcode == Rcode.NXDOMAIN
    assert table.record_count == 0


def test_moving_an_endpoint_slice_between_services_updates_both() -> None:
    table = RecordTable()
    table.upsert_service(service("a", cluster_ip="None"))
    table.upsert_service(service("b", cluster_ip="None"))
    table.upsert_endpoint_slice(endpoint_slice("s", "a", ["192.0.2.5"]))

    table.upsert_endpoint_slice(endpoint_slice("s", "b", ["192.0.2.5"]))

    # A headless Service without endpoints has no name at all (CoreDNS answers NXDOMAIN).
    emptied = table.lookup(q("a.default.svc.cluster.local."), dns.rdatatype.A)
    assert emptied.rcode == Rcode.NXDOMAIN
    assert addresses(table, "b.default.svc.cluster.local.") == ["192.0.2.5"]


def test_relist_replaces_everything_and_drops_what_vanished() -> None:
    table = RecordTable()
    table.upsert_service(service("old"))
    table.replace_services([service("new", cluster_ip="192.0.2.99")])

    assert table.lookup(q("old.default.svc.cluster.local."), 1).rcode == Rcode.NXDOMAIN
    assert addresses(table, "new.default.svc.cluster.local.") == ["192.0.2.99"]


def test_endpoint_slice_arriving_before_its_service_is_used_once_the_service_comes() -> None:
    table = RecordTable()
    table.replace_endpoint_slices([endpoint_slice("s", "db", ["192.0.2.8"])])
    table.replace_services([service("db", cluster_ip="None")])

    assert addresses(table, "db.default.svc.cluster.local.") == ["192.0.2.8"]


def test_names_are_case_insensitive_and_other_zones_are_not_in_zone() -> None:
    table = RecordTable(zone="corp.test")
    table.upsert_service(service("web"))

    assert addresses(table, "WEB.Default.SVC.corp.test.") == ["192.0.2.10"]
    assert not table.in_zone(q("web.default.svc.cluster.local."))


octet = st.integers(min_value=0, max_value=255)
any_ipv4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)


@given(
    cluster_ips=st.lists(any_ipv4, min_size=1, max_size=8),
    endpoint_ips=st.lists(any_ipv4, max_size=8),
)
def test_no_answer_ever_leaves_test_net_or_loopback(
    cluster_ips: list[str], endpoint_ips: list[str]
) -> None:
    table = RecordTable()
    for i, ip in enumerate(cluster_ips):
        table.upsert_service(service(f"s{i}", cluster_ip=ip, ports=[{"name": "p", "port": 1}]))
    table.upsert_service(service("h", cluster_ip="None"))
    table.upsert_endpoint_slice(endpoint_slice("h-1", "h", endpoint_ips))

    answered: list[str] = []
    names = [f"s{i}" for i in range(len(cluster_ips))] + ["h"]
    for name in names:
        answer = table.lookup(q(f"{name}.default.svc.cluster.local."), dns.rdatatype.A)
        answered += [r.to_text() for rrset in answer.answer for r in rrset]

    assert all(allowed_address(ip) for ip in answered)
    allowed_given = [ip for ip in cluster_ips + endpoint_ips if allowed_address(ip)]
    assert sorted(set(answered)) == sorted(set(allowed_given))
    assert table.skipped_addresses == len(cluster_ips + endpoint_ips) - len(allowed_given)
