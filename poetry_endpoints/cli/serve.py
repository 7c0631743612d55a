"""
``poetry-endpoints serve``: the companion poetry server.

Also home of L{run_listening}, which ``proxy`` shares: it runs a service
built by `poetry_endpoints.servers.service` in the foreground, prints a
``listening on SOURCE`` line per listener, logs to stderr, and stops cleanly on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    globalLogBeginner,
    globalLogPublisher,
)

from .. import options
from ..defaults import DEFAULT_LISTEN, DEFAULT_NUM_BYTES
from ..events import NAMESPACE as CLIENT_EVENTS
from ..servers.faults import FAULTS
from ..servers.service import ConfigError, ServerConfig, build_server, when_listening
from . import runner, status


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
    parser.add_argument(
        "poems",
        nargs="*",
        type=options.for_argparse(options.readable_file),
        metavar="POEM_FILE",
        help="poem files to serve",
    )
    add_listen_option(parser, DEFAULT_LISTEN)
    parser.add_argument(
        "--delay",
        type=options.for_argparse(options.duration),
        default=0.0,
        metavar="SECONDS",
        help="pause between writes: the slow poetry server (default: 0)",
    )
    parser.add_argument(
        "--num-bytes",
        type=options.for_argparse(options.count(1)),
        default=DEFAULT_NUM_BYTES,
        metavar="N",
        help=f"bytes per write when slow (default: {DEFAULT_NUM_BYTES})",
    )
    parser.add_argument(
        "--http",
        action="append",
        type=options.for_argparse(options.listen),
        default=[],
        metavar="ENDPOINT",
        help="also serve the poems over HTTP, / and /poems/NAME (repeatable)",
    )
    parser.add_argument(
        "--fault",
        type=options.for_argparse(options.fault),
        metavar="MODE",
        help="misbehave on purpose, to test clients: " + ", ".join(FAULTS),
    )


def add_listen_option(parser: argparse.ArgumentParser, default: str) -> None:
    """The repeatable ``-l/--listen``, shared with ``proxy``."""
    parser.add_argument(
        "-l",
        "--listen",
        action="append",
        type=options.for_argparse(options.listen),
        default=[],
        metavar="ENDPOINT",
        help=f"serverFromString description, repeatable (default: {default})",
    )


def run(args: argparse.Namespace, *, reactor: Any = None) -> int:
    """Serve on C{reactor} until SIGINT or SIGTERM; the exit status."""
    config = server_config(args)
    return run_listening("serve", lambda r: build_server(r, config), reactor=reactor)


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The server's settings from its parsed command line."""
    return ServerConfig(
        listen=tuple(args.listen) or (DEFAULT_LISTEN,),
        poems=tuple(args.poems),
        delay=args.delay,
        num_bytes=args.num_bytes,
        fault=args.fault,
        http=tuple(args.http),
    )


def run_listening(
    command: str, build: Callable[[Any], MultiService], *, reactor: Any = None
) -> int:
    """
    Build a service with C{build(reactor)} and run it until a signal stops it.

    @return: 0 after SIGINT or SIGTERM, 1 if a listener could not listen, 2
        if C{build} raised L{ConfigError}.
    """
    stop_logging: list[Callable[[], None]] = []
    try:
        return runner.run(
            serving(command, build, stop_logging),
            reactor=reactor,
            interrupted_status=lambda signum: status.OK,
        )
    finally:
        # After the reactor's last word ("Main loop terminated."), not before.
        for stop in stop_logging:
            stop()


def serving(
    command: str, build: Callable[[Any], MultiService], stop_logging: list[Callable[[], None]]
) -> runner.Command:
    """
    The command that runs C{build}'s service until the run is interrupted.

    It logs to stderr from the start of the service on; the function that
    stops that is added to C{stop_logging}, for the end of the run.
    """

    async def serve(reactor: Any, interruption: runner.Interruption) -> int:
        try:
            service = build(reactor)
        except ConfigError as e:
            _complain(command, str(e))
            return status.USAGE
        stop_logging.append(log_to(server_observer(sys.stderr)))
        service.startService()
        try:
            try:
                sources = await when_listening(service)
            except CancelledError:
                raise
            except Exception as e:  # CannotListenError and kin, one line each
                _complain(command, str(e))
                return status.FAILED
            _announce(sources)
            await Deferred()  # serve until a signal cancels this
            raise AssertionError("unreachable")
        finally:
            stopped = service.stopService()
            if stopped is not None:
                await stopped

    return serve


def _announce(sources: list[str]) -> None:
    try:
        for source in sources:
            print(f"listening on {source}", flush=True)
    except OSError:
        pass  # nobody reads stdout any more; serving goes on


def _complain(command: str, message: str) -> None:
    print(f"poetry-endpoints {command}: error: {message}", file=sys.stderr, flush=True)


#: Whether this process has begun Twisted's global logging, which it can do once.
_logging_begun = False


def log_to(observer: ILogObserver) -> Callable[[], None]:
    """
    Send Twisted's log events to C{observer}; return the function that stops it.

    The first call in a process begins Twisted's global logging with
    C{observer}: it gets the events logged before, and warnings become log
    events.  That can only be done once per process, so a later call (from a
    program that runs several commands, each on a fresh reactor) adds the
    observer alone.
    """
    global _logging_begun
    if _logging_begun:
        globalLogPublisher.addObserver(observer)
    else:
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
        _logging_begun = True
    return lambda: globalLogPublisher.removeObserver(observer)


def server_observer(stream: TextIO) -> ILogObserver:
    """
    L{terse_observer} without the client library's per-attempt events: a
    server (the proxy) logs its upstream fetches and failures itself.
    """
    levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)
    levels.setLogLevelForNamespace(CLIENT_EVENTS, LogLevel.critical)
    return FilteringLogObserver(terse_observer(stream), [levels])


def terse_observer(stream: TextIO) -> FileLogObserver:
    """One line per event: the time and the message (a failure adds its traceback)."""

    def line(event: LogEvent) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        return f"{stamp} {text}\n"

    return FileLogObserver(stream, line)
