"""
Run the command line in this process, on a reactor of its own.

A CLI subprocess costs about 0.35 s of start-up before it does anything,
which is most of what a check of ``get``'s behaviour costs.  `run_cli` runs
the same code as the ``poetry-endpoints`` command, ``main(argv)``, from the
parser to the exit status, on a fresh reactor that is never installed, with
standard streams that are pipes in all but name (not terminals, no file
descriptor), and returns what a subprocess run would have: the exit status,
stdout's bytes and stderr's bytes.

What needs a process stays a subprocess in the tests: signals, terminals,
closed or full file descriptors, memory peaks, and one end-to-end run of
each command.

When the run is about to stop, the reactor must hold no timer and no
connection (nothing left behind is a promise of the command line), and after
the run still no timer; its own descriptors are then closed so that many
runs do not add up.  The connections are looked at before the reactor's
shutdown, not after it: shutdown disconnects whatever is still open, so
afterwards there is never one to see (see `Leftovers`).
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.epollreactor import EPollReactor

#: How long a run may take before the test fails (the reactor is stopped).
WAIT = 20.0


@dataclass(frozen=True)
class Ran:
    """What a command run left: the same fields as C{subprocess.CompletedProcess}."""

    args: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes


class _Pipe(io.TextIOWrapper):
    """A text stream over bytes, like a standard stream that is a pipe."""

    def __init__(self, data: bytes = b"", *, errors: str = "strict") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors=errors, write_through=True)

    def written(self) -> bytes:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


class Running:
    """A run in progress, as the C{during} function of `run_cli` sees it."""

    def __init__(self, stdout: _Pipe) -> None:
        self._stdout = stdout

    def stdout(self) -> bytes:
        """The bytes written to stdout so far."""
        raw = self._stdout.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


def run_cli(
    *argv: str,
    stdin: bytes = b"",
    wait: float = WAIT,
    during: Callable[[Running], object] | None = None,
) -> Ran:
    """
    Run ``poetry-endpoints ARGV`` here, as the command would run it, and
    return its exit status and output.

    @param during: if given, called in a thread of its own while the command
        runs (the test's side of a run that a subprocess test would drive
        with C{Popen}: opening a gate, watching stdout); what it raises is
        raised here, once the run has ended.

    @raise AssertionError: the run took longer than C{wait} seconds, or left
        a timer or a connection on its reactor.
    """
    run = CommandReactor(wait)
    reactor = run.reactor
    streams = (sys.stdin, sys.stdout, sys.stderr)
    # Python's own standard streams: UTF-8 (as the tests' subprocesses are
    # set to), strict on stdout, backslash escapes on stderr.
    stdin_pipe, stdout_pipe, stderr_pipe = _Pipe(stdin), _Pipe(), _Pipe(errors="backslashreplace")
    sys.stdin, sys.stdout, sys.stderr = stdin_pipe, stdout_pipe, stderr_pipe
    alongside = None if during is None else _Alongside(during, Running(stdout_pipe))
    try:
        status = exit_status(argv, reactor)
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
    run.finish(argv, *([] if alongside is None else [lambda: alongside.end(wait)]))
    return Ran(list(argv), status, stdout_pipe.written(), stderr_pipe.written())


def exit_status(argv: Sequence[str], reactor: Any = None) -> int:
    """Run C{poetry_endpoints.cli.main(argv)}; the status it exits with."""
    from poetry_endpoints.cli import main

    try:
        main(list(argv), reactor=reactor)
    except SystemExit as e:
        code = e.code
    else:  # main() always exits
        raise AssertionError(f"main({list(argv)!r}) returned instead of exiting")
    return code if isinstance(code, int) else (0 if code is None else 1)


class CommandReactor:
    """
    A fresh reactor for one run of a command: stopped if the run takes more
    than C{wait} seconds, and looked at as the run ends (L{Leftovers}).
    """

    def __init__(self, wait: float, *, served: bool = False) -> None:
        self.reactor: Any = EPollReactor()
        self._wait = wait
        self._timed_out = False
        self._guard = self.reactor.callLater(wait, self._too_long)
        self._leftovers = Leftovers(self.reactor, self._guard, served=served)

    def _too_long(self) -> None:
        self._timed_out = True
        self.reactor.stop()

    def finish(self, argv: tuple[str, ...], *first: Callable[[], object]) -> None:
        """
        Call each of C{first} (the test's own checks of the run), then check
        that the run ended in time and left nothing; close the reactor's
        descriptors whatever happens.

        @raise AssertionError: the run took longer than its C{wait}, or left
            a timer or a connection.
        """
        try:
            for check in first:
                check()
            assert not self._timed_out, f"poetry-endpoints {' '.join(argv)} ran past {self._wait} s"
            if self._guard.active():
                self._guard.cancel()
            self._leftovers.check(argv)
            _assert_nothing_left(self.reactor, argv)
        finally:
            _close(self.reactor)


class _Alongside:
    """A C{during} function running in a thread; what it raised, raised again."""

    def __init__(self, during: Callable[[Running], object], running: Running) -> None:
        self._failure: list[BaseException] = []

        def call() -> None:
            try:
                during(running)
            except BaseException as e:
                self._failure.append(e)

        self._thread = threading.Thread(target=call, daemon=True)
        self._thread.start()

    def end(self, wait: float) -> None:
        self._thread.join(wait)
        assert not self._thread.is_alive(), f"the during function ran past {wait} s"
        if self._failure:
            raise self._failure[0]


class Leftovers:
    """
    The timers and connections a command's run still had on its reactor
    when it was about to stop: there must be none.

    They are noted by a trigger "before" the reactor's "shutdown" event,
    which runs once the command has ended (its Deferred has fired and the
    runner's one more turn of the reactor has passed) and before anything
    of the shutdown itself: the reactor's "during" triggers disconnect every
    connection still open, so a look after the run can never find one.  The
    commands add no "before" shutdown trigger of their own that this one
    could run ahead of.  A run that ends before its reactor starts (a usage
    error) never shuts one down, and leaves nothing to note.
    """

    def __init__(self, reactor: Any, guard: Any, *, served: bool = False) -> None:
        self._reactor = reactor
        self._guard = guard
        self._served = served
        self.noted = False
        self.timers: list[Any] = []
        self.connections: list[Any] = []
        #: The connections left that end as they should (see L{_closing}, L{_served}).
        self.let_through: list[Any] = []
        reactor.addSystemEventTrigger("before", "shutdown", self._note)

    def _note(self) -> None:
        reactor = self._reactor
        self.noted = True
        self.timers = [call for call in reactor.getDelayedCalls() if call is not self._guard]
        self.connections, self.let_through = [], []
        for connection in _connections(reactor):
            if _closing(connection) or (self._served and _served(connection)):
                self.let_through.append(connection)
            else:
                self.connections.append(connection)

    def check(self, argv: tuple[str, ...]) -> None:
        """
        @raise AssertionError: the run was about to stop with a timer or a
            connection still on its reactor, listed.
        """
        command = f"poetry-endpoints {' '.join(argv)}"
        assert not self.timers, f"{command} was ending with timers left: {self.timers}"
        assert not self.connections, (
            f"{command} was ending with connections left: {self.connections}"
        )


def _closing(connection: Any) -> bool:
    """
    Whether C{connection}'s close is under way with nothing left to send.

    An HTTP response that ends its connection (``Connection: close``) makes
    twisted.web call C{loseConnection} once the body is whole: the command
    has its poem and ends, and the close only waits for the reactor to see
    the socket writable, a turn after the runner's stop.  The shutdown then
    closes the socket as that turn would have.  C{disconnecting} is
    Twisted's public mark of a C{loseConnection}; the write buffer must be
    empty, or the close would still have bytes to send.  A TLS connection
    waiting for the server to answer its close is not C{disconnecting} at
    this level: it is left behind, and flagged.
    """
    return bool(getattr(connection, "disconnecting", False)) and not (
        getattr(connection, "dataBuffer", b"") or getattr(connection, "_tempDataLen", 0)
    )


def _served(connection: Any) -> bool:
    """
    Whether C{connection} was accepted by a listener that no longer listens.

    A server command (``serve``, ``proxy``) stops at once on SIGINT or
    SIGTERM: it stops listening and leaves the connections still open to
    the reactor's shutdown, which closes them (the client sees that close:
    test_connections_still_open_do_not_hold_up_the_stop).
    """
    port = getattr(connection, "server", None)  # twisted.internet.tcp.Server's (and unix's)
    return port is not None and not getattr(port, "connected", True)


def _connections(reactor: Any) -> list[Any]:
    """What C{reactor} watches for reading or writing, but its own waker."""
    waker = reactor.waker
    watched = set(reactor.getReaders()) | set(reactor.getWriters())
    return [s for s in watched if s is not waker]


def _assert_nothing_left(reactor: Any, argv: tuple[str, ...]) -> None:
    timers = reactor.getDelayedCalls()
    assert not timers, f"poetry-endpoints {' '.join(argv)} left timers: {timers}"
    selectables = _connections(reactor)
    assert not selectables, f"poetry-endpoints {' '.join(argv)} left connections: {selectables}"


def _close(reactor: Any) -> None:
    """Close the descriptors a reactor instance holds for itself."""
    reactor.removeAll()
    reactor.waker.connectionLost(None)
    reactor._poller.close()
