"""Command-line handling of the sim, shared by ``python -m loadlab.sim`` and ``loadlab sim``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loadlab.errors import UsageError
from loadlab.sim.config import SimConfig, is_loopback_host, load_sim_config, sim_config_from_dict


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """The sim's options; anything not given comes from --config, then from SimConfig defaults."""
    parser.add_argument("--nodes", type=int, help="nodes to seed (default 100)")
    parser.add_argument("--pods-per-node", type=int, help="pods per node (default 10)")
    parser.add_argument("--services", type=int, help="services with endpoints (default 20)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--api-port", type=int, help="API server port, 0 = any (default 6443)")
    parser.add_argument("--dns-port", type=int, help="DNS port, UDP+TCP, 0 = any (default 1053)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of sim settings")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --host (or config host) beyond loopback: the sim's API has no authentication",
    )
    parser.add_argument(
        "--ready-json",
        action="store_true",
        help='print one JSON line {"api": URL, "dns": HOST:PORT} when ready (for programs)',
    )


_FLAGS = ("nodes", "pods_per_node", "services", "host", "api_port", "dns_port")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """SimConfig from --config (if any) with the command-line flags on top."""
    base = load_sim_config(args.config) if getattr(args, "config", None) else SimConfig()
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None
    }
    if not overrides:
        return base
    return sim_config_from_dict({**base.model_dump(), **overrides}, source="command line")


def check_listen_host(host: str, *, allow_non_loopback: bool) -> str | None:
    """None if ``host`` is loopback; else the warning to print if allowed, or ``UsageError``.

    The sim serves an API and DNS without authentication, so listening beyond loopback must be
    asked for explicitly, whether the host came from --host or from the config file.
    """
    if is_loopback_host(host):
        return None
    if not allow_non_loopback:
        raise UsageError(
            f"the sim would listen on {host}, beyond loopback, with an unauthenticated API; "
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
    warning = check_listen_host(
        config.host, allow_non_loopback=bool(getattr(args, "allow_non_loopback", False))
    )
    if warning is not None:
        print(warning, file=sys.stderr)
    run_sim(config, ready_json=bool(getattr(args, "ready_json", False)))
    return 0
