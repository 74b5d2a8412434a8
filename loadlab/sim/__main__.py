"""``python -m loadlab.sim``: the embedded control plane as a standalone program."""

from __future__ import annotations

import argparse
import sys

from loadlab.errors import LoadlabError
from loadlab.sim.cli import add_sim_arguments, config_from_args, sim_command

__all__ = ["add_sim_arguments", "config_from_args", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadlab.sim",
        description="Run the simulated kube-apiserver and cluster DNS on loopback until Ctrl-C.",
    )
    add_sim_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return sim_command(args)
    except LoadlabError as exc:
        print(f"loadlab sim: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
