"""``poetry-endpoints proxy``: not yet written (see the issue "Fit the Twisted ecosystem")."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``proxy`` subcommand."""
    commands.add_parser("proxy", help="(not yet available)")


def run(args: argparse.Namespace) -> int:
    """Not yet available."""
    print("poetry-endpoints proxy: not yet available", flush=True)
    return 2
