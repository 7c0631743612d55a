"""
Run the command line in this process, on a reactor of its own.

A CLI subprocess costs about 0.35 s of start-up before it does anything,
which is most of what a check of ``get``'s behaviour costs.  `run_cli` runs
the same code as the ``poetry-endpoints`` command, ``main(argv)``, from the
parser to the exit status, on a fresh reactor that is never installed, with
standard streams that are pipes in all but name (not terminals, no file
descriptor), and returns what a subprocess run would have: the exit status,
stdout's bytes and stderr's bytes.

`serve_cli` runs a command that serves until a signal (``serve``,
``proxy``) the same way, in this process's main thread (where a command
installs its signal handlers), while a client function talks to it from a
thread of its own and stops it with a real signal sent to the main thread.

What needs a process stays a subprocess in the tests: signals, terminals,
closed or full file descriptors, memory peaks, and one end-to-end run of
each command.

After the run, the reactor must hold no timer and no connection (nothing
left behind is a promise of the command line), and its own descriptors are
closed so that many runs do not add up.
"""

from __future__ import annotations

import io
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.epollreactor import EPollReactor

#: How long a run may take before the test fails (the reactor is stopped).
WAIT = 20.0
LISTENING = re.compile(r"listening on (\S+)")
T = TypeVar("T")


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


def run_cli(*argv: str, stdin: bytes = b"", wait: float = WAIT) -> Ran:
    """
    Run ``poetry-endpoints ARGV`` here, as the command would run it, and
    return its exit status and output.

    @raise AssertionError: the run took longer than C{wait} seconds, or left
        a timer or a connection on its reactor.
    """
    from poetry_endpoints.cli import main

    if argv[:1] in (("serve",), ("proxy",)):  # a server that fails after it began to log
        begin_logging()
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
    try:
        main(list(argv), reactor=reactor)
    except SystemExit as e:
        code = e.code
    else:  # main() always exits
        raise AssertionError(f"main({argv!r}) returned instead of exiting")
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
    try:
        assert not timed_out, f"poetry-endpoints {' '.join(argv)} ran past {wait} s"
        if guard.active():
            guard.cancel()
        _assert_nothing_left(reactor, argv)
    finally:
        _close(reactor)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    return Ran(list(argv), status, stdout_pipe.written(), stderr_pipe.written())


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


class _LiveBytes(io.BytesIO):
    """Bytes written by the command's thread, read as they come by another thread."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()
        self.ended = False

    def write(self, data: Any) -> int:
        with self.changed:
            count = super().write(data)
            self.changed.notify_all()
        return count

    def text(self) -> str:
        with self.changed:
            return self.getvalue().decode("utf-8", "replace")

    def end(self) -> None:
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_until(self, found: Callable[[str], T | None], timeout: float) -> T | None:
        """The first true C{found(text so far)}, or C{None} once the output has ended."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                answer = found(self.getvalue().decode("utf-8", "replace"))
                if answer or self.ended:
                    return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing awaited came within {timeout} s")
                self.changed.wait(left)


class Serving:
    """
    A server command running in the main thread, as its client thread sees it:
    the same reading methods as C{serve_process.Running}.
    """

    def __init__(self, argv: list[str], stdout: _LiveBytes, stderr: _LiveBytes) -> None:
        self.argv = argv
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdout_lines(self) -> list[str]:
        return self._stdout.text().splitlines()

    @property
    def stderr_lines(self) -> list[str]:
        return self._stderr.text().splitlines()

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def sources(self, count: int, timeout: float = WAIT) -> list[str]:
        """The first C{count} sources of ``listening on SOURCE`` lines, once printed."""

        def listed(text: str) -> list[str] | None:
            found = LISTENING.findall(text)
            return found[:count] if len(found) >= count else None

        found = self._stdout.wait_until(listed, timeout)
        if found is None:
            raise AssertionError(f"{self.argv} ended before listening; stderr: {self.stderr}")
        return found

    def wait_for_stderr(self, text: str, timeout: float = WAIT) -> str:
        """The first stderr line containing C{text}, once logged."""

        def line(so_far: str) -> str | None:
            return next((line for line in so_far.splitlines() if text in line), None)

        found = self._stderr.wait_until(line, timeout)
        if found is None:
            raise AssertionError(f"{text!r} never logged; stderr: {self.stderr}")
        return found

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send C{signum} to the main thread, where the command handles it."""
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signum)


_logging_begun = False


def begin_logging() -> None:
    """
    Begin Twisted's global logging once, to nothing, before the first server
    run: otherwise that run's stderr would get the events earlier tests
    logged, replayed.  The tests' warnings stay with pytest.
    """
    global _logging_begun
    if _logging_begun:
        return
    from twisted.logger import LogPublisher

    from poetry_endpoints.cli.serve import log_to

    showwarning = warnings.showwarning
    try:
        log_to(LogPublisher())()  # an observer with no observers of its own
    finally:
        warnings.showwarning = showwarning
    _logging_begun = True


def _ignore(signum: int, frame: object) -> None:
    """A signal that comes after the command restored the handlers: a late stop, harmless."""


def serve_cli(*argv: str, client: Callable[[Serving], T], wait: float = WAIT) -> tuple[Ran, T]:
    """
    Run ``poetry-endpoints ARGV`` (a server: ``serve``, ``proxy``) here, in
    the main thread, while C{client(serving)} runs in a thread of its own;
    the client reads what the command prints and stops it with
    L{Serving.stop}.  Returns the command's run and the client's result.

    @raise AssertionError: the run took longer than C{wait} seconds, or left
        a timer or a connection on its reactor.  An exception of the client
        stops the command and is raised here.
    """
    from poetry_endpoints.cli import main

    assert threading.current_thread() is threading.main_thread(), "signals go to the main thread"
    begin_logging()
    reactor: Any = EPollReactor()
    timed_out: list[bool] = []

    def too_long() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.callLater(wait, too_long)
    stdout, stderr = _LiveBytes(), _LiveBytes()
    serving = Serving(list(argv), stdout, stderr)
    results: list[T] = []
    failures: list[BaseException] = []

    def run_client() -> None:
        try:
            results.append(client(serving))
        except BaseException as e:
            failures.append(e)
            reactor.callFromThread(_stop_if_running, reactor)

    thread = threading.Thread(target=run_client, name="serve_cli client", daemon=True)
    # A stop signal that arrives after the command restored its handlers must
    # not reach pytest's.
    handlers = {
        signum: signal.signal(signum, _ignore) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    streams = (sys.stdin, sys.stdout, sys.stderr)
    # Held here: a text stream closes its bytes when it is collected.
    text_streams = (
        _Pipe(),
        io.TextIOWrapper(stdout, encoding="utf-8", write_through=True),
        io.TextIOWrapper(stderr, encoding="utf-8", errors="backslashreplace", write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = text_streams
    code: object = None
    try:
        thread.start()
        try:
            main(list(argv), reactor=reactor)
        except SystemExit as e:
            code = e.code
        else:  # main() always exits
            raise AssertionError(f"main({argv!r}) returned instead of exiting")
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        stdout.end()
        stderr.end()
        thread.join(wait)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    try:
        if failures:
            raise failures[0]
        assert not thread.is_alive(), f"the client of {argv} did not finish within {wait} s"
        assert not timed_out, f"poetry-endpoints {' '.join(argv)} ran past {wait} s"
        if guard.active():
            guard.cancel()
        _assert_nothing_left(reactor, argv)
    finally:
        _close(reactor)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    return Ran(list(argv), status, stdout.getvalue(), stderr.getvalue()), results[0]


def _stop_if_running(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()
