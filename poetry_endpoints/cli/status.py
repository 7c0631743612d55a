"""The exit statuses of every subcommand: what scripts branch on."""

from __future__ import annotations

from typing import Final

OK: Final = 0
"""Every source delivered; a server stopped by SIGINT or SIGTERM."""
FAILED: Final = 1
"""At least one source failed; a server could not listen."""
USAGE: Final = 2
"""A usage error or an invalid source: nothing was fetched or served."""


def interrupted(signum: int) -> int:
    """The status of a command stopped by signal C{signum}: 130 for SIGINT, as shells do."""
    return 128 + signum
