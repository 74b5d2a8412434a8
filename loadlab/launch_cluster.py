"""Where a run's load goes, decided before anything connects: the embedded control plane, a
loopback server, or a real cluster (a kubeconfig context, or an ``--api`` outside loopback that
was allowlisted).

Against a real cluster a run behaves as a guest: the context must be allowlisted, its objects go
into its own namespace with its label and are deleted when it ends, its load is capped
(``limits``), Retry-After is honoured, a request mix may write only inside its namespace, and
the rails (``loadlab.cluster.rails``) stop it when the cluster shows distress.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadlab.cluster.objects import AdminClient, cleanup, create_run_namespace
from loadlab.cluster.settings import CLUSTER_MAX_CONNECTIONS, CLUSTER_MAX_RATE_PER_S
from loadlab.errors import ProfileError, TargetUnreachable
from loadlab.profile import Profile
from loadlab.profile_fields import HttpOp
from loadlab.targets.address import is_loopback, loopback_targets, parse_server_url
from loadlab.targets.cluster import (
    AccessRecipe,
    ClusterAccess,
    api_access,
    load_kubeconfig,
    with_token_file,
)

RUN_NAMESPACE_PLACEHOLDER = "{run_namespace}"


@dataclass(frozen=True)
class ClusterArgs:
    """The command line's real-cluster flags."""

    kubeconfig: Path | None = None
    context: str | None = None
    allow_contexts: tuple[str, ...] = ()
    allow_api: tuple[str, ...] = ()
    allow_dns: tuple[str, ...] = ()
    tokens_file: Path | None = None

    @property
    def names_a_context(self) -> bool:
        return self.kubeconfig is not None or self.context is not None or bool(self.allow_contexts)


@dataclass(frozen=True)
class Targets:
    """A run's targets as used. ``access`` is None for the embedded control plane."""

    access: ClusterAccess | None
    api_url: str | None
    dns_addr: str | None
    real: bool
    """A real cluster: rails on by default, caps, Retry-After honoured, a run namespace."""
    recipe: AccessRecipe | None = None
    """How a worker process rebuilds ``access`` for itself (None: nothing to rebuild)."""

    @property
    def context_line(self) -> str:
        return self.access.source if self.access is not None else ""


async def resolve_targets(
    profile: Profile, *, api: str | None, dns: str | None, cluster: ClusterArgs
) -> Targets:
    """Check every address and allowlist, read the kubeconfig; connect to nothing."""
    allowed = (*cluster.allow_contexts, *profile.allow_contexts)
    if cluster.names_a_context:
        if api is not None:
            raise ProfileError("give either --api or a kubeconfig context, not both")
        access = await load_kubeconfig(cluster.kubeconfig, cluster.context, allow_contexts=allowed)
        _, dns_addr = loopback_targets(None, dns, allow_dns=cluster.allow_dns)
        access = _with_tokens(access, cluster.tokens_file)
        recipe = AccessRecipe(
            kubeconfig=str(cluster.kubeconfig) if cluster.kubeconfig is not None else None,
            context=access.context,
            allow_contexts=tuple(allowed),
            tokens_file=str(cluster.tokens_file) if cluster.tokens_file is not None else None,
        )
        return Targets(access, access.server, dns_addr, real=True, recipe=recipe)
    api_url, dns_addr = loopback_targets(
        api, dns, allow_api=cluster.allow_api, allow_dns=cluster.allow_dns
    )
    if cluster.tokens_file is not None and api_url is None:
        raise ProfileError("--tokens-file needs a target: --api URL or a kubeconfig context")
    if api_url is None:
        return Targets(None, None, dns_addr, real=False)
    real = not is_loopback(parse_server_url(api_url, what="--api").connect_host)
    access = _with_tokens(api_access(api_url), cluster.tokens_file)
    tokens = None
    if cluster.tokens_file is not None:
        tokens = AccessRecipe(api=api_url, tokens_file=str(cluster.tokens_file))
    return Targets(access, api_url, dns_addr, real=real, recipe=tokens)


def _with_tokens(access: ClusterAccess, path: Path | None) -> ClusterAccess:
    if path is None:
        return access
    from loadlab.targets.credentials import read_token_file

    return with_token_file(access, read_token_file(path))


def rails_on(profile: Profile, targets: Targets) -> bool:
    enabled = profile.abort.enabled
    return targets.real if enabled is None else enabled and targets.access is not None


def max_rate_per_s(profile: Profile, targets: Targets) -> float | None:
    cap = profile.limits.max_rate_per_s
    return cap if cap is not None else (CLUSTER_MAX_RATE_PER_S if targets.real else None)


def max_connections(profile: Profile, targets: Targets) -> int | None:
    cap = profile.limits.max_connections
    return cap if cap is not None else (CLUSTER_MAX_CONNECTIONS if targets.real else None)


def check_request_mix(profile: Profile, targets: Targets, run_namespace: str) -> Profile:
    """A request mix (``api.mix``, or an agent scenario's ``agents.mix``) against a real cluster:
    every write inside the run's namespace (``{run_namespace}`` in the path): a mix that PUTs
    ``kube-node-lease/leases/node-1`` would overwrite a real node's lease. Returns the profile
    with the placeholder filled in (against any target, so one profile runs everywhere), and
    checks the caps of a request mix's rate and connections."""
    if profile.api is not None:
        mix = _fill_mix(profile, profile.api.mix, "api.mix", targets, run_namespace)
        profile = profile.model_copy(update={"api": profile.api.model_copy(update={"mix": mix})})
    agents = profile.agents
    if agents is not None and agents.mix is not None:
        mix = _fill_mix(profile, agents.mix.mix, "agents.mix.mix", targets, run_namespace)
        section = agents.mix.model_copy(update={"mix": mix})
        profile = profile.model_copy(update={"agents": agents.model_copy(update={"mix": section})})
    _check_caps(profile, targets)
    return profile


def _fill_mix(
    profile: Profile,
    ops: Sequence[HttpOp],
    field: str,
    targets: Targets,
    run_namespace: str,
) -> tuple[HttpOp, ...]:
    filled = []
    for op in ops:
        path = op.path.replace(RUN_NAMESPACE_PLACEHOLDER, run_namespace)
        inside = f"/namespaces/{run_namespace}/" in path or path.endswith(
            f"/namespaces/{run_namespace}"
        )
        if targets.real and op.method != "GET" and not inside:
            raise ProfileError(
                f"profile {profile.name}: {field} {op.name} ({op.method} {op.path}) writes "
                f"outside the run's namespace on a real cluster; put "
                f"{RUN_NAMESPACE_PLACEHOLDER} in its path (/namespaces/{{run_namespace}}/...)"
            )
        filled.append(op.model_copy(update={"path": path}))
    return tuple(filled)


def _check_caps(profile: Profile, targets: Targets) -> None:
    rate_cap = max_rate_per_s(profile, targets)
    conn_cap = max_connections(profile, targets)
    if profile.api is not None and conn_cap is not None and profile.api.connections > conn_cap:
        raise ProfileError(
            f"profile {profile.name}: api.connections {profile.api.connections:,} is over the "
            f"cap of {conn_cap:,} (limits.max_connections)"
        )
    load = profile.load
    if load is None or rate_cap is None:
        return
    if load.ramp is not None and load.ramp.max_per_s > rate_cap:
        raise ProfileError(
            f"profile {profile.name}: load.ramp.max_per_s {load.ramp.max_per_s:,.0f} is over the "
            f"cap of {rate_cap:,.0f}/s (limits.max_rate_per_s); lower it, or raise the cap "
            "knowing the cluster can take it"
        )
    if load.rate_per_s is not None and load.rate_per_s > rate_cap:
        raise ProfileError(
            f"profile {profile.name}: load.rate_per_s {load.rate_per_s:,.0f} is over the cap of "
            f"{rate_cap:,.0f}/s (limits.max_rate_per_s)"
        )


def check_agent_caps(profile: Profile, targets: Targets, sizes: Sequence[int], pool: int) -> None:
    """A sweep's connections (a watch per kubelet, plus the shared pool) within the cap."""
    cap = max_connections(profile, targets)
    agents = profile.agents
    if cap is None or agents is None or agents.kubelet is None:
        return
    needed = max(sizes) + pool
    if needed > cap:
        raise ProfileError(
            f"profile {profile.name}: {max(sizes):,} nodes need {needed:,} connections (a watch "
            f"each, plus {pool} shared), over the cap of {cap:,} (limits.max_connections)"
        )


def _admin(access: ClusterAccess) -> AdminClient:
    auth = access.credentials.authorization(None)
    return AdminClient(
        access.server,
        ssl_context=access.ssl,
        headers={"Authorization": auth} if auth else {},
        server_hostname=access.tls_server_name,
    )


async def open_run_namespace(targets: Targets, run_id: str) -> str:
    assert targets.access is not None
    async with _admin(targets.access) as client:
        return await create_run_namespace(client, run_id)


async def close_run_namespace(targets: Targets, run_id: str) -> None:
    """Delete what the run labelled, and say so in one line (with what to run if it could
    not delete everything)."""
    assert targets.access is not None
    finish = f"finish with: loadlab cleanup --run {run_id}"
    try:
        async with _admin(targets.access) as client:
            done = await cleanup(client, run_id)
    except TargetUnreachable as exc:  # the run's own verdict stands; the cleanup is owed
        print(f"cleanup of run {run_id} failed ({exc}); {finish}", file=sys.stdout)
        return
    print(done.line(f"run {run_id}") + (f"; {finish}" if done.failed else ""), file=sys.stdout)


@contextlib.asynccontextmanager
async def run_namespace(targets: Targets, run_id: str) -> AsyncIterator[str | None]:
    """The run's namespace on a real cluster, created before the load and, with everything the
    run labelled, deleted after it, whatever ended the run (a second Ctrl-C during cleanup exits
    at once; ``loadlab cleanup --run ID`` finishes the job). None against anything else."""
    if not targets.real or targets.access is None:
        yield None
        return
    async with _admin(targets.access) as client:
        namespace = await create_run_namespace(client, run_id)
    try:
        yield namespace
    finally:
        await close_run_namespace(targets, run_id)
