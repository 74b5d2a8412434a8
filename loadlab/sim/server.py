"""Run the embedded control plane: the simulated API server, then the cluster DNS that watches it.

``serve`` runs both until cancelled (tests and ``run_sim`` use it); ``run_sim`` is the blocking
foreground program: uvloop, SIGINT/SIGTERM stop it cleanly, one line says where it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass

from loadlab import runloop
from loadlab.clock import Clock, MonotonicClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.config import SimConfig
from loadlab.sim.dns.nameserver import ClusterDns
from loadlab.sim.k8s.objects import seed_objects
from loadlab.sim.storage.store import Store


@dataclass(frozen=True)
class SimEndpoints:
    """Where a running sim listens."""

    api_url: str
    """``http://127.0.0.1:PORT``"""
    dns_addr: str
    """``127.0.0.1:PORT`` (UDP and TCP)."""

    def to_json(self) -> str:
        return json.dumps({"api": self.api_url, "dns": self.dns_addr})


def seeded_store(config: SimConfig) -> Store:
    """A store holding the cluster ``config`` describes (nodes, leases, pods, services...)."""
    store = Store(
        event_window=config.api.event_window, watch_queue_limit=config.api.watch_queue_limit
    )
    store.load(
        seed_objects(
            nodes=config.nodes,
            pods_per_node=config.pods_per_node,
            namespaces=config.namespaces,
            services=config.services,
            endpoints_per_service=config.endpoints_per_service,
            headless_services=config.headless_services,
            api_port=config.api_port,
        )
    )
    return store


async def serve(
    config: SimConfig,
    *,
    ready: Callable[[SimEndpoints], None] | None = None,
    clock: Clock | None = None,
) -> None:
    """Seed, start the API server and the DNS, call ``ready``, and run until cancelled."""
    clock = clock if clock is not None else MonotonicClock()
    api = SimApiServer(config, seeded_store(config), clock=clock)
    await api.start()
    try:
        dns = ClusterDns(config.dns, api_url=api.url, clock=clock)
        await dns.start(config.host, config.dns_port)
        try:
            if ready is not None:
                ready(SimEndpoints(api.url, f"{config.host}:{dns.port}"))
            await asyncio.Event().wait()
        finally:
            await dns.stop()
    finally:
        await api.stop()


def _describe(config: SimConfig, endpoints: SimEndpoints) -> str:
    pods = config.nodes * config.pods_per_node
    return (
        f"loadlab sim: API {endpoints.api_url}, DNS {endpoints.dns_addr} (UDP+TCP); "
        f"{config.nodes} nodes, {pods} pods. "
        f"Try: kubectl --server {endpoints.api_url} get nodes. Ctrl-C stops."
    )


async def _main(config: SimConfig, ready_json: bool) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    def announce(endpoints: SimEndpoints) -> None:
        print(endpoints.to_json() if ready_json else _describe(config, endpoints), flush=True)

    try:
        await serve(config, ready=announce)
    except asyncio.CancelledError:
        return  # SIGINT/SIGTERM: serve() has closed everything


def run_sim(config: SimConfig, *, ready_json: bool = False) -> None:
    """Run the sim in the foreground until SIGINT/SIGTERM (uvloop when available)."""
    raise_open_file_limit()
    runloop.run(_main(config, ready_json))


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit and return it: every watch of a
    simulated node holds a connection, and 10,000 nodes need more than the usual soft 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft
