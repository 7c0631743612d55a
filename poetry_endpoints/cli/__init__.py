"""
The ``poetry-endpoints`` command line.

This package formats and prints; the library underneath never does.  Each
subcommand lives in a module of its own that provides ``add_parser`` (its
options) and ``run`` (returns the exit status).

A run imports only its own subcommand's module: the others would cost every
start (the servers for ``get``, the download machinery for ``serve``) and are
needed only for their names and summaries in ``--help``, which are below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from typing import Any, NoReturn

from ..errors import one_line
from . import status
from .output import PROG

#: Each subcommand (its module in this package has the same name) and the
#: line the top-level --help shows for it, the same as its add_parser's help
#: (tests/test_startup_imports.py checks that the two agree).
COMMANDS = {
    "get": "download poems from endpoints and URLs",
    "serve": "serve poems, one per connection",
    "demo": "watch slow loopback servers deliver every bundled poem at once",
    "proxy": "serve poems streamed from an upstream source",
}


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


def command_module(name: str) -> Any:
    """The module of the subcommand C{name} (imported now if it was not yet)."""
    return importlib.import_module(f".{name}", __name__)


def build_parser(load: Collection[str] = COMMANDS) -> argparse.ArgumentParser:
    """
    The parser for every subcommand.

    @param load: the subcommands whose options are added (their modules
        imported); the others are only listed, with their summaries, and
        cannot parse their own arguments.
    """
    parser = _Parser(
        prog=PROG,
        description="Get Poetry Now! Download poems from Twisted endpoints and URLs, "
        "or serve them.",
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        if name in load:
            command_module(name).add_parser(commands)
        else:
            commands.add_parser(name, help=summary)
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


def given_command(argv: Sequence[str]) -> str | None:
    """
    The subcommand C{argv} names, if any: its first argument that is not an
    option (the top level has only -h and --version, which take no value).
    """
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None, *, reactor: Any = None) -> None:
    """
    Parse C{argv}, run the subcommand, and exit with its status.

    @param reactor: the reactor to run the command on; by default the one
        Twisted installs.  A program (or a test) that runs several commands
        in one process gives each a fresh reactor, since a reactor runs once.
    """
    if argv is None:
        argv = sys.argv[1:]
    command = given_command(argv)
    args = build_parser(load=[command] if command else []).parse_args(argv)
    sys.exit(command_module(args.command).run(args, reactor=reactor))
