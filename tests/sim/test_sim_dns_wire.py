"""The sim's cluster DNS against CoreDNS's behaviour where real resolvers hit it: PTR and pod
records, truncation to whole records, BADVERS / FORMERR / NOTIMP, idle TCP connections, and the
coredns_* metrics endpoint. The whole sim runs (API + DNS); dnspython asks over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from loadlab.sim.process import start_sim_process
from loadlab.sim.server import SimEndpoints
from tests.sim.conftest import sim_in_thread, small_sim_config

pytestmark = pytest.mark.realtime

TIMEOUT_S = 2.0
ENDPOINTS = 60  # a headless Service's 60 A records: about 1 KB, more than 512 bytes


@pytest.fixture(scope="module")
def sim() -> Iterator[SimEndpoints]:
    config = small_sim_config(
        services=2,
        headless_services=1,
        endpoints_per_service=ENDPOINTS,
        namespaces=1,
        # Endpoints are real pods matching each Service's selector: 2 x 60 need the pods.
        nodes=8,
        pods_per_node=15,
        dns={"metrics_port": 0, "tcp_read_timeout_s": 0.5, "tcp_idle_timeout_s": 0.5},
    )
    with sim_in_thread(config) as endpoints:
        yield endpoints


def port_of(sim: SimEndpoints) -> int:
    return int(sim.dns_addr.rpartition(":")[2])


def ask(sim: SimEndpoints, query: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", timeout=TIMEOUT_S, port=port_of(sim))


def raw_udp(sim: SimEndpoints, packet: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendto(packet, ("127.0.0.1", port_of(sim)))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def ptr_targets(sim: SimEndpoints, address: str) -> list[str]:
    query = dns.message.make_query(dns.reversename.from_address(address), "PTR")
    response = ask(sim, query)
    assert response.rcode() == dns.rcode.NOERROR
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


def test_ptr_of_a_cluster_ip_names_the_service(sim: SimEndpoints) -> None:
    assert ptr_targets(sim, "192.0.2.21") == ["svc-1.default.svc.cluster.local."]


def test_ptr_of_an_endpoint_names_the_endpoint_under_its_service(sim: SimEndpoints) -> None:
    # svc-1 is a ClusterIP Service; CoreDNS answers PTR for its endpoints too.
    headless = ptr_targets(sim, "198.51.100.1")
    clustered = ptr_targets(sim, "198.51.100.61")
    assert len(headless) == 1
    assert headless[0].endswith(".svc-0.default.svc.cluster.local.")
    assert len(clustered) == 1
    assert clustered[0].endswith(".svc-1.default.svc.cluster.local.")


def test_ptr_of_an_unknown_address_is_not_in_the_zone(sim: SimEndpoints) -> None:
    query = dns.message.make_query(dns.reversename.from_address("192.0.2.250"), "PTR")
    assert ask(sim, query).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("name", "rcode", "answer"),
    [
        ("192-0-2-77.default.pod.cluster.local.", dns.rcode.NOERROR, ["192.0.2.77"]),
        ("198-51-100-9.any-ns.pod.cluster.local.", dns.rcode.NOERROR, ["198.51.100.9"]),
        ("not-an-ip.default.pod.cluster.local.", dns.rcode.NXDOMAIN, []),
        ("8-8-8-8.default.pod.cluster.local.", dns.rcode.NXDOMAIN, []),  # beyond TEST-NET
        ("default.pod.cluster.local.", dns.rcode.NOERROR, []),
    ],
    ids=["test-net-1", "test-net-2", "not-an-address", "outside-test-net", "namespace-only"],
)
def test_pod_names_answer_the_address_they_spell(
    sim: SimEndpoints, name: str, rcode: dns.rcode.Rcode, answer: list[str]
) -> None:
    response = ask(sim, dns.message.make_query(name, "A"))
    assert response.rcode() == rcode
    assert sorted(r.to_text() for rrset in response.answer for r in rrset) == answer


def answered(response: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in response.answer)


def test_a_512_byte_answer_keeps_the_whole_records_that_fit(sim: SimEndpoints) -> None:
    query = dns.message.make_query("svc-0.default.svc.cluster.local.", "A")
    wire = dns.query.udp(query, "127.0.0.1", timeout=TIMEOUT_S, port=port_of(sim))
    full = ask(sim, query, tcp=True)
    assert answered(full) == ENDPOINTS
    assert not full.flags & dns.flags.TC
    assert wire.flags & dns.flags.TC
    kept = answered(wire)
    assert 0 < kept < ENDPOINTS
    assert len(wire.to_wire()) <= 512
    # One more record (16 bytes compressed) would not have fitted.
    assert len(wire.to_wire()) + 16 > 512


def test_a_larger_edns_buffer_gets_more_records(sim: SimEndpoints) -> None:
    name = "svc-0.default.svc.cluster.local."
    small = dns.message.make_query(name, "A", use_edns=0, payload=512)
    large = dns.message.make_query(name, "A", use_edns=0, payload=700)
    small_answer, large_answer = ask(sim, small), ask(sim, large)
    assert small_answer.flags & dns.flags.TC
    assert large_answer.flags & dns.flags.TC
    assert answered(small_answer) < answered(large_answer) < ENDPOINTS
    assert len(large_answer.to_wire()) <= 700
    assert large_answer.edns == 0  # the OPT record survives truncation


def test_edns_version_1_gets_badvers_with_an_opt_record(sim: SimEndpoints) -> None:
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A", use_edns=1)
    response = ask(sim, query)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0
    assert not response.answer


def test_a_malformed_query_gets_formerr(sim: SimEndpoints) -> None:
    good = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()
    cut = good[:-3]  # the question's type and class cut short
    reply = raw_udp(sim, cut)
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == int.from_bytes(good[:2], "big")
    assert response.rcode() == dns.rcode.FORMERR


def test_two_questions_get_formerr_and_a_short_packet_nothing(sim: SimEndpoints) -> None:
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A")
    query.question.append(query.question[0])
    assert ask(sim, query).rcode() == dns.rcode.FORMERR
    assert raw_udp(sim, b"\x12\x34\x01") is None


@pytest.mark.parametrize("opcode", [dns.opcode.STATUS, dns.opcode.UPDATE], ids=["status", "update"])
def test_opcodes_other_than_query_and_notify_get_notimp(
    sim: SimEndpoints, opcode: dns.opcode.Opcode
) -> None:
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "SOA")
    query.set_opcode(opcode)
    reply = raw_udp(sim, query.to_wire())
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.rcode() == dns.rcode.NOTIMP
    assert response.opcode() == opcode


def test_an_idle_tcp_connection_is_closed(sim: SimEndpoints) -> None:
    async def body() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(sim))
        try:
            wire = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            length = int.from_bytes(await reader.readexactly(2), "big")
            await reader.readexactly(length)
            # The idle timeout is 0.5 s here; the server must close before 5 s.
            return await asyncio.wait_for(reader.read(), timeout=5)
        finally:
            writer.close()

    assert asyncio.run(body()) == b""  # EOF: the server closed it


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # loopback only
        return str(reply.read().decode())


def sample(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_with_coredns_labels(sim: SimEndpoints) -> None:
    assert sim.dns_metrics_url is not None
    server = f'server="dns://:{port_of(sim)}"'
    requests = (
        f'coredns_dns_requests_total{{{server},zone=".",view="",proto="udp",family="1",type="SRV"}}'
    )
    nxdomain = f'coredns_dns_responses_total{{{server},zone=".",view="",rcode="NXDOMAIN"'
    before = metrics_text(sim.dns_metrics_url)
    for i in range(3):  # distinct names: not answered from the cache
        ask(sim, dns.message.make_query(f"_x{i}._tcp.nope.default.svc.cluster.local.", "SRV"))
    after = metrics_text(sim.dns_metrics_url)
    assert sample(after, requests) == sample(before, requests) + 3
    assert sample(after, nxdomain) == sample(before, nxdomain) + 3
    duration = f'coredns_dns_request_duration_seconds_count{{{server},zone=".",view=""}}'
    assert sample(after, duration) >= sample(before, duration) + 3
    assert "coredns_cache_requests_total" in after
    assert "coredns_cache_misses_total" in after


def test_the_sim_process_announces_its_dns_metrics_url() -> None:
    with start_sim_process(["--nodes", "2", "--services", "1", "--dns-metrics-port", "0"]) as sim:
        assert sim.dns_metrics_url is not None
        assert sim.dns_metrics_url.startswith("http://127.0.0.1:")
        port = int(sim.dns_addr.rpartition(":")[2])
        query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A")
        dns.query.udp(query, "127.0.0.1", timeout=TIMEOUT_S, port=port)
        text = metrics_text(sim.dns_metrics_url)
        assert 'type="A"} 1' in text
    with start_sim_process(["--nodes", "2", "--services", "1"]) as plain:
        assert plain.dns_metrics_url is None
