"""loadlab's cluster access against the embedded control plane serving HTTPS with tokens
(``loadlab sim --tls``): through the kubeconfig and token file the sim writes, as a user would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from loadlab.agents.base import ApiCall, Identity
from loadlab.errors import EXIT_UNREACHABLE, TargetUnreachable, UsageError
from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import ClusterAccess, load_kubeconfig, with_token_file
from loadlab.targets.credentials import read_token_file
from loadlab.targets.fast_http import FastHttpTarget
from loadlab.targets.http import HttpOperation, probe_http
from tests.targets.test_agent_http import AGENT_CLIENTS, AgentClientType
from tests.targets.test_cluster_tls import MIX_TARGETS, MixTarget, send

pytestmark = pytest.mark.realtime

CONTEXT = "loadlab-sim"
TIMEOUT_S = 5.0
REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
LIST_NODES = (
    'apiserver_request_total{verb="LIST",dry_run="",group="",version="v1",resource="nodes",'
    'subresource="",scope="cluster",component="apiserver",code="200"}'
)
METRIC = re.compile(r"^(\w+\{[^}]*\}|\w+) (\S+)$")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    folder = tmp_path_factory.mktemp("sim-tls")
    args = ["--nodes", "4", "--tls", "--kubeconfig-out", str(folder / "kubeconfig")]
    process = start_sim_process([*args, "--tokens-out", str(folder / "tokens")], timeout_s=60)
    try:
        yield process
    finally:
        process.stop()


def kubeconfig_of(sim: SimProcess) -> Path:
    assert sim.kubeconfig is not None
    return Path(sim.kubeconfig)


async def sim_access(sim: SimProcess) -> ClusterAccess:
    assert sim.tokens_file is not None
    access = await load_kubeconfig(kubeconfig_of(sim), None, allow_contexts=[CONTEXT])
    return with_token_file(access, read_token_file(Path(sim.tokens_file)))


async def counters(access: ClusterAccess) -> dict[str, float]:
    """The sim's /metrics samples, read as its admin."""
    headers = {"Authorization": access.credentials.authorization(None) or ""}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=access.ssl or True)) as session,
        session.get(access.server + "/metrics", headers=headers) as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    samples = (METRIC.match(line) for line in text.splitlines() if not line.startswith("#"))
    return {m[1]: float(m[2]) for m in samples if m is not None}


def test_probe_passes_through_the_sims_kubeconfig_and_node_tokens(sim: SimProcess) -> None:
    async def body() -> None:
        access = await sim_access(sim)
        assert (access.context, access.server) == (CONTEXT, sim.api_url)
        nodes = ["system:node:node-0", "system:node:node-3"]
        await probe_http(access.server, TIMEOUT_S, access=access, users=nodes)

    asyncio.run(body())


def test_a_token_the_sim_rejects_is_exit_3_naming_the_context_and_the_401(
    sim: SimProcess, tmp_path: Path
) -> None:
    doc = yaml.safe_load(kubeconfig_of(sim).read_text())
    doc["users"][0]["user"]["token"] = "not-a-token-the-sim-made"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))

    async def body() -> None:
        access = await load_kubeconfig(path, None)
        with pytest.raises(TargetUnreachable) as caught:
            await probe_http(access.server, TIMEOUT_S, access=access)
        assert str(caught.value) == (
            f"context {CONTEXT} ({path}): the API server rejected the credentials "
            "(401 Unauthorized)"
        )
        assert caught.value.exit_code == EXIT_UNREACHABLE

    asyncio.run(body())


@AGENT_CLIENTS
def test_each_agent_is_its_own_node_to_the_sim(
    sim: SimProcess, client_type: AgentClientType
) -> None:
    node_3 = Identity("system:node:node-3", "kubelet/v1.32 (loadlab) node-3")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}

    async def body() -> None:
        access = await sim_access(sim)
        async with client_type(access.server, access=access) as client:
            reply = await client.call(node_3, ApiCall("review", "POST", REVIEW_PATH, body=review))
        assert reply.outcome is Outcome.OK, reply
        assert reply.body is not None
        assert reply.body["status"]["userInfo"]["username"] == "system:node:node-3"

    asyncio.run(body())


@MIX_TARGETS
def test_the_mix_reaches_the_sim_as_the_operations_users(
    sim: SimProcess, target_type: MixTarget
) -> None:
    lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-{i}"

    async def body() -> None:
        access = await sim_access(sim)
        ops = [
            HttpOperation("lease", "GET", lease.replace("{i}", "1"), user="system:node:node-1"),
            HttpOperation("admin", "GET", "/api/v1/nodes"),
            HttpOperation("nobody", "GET", "/api/v1/nodes", user="system:node:node-99"),
        ]
        target = target_type(access.server, ops, connections=2, access=access)
        # node-99 has no token of its own: it falls back to the kubeconfig's (the admin).
        assert await send(target, [0, 1, 2]) == [Outcome.OK, Outcome.OK, Outcome.OK]

    asyncio.run(body())


def test_an_unlisted_context_sends_nothing_to_the_sim(sim: SimProcess) -> None:
    async def body() -> None:
        access = await sim_access(sim)
        before = await counters(access)
        with pytest.raises(UsageError, match=f"^context {CONTEXT}: not allowlisted"):
            await load_kubeconfig(kubeconfig_of(sim), None, allow_contexts=["prod-eu"])
        after = await counters(access)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        # Only the second read of /metrics itself shows.
        assert changed <= {'authentication_attempts{result="success"}'}, changed
        # The control: a run that is let through does show.
        target = FastHttpTarget(
            access.server, [HttpOperation("nodes", "GET", "/api/v1/nodes")], access=access
        )
        assert await send(target, [0]) == [Outcome.OK]
        final = await counters(access)
        assert final.get(LIST_NODES, 0) == after.get(LIST_NODES, 0) + 1

    asyncio.run(body())
