"""``loadlab cleanup``: delete what runs left in a cluster, found by their label.

A run deletes its own objects when it ends, also on Ctrl-C, SIGTERM and internal errors. Only a
run killed with SIGKILL (or a machine that died) leaves objects behind; they carry
``loadlab.io/run=<run id>``, so this finds them without any record of the run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from loadlab import runloop
from loadlab.cluster.objects import AdminClient, cleanup
from loadlab.errors import EXIT_OK, EXIT_SLO_FAILED, UsageError
from loadlab.targets.address import loopback_targets
from loadlab.targets.base import PROBE_TIMEOUT_S
from loadlab.targets.cluster import ClusterAccess, api_access, load_kubeconfig
from loadlab.targets.http import probe_http


def cleanup_command(
    *,
    run_id: str | None,
    all_runs: bool,
    kubeconfig: Path | None,
    context: str | None,
    allow_contexts: Sequence[str],
    api: str | None,
) -> int:
    """Exit 0 when nothing of the runs is left, 1 when something could not be deleted."""
    if (run_id is None) == (not all_runs):
        raise UsageError("cleanup: name one run with --run ID, or every run with --all")
    return runloop.run(_cleanup(run_id, kubeconfig, context, allow_contexts, api))


async def _cleanup(
    run_id: str | None,
    kubeconfig: Path | None,
    context: str | None,
    allow_contexts: Sequence[str],
    api: str | None,
) -> int:
    access = await cluster_access(kubeconfig, context, allow_contexts, api)
    await probe_http(access.server, PROBE_TIMEOUT_S, access=access)
    auth = access.credentials.authorization(None)
    headers = {"Authorization": auth} if auth else {}
    async with AdminClient(
        access.server,
        ssl_context=access.ssl,
        headers=headers,
        server_hostname=access.tls_server_name,
    ) as client:
        done = await cleanup(client, run_id)
    what = f"run {run_id}" if run_id is not None else "every loadlab run"
    print(f"{done.line(what)} ({access.source})", file=sys.stdout)
    return EXIT_SLO_FAILED if done.failed else EXIT_OK


async def cluster_access(
    kubeconfig: Path | None,
    context: str | None,
    allow_contexts: Sequence[str],
    api: str | None,
) -> ClusterAccess:
    """The target named by ``--api`` (loopback, the sim's identity convention) or by a
    kubeconfig context, which must be allowlisted; nothing is contacted before the check."""
    if api is not None:
        if kubeconfig is not None or context is not None:
            raise UsageError("give either --api or --kubeconfig/--context, not both")
        url, _ = loopback_targets(api, None)
        assert url is not None
        return api_access(url)
    return await load_kubeconfig(kubeconfig, context, allow_contexts=allow_contexts)
