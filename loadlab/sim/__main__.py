"""``python -m loadlab.sim``: the embedded control plane as a standalone program."""

from __future__ import annotations

import sys

from loadlab.sim import lifeline

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    # First, before the imports below (pydantic, aiohttp: a quarter of a second) and the seeding
    # (seconds at 5,000 nodes): a loadlab killed meanwhile must still take this sim with it.
    lifeline.hold_from_environment()

    import argparse

    from loadlab.errors import LoadlabError
    from loadlab.sim.cli import add_sim_arguments, sim_command

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
