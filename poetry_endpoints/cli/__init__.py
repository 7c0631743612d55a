"""
The ``poetry-endpoints`` command line.

This package formats and prints; the library underneath never does.  Each
subcommand lives in a module of its own that provides ``add_parser`` (its
options) and ``run`` (returns the exit status).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import demo, get, proxy, serve

COMMANDS = {"get": get, "serve": serve, "demo": demo, "proxy": proxy}


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="poetry-endpoints",
        description="Get Poetry Now! Download poems from Twisted endpoints and URLs, "
        "or serve them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse C{argv}, run the subcommand, and exit with its status."""
    args = build_parser().parse_args(argv)
    sys.exit(COMMANDS[args.command].run(args))
