"""loadlab against a real HTTPS API server double on loopback: TLS verified with the kubeconfig's
CA, the credentials the server takes or rejects, and the header each identity sends."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from loadlab.agents.base import ApiCall, Identity, WatchOpen
from loadlab.clock import NS_PER_S, MonotonicClock
from loadlab.errors import EXIT_UNREACHABLE, TargetMisbehaving, TargetUnreachable
from loadlab.targets.base import Outcome, Target
from loadlab.targets.cluster import ClusterAccess, load_kubeconfig, with_token_file
from loadlab.targets.credentials import KubeconfigCredentials
from loadlab.targets.fast_http import FastHttpTarget
from loadlab.targets.http import HttpOperation, HttpTarget, probe_http
from loadlab.testing.fakes import FakeRecorder
from tests.targets.helpers import send_and_drain
from tests.targets.pki import CertificateAuthority, b64, kubeconfig
from tests.targets.test_agent_http import AGENT_CLIENTS, AgentClientType

pytestmark = pytest.mark.realtime

ADMIN_TOKEN = "admin-token"
NODE_1 = Identity("system:node:node-1", "kubelet/v1.32 (loadlab) node-1")
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
TIMEOUT_S = 5.0
MixTarget = type[FastHttpTarget] | type[HttpTarget]
MIX_TARGETS = pytest.mark.parametrize(
    "target_type",
    [pytest.param(FastHttpTarget, id="fast"), pytest.param(HttpTarget, id="aiohttp")],
)
"""Both clients of the request mix: runs use FastHttpTarget; HttpTarget must say the same."""


@dataclass
class Seen:
    """What the server saw of each request: path, Authorization, User-Agent, client cert CN."""

    requests: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)

    def authorizations(self, path: str) -> list[str | None]:
        return [auth for p, auth, _, _ in self.requests if p == path]


def _client_cn(request: web.Request) -> str | None:
    assert request.transport is not None
    peer: Any = request.transport.get_extra_info("peercert")
    if not peer:
        return None
    return next((v for rdn in peer["subject"] for k, v in rdn if k == "commonName"), None)


@asynccontextmanager
async def api_server(
    context: ssl.SSLContext | None, tokens: Sequence[str] = (ADMIN_TOKEN,)
) -> AsyncIterator[tuple[str, Seen]]:
    """An HTTPS server that serves anything to a known token or a client certificate and 401s
    the rest, as kube-apiserver does (health and ``/`` aside: any status passes a probe)."""
    seen = Seen()
    accepted = {f"Bearer {t}" for t in tokens}

    async def handle(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        cn = _client_cn(request)
        seen.requests.append((request.path, auth, request.headers.get("User-Agent"), cn))
        if request.path != "/" and auth not in accepted and cn is None:
            return web.json_response(UNAUTHORIZED, status=401)
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("loadlab-test-ca")


async def kubeconfig_access(
    tmp_path: Path, ca: CertificateAuthority, url: str, user: dict[str, Any] | None = None
) -> ClusterAccess:
    path = kubeconfig(
        tmp_path / "config",
        server=url,
        cluster={"certificate-authority-data": b64(ca.pem)},
        user=user if user is not None else {"token": ADMIN_TOKEN},
    )
    return await load_kubeconfig(path, None)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), TIMEOUT_S * 3))


async def send(target: Target, ops: Sequence[int]) -> list[Outcome]:
    """The outcomes of ``ops`` sent at once through ``target`` (built on the default clock)."""
    completions = await send_and_drain(target, MonotonicClock(), ops, drain_s=TIMEOUT_S)
    return [c.outcome for c in completions]


def test_probe_passes_with_the_kubeconfig_token_over_verified_tls(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    async def body() -> None:
        async with api_server(ca.server_context(tmp_path)) as (url, seen):
            access = await kubeconfig_access(tmp_path, ca, url)
            await probe_http(access.server, TIMEOUT_S, access=access)
            # Never anonymous: that would count as a failed authentication on a real cluster.
            assert seen.authorizations("/") == [f"Bearer {ADMIN_TOKEN}"]
            assert seen.authorizations("/api") == [f"Bearer {ADMIN_TOKEN}"]

    run(body)


def test_probe_with_a_rejected_token_is_one_line_naming_the_context_and_the_401(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    async def body() -> None:
        async with api_server(ca.server_context(tmp_path)) as (url, _):
            access = await kubeconfig_access(tmp_path, ca, url, {"token": "stale"})
            with pytest.raises(TargetUnreachable) as caught:
                await probe_http(access.server, TIMEOUT_S, access=access)
        assert str(caught.value) == (
            f"context test ({tmp_path / 'config'}): the API server rejected the credentials "
            "(401 Unauthorized)"
        )
        assert caught.value.exit_code == EXIT_UNREACHABLE

    run(body)


def test_probe_asks_as_each_tokens_file_user_and_names_the_one_rejected(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    async def body() -> None:
        tokens = (ADMIN_TOKEN, "node-1-token")
        async with api_server(ca.server_context(tmp_path), tokens) as (url, seen):
            access = with_token_file(
                await kubeconfig_access(tmp_path, ca, url),
                {"system:node:node-1": "node-1-token", "system:node:node-2": "revoked"},
            )
            users = ["system:node:node-1", "system:node:node-2"]
            with pytest.raises(TargetUnreachable) as caught:
                await probe_http(access.server, TIMEOUT_S, access=access, users=users)
            assert seen.authorizations("/api") == [
                f"Bearer {ADMIN_TOKEN}",
                "Bearer node-1-token",
                "Bearer revoked",
            ]
        assert "rejected the credentials of system:node:node-2 (401 Unauthorized)" in str(
            caught.value
        )

    run(body)


def test_a_server_certificate_from_another_ca_fails_verification_in_one_line(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    impostor = CertificateAuthority("some-other-ca")

    async def body() -> None:
        async with api_server(impostor.server_context(tmp_path)) as (url, seen):
            access = await kubeconfig_access(tmp_path, ca, url)
            with pytest.raises(TargetMisbehaving) as caught:
                await probe_http(access.server, TIMEOUT_S, access=access)
            assert seen.requests == []  # the token never left the client
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{url} speaks TLS")
        assert "certificate verify failed" in message
        assert caught.value.exit_code == EXIT_UNREACHABLE

    run(body)


@MIX_TARGETS
def test_http_target_sends_each_operation_as_its_user_over_verified_tls(
    tmp_path: Path, ca: CertificateAuthority, target_type: MixTarget
) -> None:
    async def body() -> None:
        async with api_server(ca.server_context(tmp_path)) as (url, seen):
            access = with_token_file(
                await kubeconfig_access(tmp_path, ca, url), {"system:node:node-1": "node-1-token"}
            )
            ops = [
                HttpOperation("node", "GET", "/node", user="system:node:node-1"),
                HttpOperation("stranger", "GET", "/stranger", user="system:node:node-9"),
                HttpOperation("own", "GET", "/own"),
            ]
            target = target_type(access.server, ops, connections=1, access=access)
            outcomes = await send(target, [0, 1, 2])
        assert outcomes == [Outcome.CLIENT_ERROR, Outcome.OK, Outcome.OK]  # node-1 unknown here
        assert seen.authorizations("/node") == ["Bearer node-1-token"]
        assert seen.authorizations("/stranger") == [f"Bearer {ADMIN_TOKEN}"]  # not in the file
        assert seen.authorizations("/own") == [f"Bearer {ADMIN_TOKEN}"]

    run(body)


@MIX_TARGETS
def test_http_target_sends_the_renewed_token_after_a_refresh(
    tmp_path: Path, ca: CertificateAuthority, target_type: MixTarget
) -> None:
    expiry = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)

    async def renew() -> tuple[str | None, datetime.datetime | None]:
        return "Bearer second", expiry + datetime.timedelta(hours=1)

    async def body() -> None:
        async with api_server(ca.server_context(tmp_path), ("first", "second")) as (url, seen):
            loaded = await kubeconfig_access(tmp_path, ca, url)
            creds = KubeconfigCredentials("Bearer first", expires_at=expiry, renew=renew)
            access = ClusterAccess(loaded.server, "test", loaded.ssl, creds, loaded.source)
            ops = [HttpOperation("get", "GET", "/x")]
            target = target_type(access.server, ops, access=access)
            clock = MonotonicClock()
            await target.open(FakeRecorder())
            try:
                target.submit(0, clock.now_ns())
                await target.drain(clock.now_ns() + int(TIMEOUT_S * NS_PER_S))
                assert await creds.refresh(expiry)
                target.submit(0, clock.now_ns())
                await target.drain(clock.now_ns() + int(TIMEOUT_S * NS_PER_S))
            finally:
                await target.close()
        assert seen.authorizations("/x") == ["Bearer first", "Bearer second"]

    run(body)


@AGENT_CLIENTS
def test_agent_client_sends_the_node_token_and_its_user_agent(
    tmp_path: Path, ca: CertificateAuthority, client_type: AgentClientType
) -> None:
    async def body() -> None:
        async with api_server(ca.server_context(tmp_path), ("node-1-token",)) as (url, seen):
            access = with_token_file(
                await kubeconfig_access(tmp_path, ca, url), {NODE_1.user: "node-1-token"}
            )
            async with client_type(access.server, access=access) as client:
                reply = await client.call(NODE_1, ApiCall("get-node", "GET", "/api/v1/nodes/n"))
                watch = await client.open_watch(NODE_1, WatchOpen("watch", "/api/v1/pods"))
                await watch.close()
        assert (reply.status, reply.outcome) == (200, Outcome.OK)
        assert [r[1:3] for r in seen.requests] == [
            ("Bearer node-1-token", NODE_1.user_agent),
            ("Bearer node-1-token", NODE_1.user_agent),
        ]

    run(body)


@MIX_TARGETS
@pytest.mark.parametrize("as_data", [False, True], ids=["files", "data"])
def test_client_certificate_authenticates_the_probe_and_the_load(
    tmp_path: Path, ca: CertificateAuthority, as_data: bool, target_type: MixTarget
) -> None:
    alice = ca.client("alice")
    if as_data:
        user = {
            "client-certificate-data": b64(alice.cert_pem),
            "client-key-data": b64(alice.key_pem),
        }
    else:
        cert, key = alice.write(tmp_path, "alice")
        user = {"client-certificate": str(cert), "client-key": str(key)}

    async def body() -> None:
        server_context = ca.server_context(tmp_path, client_certs=True)
        async with api_server(server_context, tokens=()) as (url, seen):
            access = await kubeconfig_access(tmp_path, ca, url, user)
            await probe_http(access.server, TIMEOUT_S, access=access)
            ops = [HttpOperation("get", "GET", "/x")]
            assert await send(target_type(access.server, ops, access=access), [0]) == [Outcome.OK]
        assert [(r[0], r[1], r[3]) for r in seen.requests] == [
            ("/", None, "alice"),
            ("/api", None, "alice"),
            ("/x", None, "alice"),
        ]

    run(body)


@MIX_TARGETS
def test_without_access_an_operation_user_is_the_sims_bearer_convention(
    target_type: MixTarget,
) -> None:
    async def body() -> None:
        async with api_server(None, tokens=("system:node:node-3",)) as (url, seen):
            ops = [HttpOperation("as-node", "GET", "/x", user="system:node:node-3")]
            assert await send(target_type(url, ops), [0]) == [Outcome.OK]
        assert seen.authorizations("/x") == ["Bearer system:node:node-3"]

    run(body)
