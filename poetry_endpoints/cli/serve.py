"""
``poetry-endpoints serve``: the companion poetry server (SPEC §5).

Also home of L{run_listening}, which ``proxy`` shares: it runs a service
built by `poetry_endpoints.service` in the foreground, prints a
``listening on SOURCE`` line per listener, logs to stderr, and stops cleanly on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from twisted.application.service import MultiService
from twisted.internet.error import ReactorNotRunning
from twisted.logger import FileLogObserver, LogEvent, eventAsText, globalLogBeginner
from twisted.python.failure import Failure

from ..faults import FAULTS
from ..server import DEFAULT_NUM_BYTES
from ..service import DEFAULT_LISTEN, ConfigError, ServerConfig, build_server, when_listening

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """Register the ``serve`` subcommand."""
    parser = commands.add_parser(
        "serve",
        help="serve poems, one per connection",
        description="Serve a poem per connection, then close cleanly. With no POEM_FILE the "
        "bundled poems are served; with several, connections get them in turn. Prints "
        "'listening on SOURCE' per listener on stdout; logs connections on stderr; "
        "stops on SIGINT or SIGTERM.",
    )
    parser.add_argument("poems", nargs="*", metavar="POEM_FILE", help="poem files to serve")
    add_listen_option(parser, DEFAULT_LISTEN)
    parser.add_argument(
        "--delay",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="pause between writes: the slow poetry server (default: 0)",
    )
    parser.add_argument(
        "--num-bytes",
        type=positive_int,
        default=DEFAULT_NUM_BYTES,
        metavar="N",
        help=f"bytes per write when slow (default: {DEFAULT_NUM_BYTES})",
    )
    parser.add_argument(
        "--http",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="also serve the poems over HTTP, / and /poems/NAME (repeatable)",
    )
    parser.add_argument(
        "--fault",
        choices=list(FAULTS),
        metavar="MODE",
        help="misbehave on purpose, to test clients: " + ", ".join(FAULTS),
    )


def add_listen_option(parser: argparse.ArgumentParser, default: str) -> None:
    """The repeatable ``-l/--listen``, shared with ``proxy``."""
    parser.add_argument(
        "-l",
        "--listen",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help=f"serverFromString description, repeatable (default: {default})",
    )


def non_negative(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""
    config = ServerConfig(
        listen=tuple(args.listen) or (DEFAULT_LISTEN,),
        poems=tuple(args.poems),
        delay=args.delay,
        num_bytes=args.num_bytes,
        fault=args.fault,
        http=tuple(args.http),
    )
    return run_listening("serve", lambda reactor: build_server(reactor, config))


def run_listening(command: str, build: Callable[[Any], MultiService]) -> int:
    """
    Build a service with C{build(reactor)} and run it until a signal stops it.

    @return: 0 after SIGINT or SIGTERM, 1 if a listener could not listen, 2
        if C{build} raised L{ConfigError}.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    status = EXIT_OK

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    # Installed first, so that a signal that comes early still stops cleanly;
    # and ourselves, because a background process starts with SIGINT ignored.
    def on_signal(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(stop)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        service = build(reactor)
    except ConfigError as e:
        print(f"poetry-endpoints {command}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE

    def report(sources: list[str]) -> None:
        try:
            for source in sources:
                print(f"listening on {source}", flush=True)
        except OSError:
            pass  # nobody reads stdout any more; serving goes on

    def cannot_listen(failure: Failure) -> None:
        nonlocal status
        status = EXIT_FAILED
        print(
            f"poetry-endpoints {command}: error: {failure.getErrorMessage()}",
            file=sys.stderr,
            flush=True,
        )
        stop()

    def start() -> None:
        service.startService()
        when_listening(service).addCallbacks(report, cannot_listen)

    globalLogBeginner.beginLoggingTo([terse_observer(sys.stderr)], redirectStandardIO=False)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return status


def terse_observer(stream: TextIO) -> FileLogObserver:
    """One line per event: the time and the message (a failure adds its traceback)."""

    def line(event: LogEvent) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        return f"{stamp} {text}\n"

    return FileLogObserver(stream, line)
