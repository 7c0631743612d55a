"""``poetry-endpoints demo``: not yet written (see the issue that builds the command line)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``demo`` subcommand."""
    commands.add_parser("demo", help="(not yet available)")


def run(args: argparse.Namespace) -> int:
    """Not yet available."""
    print("poetry-endpoints demo: not yet available", flush=True)
    return 2
