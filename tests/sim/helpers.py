"""Small helpers shared by the sim tests.

- ``run(clock, aw)``: ``asyncio.run`` ``aw`` on an autojumping ``FakeClock``.
- ``req(user, verb, ...)``: the ``RequestAttributes`` of a request.
- ``FREE_COST``: a cost config in which every request is served at once.
- ``MERGE``: headers of a JSON merge patch.
- ``run_kubectl(*args, cache=..., server=... | kubeconfig=...)``: kubectl against the sim, never
  the user's own kubeconfig; ``kubectl_argv``, ``kubectl_env`` for a kubectl that keeps running;
  ``KUBECTL`` (None when not installed) and the ``kubectl_installed`` skip mark.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from loadlab.clock import FakeClock
from loadlab.sim.overload.cost import RequestAttributes

T = TypeVar("T")

KUBECTL = shutil.which("kubectl")
KUBECTL_TIMEOUT_S = 30.0
"""A kubectl run against the sim on loopback: discovery and one request take well under this."""
kubectl_installed = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)"
)

MERGE = {"Content-Type": "application/merge-patch+json"}
FREE_COST: dict[str, float] = {
    "get_hold_s": 0,
    "cache_object_s": 0,
    "etcd_object_s": 0,
    "etcd_commit_s": 0,
    "etcd_get_s": 0,
    "watcher_hold_s": 0,
}
"""``overload.cost`` overrides that make every request's service time zero."""


def run(clock: FakeClock, aw: Awaitable[T]) -> T:
    """``asyncio.run`` ``aw`` with ``clock`` jumping to the next deadline whenever all wait."""

    async def main() -> T:
        return await clock.run(aw)

    return asyncio.run(main())


def req(
    user: str,
    verb: str = "get",
    resource: str = "pods",
    *,
    namespace: str | None = None,
    groups: tuple[str, ...] = (),
    long_running: bool = False,
) -> RequestAttributes:
    """A request of ``user`` (no subresource, no name)."""
    return RequestAttributes(
        user=user,
        groups=groups,
        verb=verb,
        resource=resource,
        subresource=None,
        namespace=namespace,
        name=None,
        long_running=long_running,
    )


def kubectl_argv(
    *args: str, cache: Path, server: str | None = None, kubeconfig: Path | None = None
) -> list[str]:
    """kubectl ``args`` against the sim at ``server`` (no credentials) or through ``kubeconfig``,
    with its discovery cache in ``cache``."""
    assert KUBECTL is not None
    where = (
        ["--kubeconfig", str(kubeconfig)] if kubeconfig is not None else ["--server", str(server)]
    )
    return [KUBECTL, *where, "--cache-dir", str(cache), *args]


def kubectl_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, but no kubeconfig of the user's (KUBECONFIG=/dev/null), plus ``extra``."""
    return {**os.environ, "KUBECONFIG": "/dev/null", **(extra or {})}


def run_kubectl(
    *args: str,
    cache: Path,
    server: str | None = None,
    kubeconfig: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl_argv(...)`` to its end; the caller judges the exit code."""
    return subprocess.run(
        kubectl_argv(*args, cache=cache, server=server, kubeconfig=kubeconfig),
        env=kubectl_env(env),
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
