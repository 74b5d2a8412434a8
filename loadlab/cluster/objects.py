"""A run's own objects in the cluster: its namespace, the label on everything it creates, and
their cleanup, at the end of the run or later (``loadlab cleanup``) for a run that was killed.

Everything a run creates carries ``loadlab.io/run=<run id>``; its leases live in its namespace
``loadlab-<run id>``. Cleanup finds objects by that label, not by memory, so a run killed with
SIGKILL is cleaned up as completely as one that ended: every labelled object of the kinds a run
creates is deleted one by one (a namespace's deletion cascades on a real cluster, not
necessarily on others), then the labelled namespaces.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadlab.errors import TargetUnreachable

RUN_LABEL = "loadlab.io/run"
CLEANUP_TIMEOUT_S = 30.0
"""Per request: cleanup runs when the cluster may be struggling (that may be why the run ended)."""
LABELLED_KINDS = (
    ("leases", "/apis/coordination.k8s.io/v1/leases"),
    ("configmaps", "/api/v1/configmaps"),
    ("nodes", "/api/v1/nodes"),
)
"""What a run may create, by the cluster-wide path that lists it; namespaces come last."""
NAMESPACES = "/api/v1/namespaces"
NAMESPACE_GONE_S = 60.0
"""How long cleanup waits for its namespaces to finish terminating (a real cluster deletes what
is in them first; the embedded one takes about a second)."""
NAMESPACE_POLL_S = 0.5
"""Between looks at the terminating namespaces: a second's wait at most beyond their going, at
two cheap LISTs a second."""
DELETE_BATCH = 16
"""Deletes in flight at once: a 2,000-node run's leases go in seconds, not a minute, without a
burst a struggling API server would feel (the client holds at most 4 connections)."""


def run_namespace(run_id: str) -> str:
    return f"loadlab-{run_id}"


@dataclass
class Cleanup:
    """What a cleanup deleted, by kind, and what it could not."""

    deleted: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def line(self, what: str) -> str:
        if not self.total and not self.failed:
            return f"cleanup of {what}: nothing left to delete"
        parts = [f"{n:,} {kind}" for kind, n in self.deleted.items() if n]
        done = f"deleted {', '.join(parts)}" if parts else "deleted nothing"
        if self.failed:
            shown = "; ".join(self.failed[:3])
            return f"cleanup of {what}: {done}; could not delete {len(self.failed):,}: {shown}"
        return f"cleanup of {what}: {done}"


class AdminClient:
    """JSON over HTTP(S) as the kubeconfig's own identity, for the run's bookkeeping: a small
    client of its own, apart from the load's connection pool."""

    def __init__(
        self,
        server: str,
        *,
        ssl_context: ssl.SSLContext | None,
        headers: Mapping[str, str],
        server_hostname: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._server_hostname = server_hostname
        self._ssl = ssl_context
        self._headers = {"Accept": "application/json", **headers}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        connector = aiohttp.TCPConnector(limit=4, ssl=self._ssl if self._ssl else False)
        self._http = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=CLEANUP_TIMEOUT_S),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self._http is not None, "use AdminClient as an async context manager"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._http.request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers=headers,
                server_hostname=self._server_hostname,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TargetUnreachable(
                f"{self.server}: {method} {path} failed ({type(exc).__name__}: {exc})"
            ) from None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


async def create_run_namespace(client: AdminClient, run_id: str) -> str:
    """Create ``loadlab-<run id>``, labelled; an existing one (a retried run) is fine."""
    name = run_namespace(run_id)
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {RUN_LABEL: run_id}},
    }
    status, answer = await client.request("POST", NAMESPACES, body)
    if status not in (200, 201, 409):
        why = (answer or {}).get("message") if isinstance(answer, dict) else None
        raise TargetUnreachable(
            f"{client.server}: cannot create namespace {name} ({status}"
            + (f": {why}" if why else "")
            + "); the run needs it for its leases"
        )
    return name


async def cleanup(client: AdminClient, run_id: str | None) -> Cleanup:
    """Delete every object labelled with ``run_id`` (None: with any run id), then the
    namespaces so labelled."""
    selector = f"{RUN_LABEL}={run_id}" if run_id is not None else RUN_LABEL
    done = Cleanup()
    for kind, path in (*LABELLED_KINDS, ("namespaces", NAMESPACES)):
        status, answer = await client.request("GET", path, params={"labelSelector": selector})
        if status != 200 or not isinstance(answer, dict):
            done.failed.append(f"listing {kind} answered {status}")
            continue
        items = answer.get("items") or []
        for start in range(0, len(items), DELETE_BATCH):
            batch = items[start : start + DELETE_BATCH]
            codes = await asyncio.gather(*(_delete(client, path, item) for item in batch))
            for item, code in zip(batch, codes, strict=True):
                if code in (200, 202, 404):  # 404: gone already (a namespace took it along)
                    done.deleted[kind] = done.deleted.get(kind, 0) + (code != 404)
                else:
                    meta = item.get("metadata") or {}
                    ns = meta.get("namespace")
                    name = meta.get("name", "")
                    done.failed.append(f"{kind} {ns + '/' if ns else ''}{name} ({code})")
    await _wait_namespaces_gone(client, selector, done)
    return done


async def _wait_namespaces_gone(client: AdminClient, selector: str, done: Cleanup) -> None:
    """A deleted namespace lingers as Terminating while the cluster deletes what is in it;
    cleanup is done when it is gone, so wait for that, a bounded while."""
    deadline = asyncio.get_running_loop().time() + NAMESPACE_GONE_S
    while True:
        status, answer = await client.request("GET", NAMESPACES, params={"labelSelector": selector})
        items = answer.get("items") if status == 200 and isinstance(answer, dict) else None
        if items == []:
            return
        if items is None:  # the list itself fails: waiting would not learn anything
            done.failed.append(f"listing namespaces answered {status}")
            return
        if asyncio.get_running_loop().time() >= deadline:
            left = ", ".join(str((i.get("metadata") or {}).get("name")) for i in items)
            done.failed.append(f"namespaces still terminating after {NAMESPACE_GONE_S:g} s: {left}")
            return
        await asyncio.sleep(NAMESPACE_POLL_S)


async def _delete(client: AdminClient, list_path: str, item: dict[str, Any]) -> int:
    meta = item.get("metadata") or {}
    code, _ = await client.request(
        "DELETE", _object_path(list_path, meta.get("namespace"), meta.get("name", ""))
    )
    return code


def _object_path(list_path: str, namespace: str | None, name: str) -> str:
    """The object's own path from the cluster-wide list path it was found under."""
    if namespace is None:
        return f"{list_path}/{name}"
    prefix, _, resource = list_path.rpartition("/")
    return f"{prefix}/namespaces/{namespace}/{resource}/{name}"
