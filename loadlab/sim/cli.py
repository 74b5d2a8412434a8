"""Command-line handling of the sim, shared by ``python -m loadlab.sim`` and ``loadlab sim``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadlab.errors import UsageError
from loadlab.sim.config import SimConfig, is_loopback_host, load_sim_config, sim_config_from_dict
from loadlab.sim.credentials import CONTEXT, ApiAccess

SLOW_DOWN_HELP = (
    "Slowing the sim down mid-run: send it SIGUSR1 (kill -USR1 PID) and every API request but "
    "the health paths and /metrics waits degrade.extra_latency_s more (sim config, default 2 s) "
    "while /readyz answers 500 listing the failed check loadlab-degraded; a second SIGUSR1 "
    "restores it. In the sim config, degrade: {after_s: N} turns it on N seconds after the sim "
    "is ready, without a signal. Each change is one line on stderr."
)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """The sim's options; anything not given comes from --config, then from SimConfig defaults."""
    parser.add_argument("--nodes", type=int, help="nodes to seed (default 100)")
    parser.add_argument("--pods-per-node", type=int, help="pods per node (default 10)")
    parser.add_argument("--services", type=int, help="services with endpoints (default 20)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--api-port", type=int, help="API server port, 0 = any (default 6443)")
    parser.add_argument("--dns-port", type=int, help="DNS port, UDP+TCP, 0 = any (default 1053)")
    parser.add_argument(
        "--dns-metrics-port",
        type=int,
        help="serve the DNS's coredns_* Prometheus metrics on this port, 0 = any (default: off; "
        "CoreDNS uses 9153)",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of sim settings")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --host (or config host) beyond loopback: the sim's DNS has no "
        "authentication, nor its API without --tls or --tokens",
    )
    parser.add_argument(
        "--ready-json",
        action="store_true",
        help='print one JSON line {"api": URL, "dns": HOST:PORT} when ready (for programs), '
        'with "kubeconfig" and "tokens_file" when written',
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve the API over HTTPS with a CA made at start (1 day, loopback names); "
        "implies --tokens",
    )
    parser.add_argument(
        "--tokens",
        action="store_true",
        help="refuse API requests without a known bearer token (401); one token each for the "
        "admin, every node (system:node:node-<i>) and the telemetry service account; the health "
        "paths stay open",
    )
    parser.add_argument(
        "--tokens-out",
        metavar="PATH",
        type=Path,
        help='write the tokens as a kube-apiserver static token file (token,user,uid,"groups"; '
        "mode 0600)",
    )
    parser.add_argument(
        "--kubeconfig-out",
        metavar="PATH",
        type=Path,
        help=f"with --tls: write a kubeconfig (context {CONTEXT}, the admin's token, the CA; "
        "mode 0600) once the API listens",
    )
    parser.epilog = SLOW_DOWN_HELP


_FLAGS = ("nodes", "pods_per_node", "services", "host", "api_port", "dns_port")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """SimConfig from --config (if any) with the command-line flags on top."""
    base = load_sim_config(args.config) if getattr(args, "config", None) else SimConfig()
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None
    }
    metrics_port = getattr(args, "dns_metrics_port", None)
    if metrics_port is not None:
        overrides["dns"] = {**base.dns.model_dump(), "metrics_port": metrics_port}
    if not overrides:
        return base
    return sim_config_from_dict({**base.model_dump(), **overrides}, source="command line")


def access_from_args(args: argparse.Namespace) -> ApiAccess:
    """ApiAccess from --tls, --tokens, --tokens-out, --kubeconfig-out; ``UsageError`` if they
    do not fit together."""
    access = ApiAccess(
        tls=bool(getattr(args, "tls", False)),
        tokens=bool(getattr(args, "tokens", False)),
        tokens_out=getattr(args, "tokens_out", None),
        kubeconfig_out=getattr(args, "kubeconfig_out", None),
    )
    access.check()
    return access


def check_listen_host(host: str, *, allow_non_loopback: bool) -> str | None:
    """None if ``host`` is loopback; else the warning to print if allowed, or ``UsageError``.

    The sim's DNS has no authentication, nor its API without --tokens or --tls, so listening
    beyond loopback must be asked for explicitly, whether the host came from --host or from the
    config file.
    """
    if is_loopback_host(host):
        return None
    if not allow_non_loopback:
        raise UsageError(
            f"the sim would listen on {host}, beyond loopback, with an unauthenticated DNS (and "
            "API, unless --tls or --tokens); "
            "use --host 127.0.0.1, or add --allow-non-loopback if you mean it"
        )
    return (
        f"loadlab sim: warning: listening on {host}, beyond loopback: anyone who can reach "
        "this machine can use the sim's API and DNS"
    )


def sim_command(args: argparse.Namespace) -> int:
    """``loadlab sim``: run in the foreground until Ctrl-C."""
    from loadlab.sim.server import run_sim

    config = config_from_args(args)
    access = access_from_args(args)
    warning = check_listen_host(
        config.host, allow_non_loopback=bool(getattr(args, "allow_non_loopback", False))
    )
    if warning is not None:
        print(warning, file=sys.stderr)
    run_sim(config, ready_json=bool(getattr(args, "ready_json", False)), access=access)
    return 0
