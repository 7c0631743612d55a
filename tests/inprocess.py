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

After the run, the reactor must hold no timer and no connection (nothing
left behind is a promise of the command line), and its own descriptors are
closed so that many runs do not add up.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
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
    from poetry_endpoints.cli import main

    reactor: Any = EPollReactor()
    timed_out: list[bool] = []

    def too_long() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.callLater(wait, too_long)
    streams = (sys.stdin, sys.stdout, sys.stderr)
    # Python's own standard streams: UTF-8 (as the tests' subprocesses are
    # set to), strict on stdout, backslash escapes on stderr.
    stdin_pipe, stdout_pipe, stderr_pipe = _Pipe(stdin), _Pipe(), _Pipe(errors="backslashreplace")
    sys.stdin, sys.stdout, sys.stderr = stdin_pipe, stdout_pipe, stderr_pipe
    alongside = None if during is None else _Alongside(during, Running(stdout_pipe))
    try:
        main(list(argv), reactor=reactor)
    except SystemExit as e:
        code = e.code
    else:  # main() always exits
        raise AssertionError(f"main({argv!r}) returned instead of exiting")
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
    try:
        if alongside is not None:
            alongside.end(wait)
        assert not timed_out, f"poetry-endpoints {' '.join(argv)} ran past {wait} s"
        if guard.active():
            guard.cancel()
        _assert_nothing_left(reactor, argv)
    finally:
        _close(reactor)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    return Ran(list(argv), status, stdout_pipe.written(), stderr_pipe.written())


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


def _assert_nothing_left(reactor: Any, argv: tuple[str, ...]) -> None:
    timers = reactor.getDelayedCalls()
    assert not timers, f"poetry-endpoints {' '.join(argv)} left timers: {timers}"
    waker = reactor.waker
    selectables = [s for s in reactor.getReaders() + reactor.getWriters() if s is not waker]
    assert not selectables, f"poetry-endpoints {' '.join(argv)} left connections: {selectables}"


def _close(reactor: Any) -> None:
    """Close the descriptors a reactor instance holds for itself."""
    reactor.removeAll()
    reactor.waker.connectionLost(None)
    reactor._poller.close()
