"""DnsClient on real loopback sockets: hostile DNS servers of known behaviour, the sim's DNS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.flags
import dns.message
import pytest

from loadlab.agents.base import DnsAnswer
from loadlab.targets.address import parse_host_port
from loadlab.targets.base import Outcome
from loadlab.targets.dns_client import DnsClient
from loadlab.testing.hostile_dns import ANSWER_A, ANSWER_AAAA, ANSWER_TTL_S, HostileDnsServer
from tests.sim.conftest import sim_in_thread, small_sim_config

pytestmark = pytest.mark.realtime

TIMEOUT_S = 5.0
SERVICE = "kubernetes.default.svc.cluster.local."

ClientBody = Callable[[HostileDnsServer, DnsClient], Awaitable[None]]


class TruncatingDnsServer(HostileDnsServer):
    """Answers well over TCP; over UDP, only an empty answer with TC set (RFC 7766: ask again
    over TCP), as a server does when the answer does not fit 512 bytes."""

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        good = super().answer(wire, tcp=tcp)  # counted like any query
        if tcp:
            return good
        response = dns.message.make_response(dns.message.from_wire(wire))
        response.flags |= dns.flags.TC
        return response.to_wire()


def against(server: HostileDnsServer, body: ClientBody, *, sockets: int = 1) -> None:
    async def main() -> None:
        async with server:
            host, port = parse_host_port(server.addr, default_port=53)
            async with DnsClient(host, port, sockets=sockets) as client:
                await asyncio.wait_for(body(server, client), TIMEOUT_S * 2)

    asyncio.run(main())


def test_a_and_aaaa_answers_carry_addresses_and_ttl() -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", TIMEOUT_S))
        answers.append(await client.query(SERVICE, "AAAA", TIMEOUT_S))

    against(HostileDnsServer("ok"), body)
    assert answers == [
        DnsAnswer(Outcome.OK, 0, ANSWER_TTL_S, (ANSWER_A,)),
        DnsAnswer(Outcome.OK, 0, ANSWER_TTL_S, (ANSWER_AAAA,)),
    ]


def test_concurrent_queries_on_shared_sockets_each_get_their_own_answer() -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        names = [f"svc-{i}.default.svc.cluster.local." for i in range(40)]
        answers.extend(await asyncio.gather(*(client.query(n, "A", TIMEOUT_S) for n in names)))
        assert server.stats().queries == 40

    against(HostileDnsServer("ok"), body, sockets=3)
    assert {a.outcome for a in answers} == {Outcome.OK}
    assert len(answers) == 40


def test_silent_server_is_a_timeout_without_rcode() -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", 0.2))

    against(HostileDnsServer("silence"), body)
    assert answers == [DnsAnswer(Outcome.TIMEOUT, None)]


def test_answer_with_a_wrong_id_is_a_stray_and_the_query_times_out() -> None:
    answers: list[DnsAnswer] = []
    strays: list[int] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", 0.3))
        strays.append(client.stray)

    against(HostileDnsServer("wrong_id"), body)
    assert answers == [DnsAnswer(Outcome.TIMEOUT, None)]
    assert strays == [1]


@pytest.mark.parametrize(
    ("behaviour", "outcome", "rcode"),
    [
        pytest.param("servfail", Outcome.SERVFAIL, 2, id="servfail"),
        pytest.param("refuse", Outcome.REFUSED, 5, id="refused"),
    ],
)
def test_error_rcodes_become_their_outcomes(behaviour: str, outcome: Outcome, rcode: int) -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", TIMEOUT_S))

    against(HostileDnsServer(behaviour), body)
    assert answers == [DnsAnswer(outcome, rcode)]


def test_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", TIMEOUT_S))
        answers.append(await client.query(SERVICE, "AAAA", TIMEOUT_S))
        # One UDP and one TCP message per query, the TCP connection reused.
        assert (server.stats().queries, server.stats().tcp_queries) == (4, 2)

    against(TruncatingDnsServer("ok", tcp=True), body)
    assert answers == [
        DnsAnswer(Outcome.OK, 0, ANSWER_TTL_S, (ANSWER_A,)),
        DnsAnswer(Outcome.OK, 0, ANSWER_TTL_S, (ANSWER_AAAA,)),
    ]


def test_truncated_answer_with_tcp_refused_is_a_conn_error() -> None:
    answers: list[DnsAnswer] = []

    async def body(server: HostileDnsServer, client: DnsClient) -> None:
        answers.append(await client.query(SERVICE, "A", TIMEOUT_S))

    against(HostileDnsServer("truncate"), body)
    assert answers == [DnsAnswer(Outcome.CONN_ERROR, None)]


def test_cluster_dns_answers_a_service_and_denies_a_missing_name_with_its_negative_ttl() -> None:
    # The sim's cluster DNS: record TTL 30 s, negative TTL 5 s (docs/control-plane-model.md,
    # "CoreDNS"; the SOA's MINIMUM bounds the negative answer, RFC 2308 section 5).
    answers: list[DnsAnswer] = []

    async def main(addr: str) -> None:
        host, port = parse_host_port(addr, default_port=53)
        async with DnsClient(host, port) as client:
            for name in (SERVICE, "missing.default.svc.cluster.local."):
                answers.append(await client.query(name, "A", TIMEOUT_S))

    with sim_in_thread(small_sim_config()) as endpoints:
        asyncio.run(asyncio.wait_for(main(endpoints.dns_addr), TIMEOUT_S * 2))
    found, missing = answers
    assert (found.outcome, found.rcode, found.ttl_s) == (Outcome.OK, 0, 30)
    assert len(found.addresses) == 1
    assert (missing.outcome, missing.rcode, missing.ttl_s, missing.addresses) == (
        Outcome.NXDOMAIN,
        3,
        5,
        (),
    )
