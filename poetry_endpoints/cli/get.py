"""``poetry-endpoints get [OPTIONS] SOURCE...``: download poems."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import options
from ..client import PoetryClient
from ..defaults import DEFAULT_CONCURRENCY, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BYTES
from ..errors import PoetryError
from ..sources import ACCEPTED_FORMS, Source
from . import runner, status
from .fetch import Fetch, Presentation, close_idle
from .inputs import InputError, Listed, read_source_list
from .output import PROG, DirectoryOutput, FileOutput, describe_os_error, one_line

DESCRIPTION = """\
Download a poem from each SOURCE, all at once, and print them in the order
given.  A SOURCE is an http(s):// URL, a Twisted client endpoint description
(tcp:HOST:PORT, unix:PATH, tls:HOST:PORT, ...), HOST:PORT, [IPV6]:PORT or a
bare PORT on localhost.  Every SOURCE is checked before anything connects.
"""

EPILOG = """\
Each failure is one line on stderr: "poetry-endpoints: SOURCE: REASON [KIND]".
Exit status: 0 every poem delivered, 1 at least one failed, 2 usage error or
invalid source (nothing fetched), 130 interrupted.
"""


# The option types, from the one module that ``serve``, ``proxy`` and the
# twist plugins read their values with too.
_seconds = options.for_argparse(options.seconds)
_seconds_or_off = options.for_argparse(options.timeout)
_size = options.for_argparse(options.size)
_encoding = options.for_argparse(options.encoding)
_pem_file = options.for_argparse(options.pem_file)


def _count(minimum: int) -> Any:
    return options.for_argparse(options.count(minimum))


def add_parser(commands: Any) -> None:
    """Register the ``get`` subcommand and its options."""
    parser = commands.add_parser(
        "get",
        help="download poems from endpoints and URLs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="where to get a poem (at least one, here or in -i)",
    )
    parser.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="also read sources from FILE ('-' for stdin): one a line, blank lines and "
        "lines starting with # skipped; repeatable",
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=_seconds_or_off,
        metavar="SECONDS",
        help="limit on each whole attempt, connecting included; 0 or none for no limit "
        "(default: none: with only --idle-timeout, a server sending a byte just within it "
        "each time can hold a fetch for ever)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds_or_off,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="limit on silence between reads; 0 or none for no limit "
        f"(default: {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-bytes",
        type=_size,
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help=f"largest poem accepted: {options.SIZE_FORMS} "
        f"(default: {DEFAULT_MAX_BYTES // 2**20}M)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=_count(1),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"connections open at once (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--retries",
        type=_count(0),
        default=0,
        metavar="N",
        help="retries after connect-failed or incomplete, with exponential backoff (default: 0)",
    )
    parser.add_argument(
        "--as-completed",
        action="store_true",
        help="print each poem as soon as it is whole, not in argument order",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--json",
        action="store_true",
        help="JSON Lines on stdout, one object per source",
    )
    where.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the one SOURCE's poem to FILE as it arrives, renamed into place when "
        "whole; '-' streams its raw bytes to stdout as they arrive",
    )
    where.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write each poem to a file of its own in DIR (created if missing)",
    )
    parser.add_argument(
        "--encoding",
        type=_encoding,
        metavar="NAME",
        help="decode poems with this codec (default: UTF-8, or the charset an HTTP server sends)",
    )
    parser.add_argument(
        "--errors",
        choices=("strict", "replace"),
        default="strict",
        help="what to do with bytes that do not decode (default: strict, a decode failure)",
    )
    parser.add_argument(
        "--cacert",
        type=_pem_file,
        metavar="PEM",
        help="also trust this CA for tls: and https: sources",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress display, no summary"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="one stderr line per attempt, retry, redirect and failure, with the time since start",
    )


def _usage_error(message: str) -> int:
    sys.stderr.write(one_line(f"{PROG} get: {message}") + "\n")
    sys.stderr.flush()
    return status.USAGE


def run(args: argparse.Namespace, *, reactor: Any = None) -> int:
    """Check every source, then fetch them all on C{reactor}; return the exit status."""
    if reactor is None:
        from twisted.internet import reactor

    client = PoetryClient(
        reactor,
        timeout=args.timeout,
        idle_timeout=args.idle_timeout,
        max_bytes=args.max_bytes,
        encoding=args.encoding,
        errors=args.errors,
        concurrency=args.concurrency,
        retries=args.retries,
        cacert=args.cacert,
    )
    listed = [Listed(text) for text in args.sources]
    for name in args.input:
        try:
            listed.extend(read_source_list(name, sys.stdin.buffer if sys.stdin else None))
        except InputError as e:
            return _usage_error(str(e))
    if not listed:
        return _usage_error("no SOURCE given, on the command line or with -i FILE")
    sources: list[Source] = []
    invalid = 0
    for item in listed:
        try:
            sources.append(client.parse(item.text))
        except PoetryError as e:
            invalid += 1
            where = f"{item.origin}: " if item.origin else ""
            _usage_error(f"{where}invalid source {e}")
    if invalid:
        # Once, not on every line: the reasons above are about each source.
        return _usage_error(f"a SOURCE is {ACCEPTED_FORMS}")

    output_dir = None
    output_file = None
    if args.output is not None and len(sources) > 1:
        return _usage_error(f"-o takes one SOURCE, not {len(sources)}: for more, use --output-dir")
    if args.output_dir is not None:
        try:
            output_dir = DirectoryOutput.prepare(args.output_dir)
        except OSError as e:
            return _usage_error(
                f"cannot write to --output-dir {args.output_dir}: {describe_os_error(e)}"
            )
    elif args.output is not None and args.output != "-":
        try:
            output_file = FileOutput.prepare(args.output)
        except OSError as e:
            return _usage_error(f"cannot write to -o {args.output}: {describe_os_error(e)}")

    presentation = Presentation(
        json=args.json,
        output_dir=output_dir,
        output_file=output_file,
        raw_stdout=args.output == "-",
        verbose=args.verbose,
        as_completed=args.as_completed,
        quiet=args.quiet,
    )

    async def fetch(reactor: Any, interruption: runner.Interruption) -> int:
        try:
            return await Fetch(reactor, client, sources, presentation, interruption).run()
        finally:
            await close_idle(client)

    return runner.run(fetch, reactor=reactor)
