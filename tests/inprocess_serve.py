"""
Run ``serve`` or ``proxy`` in this process, as `inprocess.run_cli` runs
``get``.

A server command runs until a signal stops it, and installs its signal
handlers, which only the main thread can do.  `serve_cli` runs the command
in the main thread, on a fresh reactor, with pipe-like standard streams,
while a client function talks to it from a thread of its own: it reads the
``listening on SOURCE`` lines as they are printed and stops the command
with a real signal sent to the main thread (`Serving.stop`), where the
command's own handler answers it.  It returns the run (exit status, stdout
and stderr bytes) and what the client returned, and asserts, as `run_cli`
does, that the run was ending with no timer and no connection on its reactor.

What needs a process stays a subprocess: Python's own SIGINT handling, a
signal ignored from the start, memory peaks, and one end-to-end run of each
command.
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
from typing import Any, TypeVar

from inprocess import WAIT, CommandReactor, Ran, _Pipe, exit_status

LISTENING = re.compile(r"listening on (\S+)")
T = TypeVar("T")


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
    assert threading.current_thread() is threading.main_thread(), "signals go to the main thread"
    begin_logging()
    run = CommandReactor(wait, served=True)
    reactor = run.reactor
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
    try:
        thread.start()
        status = exit_status(argv, reactor)
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        stdout.end()
        stderr.end()
        thread.join(wait)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def client_ended() -> None:
        if failures:
            raise failures[0]
        assert not thread.is_alive(), f"the client of {argv} did not finish within {wait} s"

    run.finish(argv, client_ended)
    return Ran(list(argv), status, stdout.getvalue(), stderr.getvalue()), results[0]


def _stop_if_running(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


def twist_here(*args: str) -> tuple[int, str]:
    """
    ``twist --log-format text ARGS`` in this process, for a run that ends
    before its service starts (a usage error): the exit status, and stdout
    and stderr together.

    Twisted's own ``Twist.main`` parses the options and makes the plugin's
    service, as the command does; starting the service or the reactor is an
    error here (the global reactor belongs to the trial tests).
    """
    import importlib

    # twist's exit() writes to the streams sys had when it was imported.
    exiting: Any = importlib.import_module("twisted.application.runner._exit")
    twist: Any = importlib.import_module("twisted.application.twist._twist").Twist

    def started(*ignored: object) -> None:
        raise AssertionError(f"twist {' '.join(args)} got as far as starting its service")

    output = io.StringIO()
    saved = (exiting.stdout, exiting.stderr, sys.stdout, sys.stderr)
    saved_methods = (twist.__dict__["startService"], twist.__dict__["run"])
    exiting.stdout = exiting.stderr = sys.stdout = sys.stderr = output
    twist.startService = twist.run = staticmethod(started)
    try:
        twist.main(["twist", "--log-format", "text", *args])
    except SystemExit as e:
        code = e.code
    else:
        raise AssertionError(f"twist {' '.join(args)} returned instead of exiting")
    finally:
        exiting.stdout, exiting.stderr, sys.stdout, sys.stderr = saved
        twist.startService, twist.run = saved_methods
    return (code if isinstance(code, int) else 1), output.getvalue()
