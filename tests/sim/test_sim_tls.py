"""``loadlab sim --tls``: HTTPS with a CA made at start, bearer tokens, a kubeconfig and a static
token file, all exercised over real HTTPS against a real sim process (one for the module).

Clients nobody here wrote (kubectl, kubernetes-asyncio) go through the kubeconfig with certificate
verification on; the sim's own cluster DNS must still sync through the secured API.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from kubernetes_asyncio import client, config

from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.sim.tls import issue_serving_certificate
from tests.sim.helpers import kubectl_installed, run_kubectl
from tests.sim.secured import (
    REVIEW,
    REVIEW_PATH,
    UNAUTHORIZED,
    ca_of,
    call,
    read_kubeconfig,
    read_token_file,
    request_totals,
    token_of,
)

pytestmark = pytest.mark.realtime

NODES = 5
TELEMETRY = "system:serviceaccount:monitoring:telemetry"
COREDNS = "system:serviceaccount:kube-system:coredns"


@dataclass(frozen=True)
class SecuredSim:
    process: SimProcess
    kubeconfig_path: Path
    tokens_path: Path

    @property
    def url(self) -> str:
        return self.process.api_url

    @property
    def ca_pem(self) -> bytes:
        return ca_of(read_kubeconfig(self.kubeconfig_path))

    def token(self, user: str) -> str:
        return token_of(read_token_file(self.tokens_path), user)

    def totals(self) -> dict[tuple[str, str, str], float]:
        admin = self.token("loadlab-admin")
        reply = call(f"{self.url}/metrics", token=admin, ca_pem=self.ca_pem)
        assert reply.status == 200
        return request_totals(reply.body.decode())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredSim]:
    folder = tmp_path_factory.mktemp("secured-sim")
    kubeconfig, tokens = folder / "kubeconfig", folder / "tokens.csv"
    args = ["--nodes", str(NODES), "--pods-per-node", "2", "--tls"]
    args += ["--kubeconfig-out", str(kubeconfig), "--tokens-out", str(tokens)]
    with start_sim_process(args, timeout_s=60) as sim:
        yield SecuredSim(sim, kubeconfig, tokens)


def test_ready_line_announces_https_and_the_files_it_wrote(secured: SecuredSim) -> None:
    assert secured.url.startswith("https://127.0.0.1:")
    assert secured.process.kubeconfig == str(secured.kubeconfig_path)
    assert secured.process.tokens_file == str(secured.tokens_path)
    for path in (secured.kubeconfig_path, secured.tokens_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_kubeconfig_names_the_sim_and_its_admin(secured: SecuredSim) -> None:
    doc = read_kubeconfig(secured.kubeconfig_path)
    assert doc["current-context"] == "loadlab-sim"
    assert doc["contexts"] == [
        {"name": "loadlab-sim", "context": {"cluster": "loadlab-sim", "user": "loadlab-admin"}}
    ]
    assert doc["clusters"][0]["name"] == "loadlab-sim"
    assert doc["clusters"][0]["cluster"]["server"] == secured.url
    assert doc["users"] == [
        {"name": "loadlab-admin", "user": {"token": secured.token("loadlab-admin")}}
    ]


def test_token_file_is_a_static_token_csv_with_one_token_per_identity(
    secured: SecuredSim,
) -> None:
    rows = read_token_file(secured.tokens_path)
    assert {len(row) for row in rows} == {4}
    nodes = [f"system:node:node-{i}" for i in range(NODES)]
    assert [row[1] for row in rows] == ["loadlab-admin", *nodes, TELEMETRY, COREDNS]
    groups = {row[1]: row[3].split(",") for row in rows}
    assert groups["loadlab-admin"] == ["system:masters"]
    assert all(groups[node] == ["system:nodes"] for node in nodes)
    assert groups[TELEMETRY] == ["system:serviceaccounts", "system:serviceaccounts:monitoring"]
    tokens = [row[0] for row in rows]
    assert len(set(tokens)) == len(tokens)
    assert min(len(token) for token in tokens) >= 43  # 32 random bytes, base64url


def _peer_certificate(url: str, context: ssl.SSLContext) -> dict[str, Any]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return dict(cert)


def test_certificate_verifies_against_the_kubeconfig_ca_and_names_loopback(
    secured: SecuredSim,
) -> None:
    context = ssl.create_default_context(cadata=secured.ca_pem.decode())
    cert = _peer_certificate(secured.url, context)
    names = cert["subjectAltName"]
    assert ("DNS", "localhost") in names
    ips = {ipaddress.ip_address(value.strip()) for kind, value in names if kind == "IP Address"}
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips
    lifetime_s = ssl.cert_time_to_seconds(cert["notAfter"]) - ssl.cert_time_to_seconds(
        cert["notBefore"]
    )
    assert lifetime_s <= datetime.timedelta(days=1, minutes=5).total_seconds()
    ca = x509.load_pem_x509_certificate(secured.ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_certificate_does_not_verify_against_another_ca(secured: SecuredSim) -> None:
    stranger = issue_serving_certificate().ca_pem
    context = ssl.create_default_context(cadata=stranger.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        _peer_certificate(secured.url, context)


def test_plain_http_to_the_tls_port_gets_no_http_answer(secured: SecuredSim) -> None:
    plain = secured.url.replace("https://", "http://", 1)
    # A TLS server reading "GET / HTTP/1.1" sees a failed handshake: it answers no HTTP at all.
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected (or a reset)
        call(f"{plain}/api/v1/nodes")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="no-token"),
        pytest.param("not-a-token", id="unknown-token"),
        pytest.param("loadlab-admin", id="user-name-as-token"),
    ],
)
def test_request_without_a_known_token_gets_401_status_and_is_counted(
    secured: SecuredSim, token: str | None
) -> None:
    before = secured.totals()
    reply = call(f"{secured.url}/api/v1/nodes", token=token, ca_pem=secured.ca_pem)
    after = secured.totals()
    assert (reply.status, reply.json()) == (401, UNAUTHORIZED)
    key = ("LIST", "nodes", "401")
    assert after.get(key, 0) - before.get(key, 0) == 1
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/version"])
def test_health_paths_answer_a_request_without_a_token(secured: SecuredSim, path: str) -> None:
    assert call(f"{secured.url}{path}", ca_pem=secured.ca_pem).status == 200


def test_health_path_refuses_an_unknown_token_as_kube_apiserver_does(secured: SecuredSim) -> None:
    reply = call(f"{secured.url}/healthz", token="not-a-token", ca_pem=secured.ca_pem)
    assert (reply.status, reply.json()) == (401, UNAUTHORIZED)


def test_node_token_is_served_as_that_node(secured: SecuredSim) -> None:
    token = secured.token("system:node:node-3")
    listed = call(f"{secured.url}/api/v1/nodes", token=token, ca_pem=secured.ca_pem)
    review = call(
        f"{secured.url}{REVIEW_PATH}",
        token=token,
        ca_pem=secured.ca_pem,
        method="POST",
        data=REVIEW,
    )
    assert listed.status == 200
    assert len(listed.json()["items"]) == NODES
    assert review.status == 201
    assert review.json()["status"]["userInfo"] == {
        "username": "system:node:node-3",
        "uid": "system:node:node-3",
        "groups": ["system:nodes", "system:authenticated"],
    }


def test_kubernetes_asyncio_lists_nodes_through_the_kubeconfig(secured: SecuredSim) -> None:
    async def names() -> list[str]:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(secured.kubeconfig_path), client_configuration=configuration
        )
        assert configuration.verify_ssl
        async with client.ApiClient(configuration) as api:
            nodes = await client.CoreV1Api(api).list_node()
            review = await client.AuthenticationV1Api(api).create_self_subject_review(
                client.V1SelfSubjectReview()
            )
        assert review.status.user_info.username == "loadlab-admin"
        return [node.metadata.name for node in nodes.items]

    assert asyncio.run(names()) == [f"node-{i}" for i in range(NODES)]


def test_cluster_dns_syncs_through_the_secured_api(secured: SecuredSim) -> None:
    host, _, port = secured.process.dns_addr.rpartition(":")
    query = dns.message.make_query("kube-dns.kube-system.svc.cluster.local", dns.rdatatype.A)
    answer = dns.query.udp(query, host, port=int(port), timeout=5)
    assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["192.0.2.10"]


def kubectl(kubeconfig: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kubectl(*args, cache=cache, kubeconfig=kubeconfig)


@pytest.mark.needs_kubectl
@kubectl_installed
def test_kubectl_gets_nodes_through_the_kubeconfig(secured: SecuredSim, tmp_path: Path) -> None:
    done = kubectl(secured.kubeconfig_path, tmp_path, "get", "nodes", "-o", "name")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"node/node-{i}" for i in range(NODES)]


@pytest.mark.needs_kubectl
@kubectl_installed
def test_kubectl_auth_whoami_with_a_node_token_is_that_node(
    secured: SecuredSim, tmp_path: Path
) -> None:
    token = secured.token("system:node:node-3")
    done = kubectl(secured.kubeconfig_path, tmp_path, "--token", token, "auth", "whoami")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in done.stdout.splitlines()}
    assert rows["Username"] == "system:node:node-3"
    assert rows["Groups"] == "[system:nodes system:authenticated]"


@pytest.mark.needs_kubectl
@kubectl_installed
def test_kubectl_with_a_wrong_token_is_refused(secured: SecuredSim, tmp_path: Path) -> None:
    done = kubectl(secured.kubeconfig_path, tmp_path, "--token", "wrong", "get", "nodes")
    assert done.returncode != 0
    # kubectl's words for a 401 (k8s.io/apimachinery: "the server has asked for the client to
    # provide credentials" is the message of an Unauthorized StatusError).
    assert "You must be logged in to the server" in done.stderr
