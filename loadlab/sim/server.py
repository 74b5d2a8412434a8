"""Run the embedded control plane: the simulated API server, then the cluster DNS that watches it.

``serve`` runs both until cancelled (tests and ``run_sim`` use it); ``run_sim`` is the blocking
foreground program: uvloop, SIGINT/SIGTERM stop it cleanly, one line says where it listens.
With ``ApiAccess`` the API serves HTTPS and asks for tokens, and the kubeconfig and token file
are written once it listens, before that line. SIGUSR1 toggles the slow-down (``degrade``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loadlab import runloop
from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.sim import tls
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.apiserver.authn import ADMIN_USER, BearerTokens, sim_identities
from loadlab.sim.config import SimConfig
from loadlab.sim.controllers.endpointslices import sync_endpoint_slices
from loadlab.sim.controllers.loops import ControlLoops
from loadlab.sim.credentials import ApiAccess, write_kubeconfig, write_private
from loadlab.sim.dns.metrics import MetricsEndpoint
from loadlab.sim.dns.nameserver import DEFAULT_TOKEN, ClusterDns
from loadlab.sim.k8s.objects import COREDNS_SERVICE_ACCOUNT, seed_objects
from loadlab.sim.promtext import METRICS_PATH
from loadlab.sim.storage.store import Store


@dataclass(frozen=True)
class SimEndpoints:
    """Where a running sim listens."""

    api_url: str
    """``http://127.0.0.1:PORT``, or ``https://`` with TLS."""
    dns_addr: str
    """``127.0.0.1:PORT`` (UDP and TCP)."""
    kubeconfig: str | None = None
    """The absolute path of the kubeconfig written (``--kubeconfig-out``), else None."""
    tokens_file: str | None = None
    """The absolute path of the static token file written (``--tokens-out``), else None."""
    dns_metrics_url: str | None = None
    """``http://127.0.0.1:PORT/metrics`` (coredns_* metrics) with ``--dns-metrics-port``."""

    def to_json(self) -> str:
        """The ready line: ``{"api", "dns"}``, plus ``kubeconfig`` / ``tokens_file`` if written
        and ``dns_metrics_url`` if served (a reader that knows only the first two keys still
        works)."""
        ready = {"api": self.api_url, "dns": self.dns_addr}
        if self.kubeconfig is not None:
            ready["kubeconfig"] = self.kubeconfig
        if self.tokens_file is not None:
            ready["tokens_file"] = self.tokens_file
        if self.dns_metrics_url is not None:
            ready["dns_metrics_url"] = self.dns_metrics_url
        return json.dumps(ready)


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
    sync_endpoint_slices(store)  # the EndpointSlice controller's first sync
    return store


async def serve(
    config: SimConfig,
    *,
    ready: Callable[[SimEndpoints], None] | None = None,
    clock: Clock | None = None,
    access: ApiAccess | None = None,
    degrade_on_sigusr1: bool = False,
) -> None:
    """Seed, start the API server, its controllers (``loadlab.sim.controllers``) and the DNS,
    call ``ready``, and run until cancelled.

    ``access`` secures the API (TLS, tokens) and names the files to write for clients;
    ``degrade_on_sigusr1`` (main thread only) makes SIGUSR1 toggle the slow-down.
    """
    clock = clock if clock is not None else MonotonicClock()
    access = access if access is not None else ApiAccess()
    access.check()
    certificate = tls.issue_serving_certificate([config.host]) if access.tls else None
    tokens = BearerTokens.issue(sim_identities(config.nodes)) if access.needs_tokens else None
    api = SimApiServer(
        config,
        seeded_store(config),
        clock=clock,
        tokens=tokens,
        ssl_context=tls.server_context(certificate) if certificate is not None else None,
    )
    await api.start()
    loops = ControlLoops(
        api.store,
        clock,
        pod_start_s=config.pod_start_s,
        first_pod_ip=config.nodes * config.pods_per_node,
    )
    loops.start()
    try:
        kubeconfig, tokens_file = _write_client_files(access, api.url, certificate, tokens)
        dns = ClusterDns(
            config.dns,
            api_url=api.url,
            clock=clock,
            api_token=(
                tokens.token_of(COREDNS_SERVICE_ACCOUNT) if tokens is not None else DEFAULT_TOKEN
            ),
            api_ssl=tls.client_context(certificate) if certificate is not None else None,
        )
        await dns.start(config.host, config.dns_port)
        dns_metrics = MetricsEndpoint(dns.metrics)
        try:
            metrics_url = None
            if config.dns.metrics_port is not None:
                await dns_metrics.start(config.host, config.dns.metrics_port)
                metrics_url = f"http://{_url_host(config.host)}:{dns_metrics.port}{METRICS_PATH}"
            with _degrade_triggers(api, config, clock, on_sigusr1=degrade_on_sigusr1):
                if ready is not None:
                    dns_addr = f"{config.host}:{dns.port}"
                    ready(SimEndpoints(api.url, dns_addr, kubeconfig, tokens_file, metrics_url))
                await asyncio.Event().wait()
        finally:
            await dns_metrics.stop()
            await dns.stop()
    finally:
        await loops.stop()
        await api.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_client_files(
    access: ApiAccess,
    api_url: str,
    certificate: tls.ServingCertificate | None,
    tokens: BearerTokens | None,
) -> tuple[str | None, str | None]:
    """Write what ``access`` asks for; (kubeconfig path, token file path), None if not asked."""
    kubeconfig = tokens_file = None
    if access.kubeconfig_out is not None and certificate is not None and tokens is not None:
        admin_token = tokens.token_of(ADMIN_USER)
        written = write_kubeconfig(
            access.kubeconfig_out, api_url, certificate.ca_pem, ADMIN_USER, admin_token
        )
        kubeconfig = str(written)
    if access.tokens_out is not None and tokens is not None:
        written = write_private(access.tokens_out, tokens.to_token_file(), what="token file")
        tokens_file = str(written)
    return kubeconfig, tokens_file


def set_degraded(api: SimApiServer, on: bool, why: str) -> None:
    """Turn the slow-down on or off, and say so in one line on stderr."""
    api.degraded = on
    extra_s = api.config.degrade.extra_latency_s
    state = (
        f"degraded ({why}): API requests wait {extra_s:g} s more, /readyz fails"
        if on
        else f"restored ({why}): API requests at full speed, /readyz ok"
    )
    print(f"loadlab sim: {state}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _degrade_triggers(
    api: SimApiServer, config: SimConfig, clock: Clock, *, on_sigusr1: bool
) -> Iterator[None]:
    """While inside: SIGUSR1 toggles the slow-down (if asked), and ``degrade.after_s`` turns it
    on by time (if set)."""
    loop = asyncio.get_running_loop()
    timer: asyncio.Task[None] | None = None
    after_s = config.degrade.after_s
    if after_s is not None:

        async def degrade_later() -> None:
            await clock.sleep_until(clock.now_ns() + int(after_s * NS_PER_S))
            set_degraded(api, True, f"degrade.after_s={after_s:g}")

        timer = asyncio.ensure_future(degrade_later())
    if on_sigusr1:
        loop.add_signal_handler(
            signal.SIGUSR1, lambda: set_degraded(api, not api.degraded, "SIGUSR1")
        )
    try:
        yield
    finally:
        if on_sigusr1:
            loop.remove_signal_handler(signal.SIGUSR1)
        if timer is not None:
            timer.cancel()


def _describe(config: SimConfig, endpoints: SimEndpoints) -> str:
    pods = config.nodes * config.pods_per_node
    if endpoints.kubeconfig is not None:
        hint = f"Try: kubectl --kubeconfig {endpoints.kubeconfig} get nodes."
    elif endpoints.api_url.startswith("https:"):
        hint = "HTTPS with a CA made now: --kubeconfig-out PATH writes a kubeconfig that trusts it."
    elif endpoints.tokens_file is not None:
        hint = (
            f"Try: kubectl --server {endpoints.api_url} --token TOKEN get nodes, "
            f"TOKEN from {endpoints.tokens_file}."
        )
    else:
        hint = f"Try: kubectl --server {endpoints.api_url} get nodes."
    return (
        f"loadlab sim: API {endpoints.api_url}, DNS {endpoints.dns_addr} (UDP+TCP); "
        f"{config.nodes} nodes, {pods} pods. {hint} Ctrl-C stops; SIGUSR1 slows the API."
    )


async def _main(config: SimConfig, ready_json: bool, access: ApiAccess) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    def announce(endpoints: SimEndpoints) -> None:
        print(endpoints.to_json() if ready_json else _describe(config, endpoints), flush=True)

    try:
        await serve(config, ready=announce, access=access, degrade_on_sigusr1=True)
    except asyncio.CancelledError:
        return  # SIGINT/SIGTERM: serve() has closed everything


def run_sim(
    config: SimConfig, *, ready_json: bool = False, access: ApiAccess | None = None
) -> None:
    """Run the sim in the foreground until SIGINT/SIGTERM (uvloop when available)."""
    runloop.raise_open_file_limit()
    runloop.run(_main(config, ready_json, access if access is not None else ApiAccess()))
