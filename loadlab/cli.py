"""Command line: argument parsing and wiring only."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loadlab`` console script."""
    del argv
    print("loadlab: not wired yet", file=sys.stderr)
    return 2
