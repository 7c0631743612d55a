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
from typing import Any, NoReturn

from ..errors import one_line
from . import demo, get, proxy, serve, status
from .output import PROG

COMMANDS = {"get": get, "serve": serve, "demo": demo, "proxy": proxy}


class _Parser(argparse.ArgumentParser):
    """
    An C{ArgumentParser} whose usage errors are one line, and for which
    ``--opt=--`` is a usage error, not an empty list.
    """

    def error(self, message: str) -> NoReturn:
        # One line naming the option and the reason, as every other error of
        # the command line is; the usage synopsis is a --help away.
        self.exit(status.USAGE, one_line(f"{self.prog}: error: {message} (see --help)") + "\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python before 3.12 strips the "--" of "--max-bytes=--" and returns [],
        # unchecked by the option's type, which later failed with a traceback.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Get Poetry Now! Download poems from Twisted endpoints and URLs, "
        "or serve them.",
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(commands)
    # After a subcommand too ("get --version"), where a user reaches for it
    # as often as before one; it answers the same line.
    for subparser in commands.choices.values():
        _add_version(subparser)
    return parser


class _Version(argparse.Action):
    """
    argparse's C{action="version"}, but the version is read only when asked
    for: reading it (importlib.metadata) costs every other run.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        from .. import __version__

        try:  # as argparse's own: a stdout that is gone is not an error
            sys.stdout.write(f"{PROG} {__version__}\n")
        except (AttributeError, OSError):
            pass
        parser.exit()


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_Version, help="print the version and exit")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse C{argv}, run the subcommand, and exit with its status."""
    args = build_parser().parse_args(argv)
    sys.exit(COMMANDS[args.command].run(args))
