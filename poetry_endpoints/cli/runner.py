"""
Running a command under the Twisted reactor, with Ctrl-C answered.

A command is a coroutine function taking the reactor and an `Interruption`
and returning an exit status.  `run` installs its own handlers for the given
signals (a process started in the background by a shell begins with SIGINT
ignored, and Python's default would print a ``KeyboardInterrupt`` traceback).
The handler only schedules work on the reactor thread; the first signal calls
the command's interrupt callbacks and cancels its Deferred, a second one
exits at once.  An interrupted command exits with 128 + the signal number
(130 for SIGINT) and prints no traceback.

The end of a run never waits for a name lookup: see L{_threads_never_hold_exit}.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from .status import FAILED, interrupted

Command = Callable[[Any, "Interruption"], Coroutine[Any, Any, int]]


class Interruption:
    """
    Whether the run has been interrupted, and what to do when it is.

    Everything here runs on the reactor thread, except L{force}.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._on_interrupt: list[Callable[[], object]] = []
        self._on_force: list[Callable[[], object]] = []

    @property
    def interrupted(self) -> bool:
        """True once a signal has been handled."""
        return self.signal is not None

    def on_interrupt(self, callback: Callable[[], object]) -> None:
        """Call C{callback} (on the reactor thread) when the run is interrupted."""
        self._on_interrupt.append(callback)

    def on_forced_exit(self, callback: Callable[[], object]) -> None:
        """
        Call C{callback} just before a second signal ends the process.

        It runs inside a signal handler, so it must only do what is safe at
        any point of the program (removing a file is).
        """
        self._on_force.append(callback)

    def interrupt(self, signum: int) -> None:
        """Mark the run interrupted by C{signum} and run the interrupt callbacks once."""
        if self.signal is not None:
            return
        self.signal = signum
        callbacks, self._on_interrupt = self._on_interrupt, []
        for callback in callbacks:
            callback()

    def force(self) -> None:
        """Run the forced-exit callbacks."""
        for callback in self._on_force:
            try:
                callback()
            except Exception:  # exiting anyway, with nowhere to report it
                pass


class _DaemonThread(threading.Thread):
    """A thread the interpreter does not wait for at exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


def _threads_never_hold_exit(reactor: Any) -> None:
    """
    Let the run end without waiting for C{reactor}'s thread pool.

    A host name is looked up with C{getaddrinfo} in the reactor's thread
    pool, and nothing can interrupt C{getaddrinfo}; a reactor joins its
    pool's threads as it stops, so after Ctrl-C or a timeout the process
    would wait for the slowest lookup (30 s, for a resolver that does not
    answer).  Nothing this program runs in the pool is worth that wait:
    the pool's threads are made daemon threads, and the pool is stopped and
    joined in a daemon thread of its own instead of the reactor's.
    """
    get_pool = getattr(reactor, "getThreadPool", None)
    if get_pool is None:  # not a reactor with threads (a test's fake one)
        return
    pool = get_pool()
    # Before the reactor starts, so every thread the pool makes is a daemon.
    pool.threadFactory = _DaemonThread
    joining = getattr(reactor, "threadpoolShutdownID", None)
    if joining is None:
        return
    reactor.removeSystemEventTrigger(joining)
    reactor.threadpoolShutdownID = None

    def stop_without_waiting() -> None:
        _DaemonThread(target=pool.stop, name="thread pool stop").start()

    reactor.addSystemEventTrigger("during", "shutdown", stop_without_waiting)


def run(
    command: Command,
    *,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
    reactor: Any = None,
    interrupted_status: Callable[[int], int] = interrupted,
) -> int:
    """
    Run C{command} on the reactor until it finishes; return its exit status.

    A run stopped by a signal returns C{interrupted_status(signum)}: 130
    for SIGINT by default; a server, whose normal end is a signal, says 0.

    An unexpected exception (a bug) is printed with its traceback and gives
    exit status 1, unless the run was interrupted.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    interruption = Interruption()
    status = [FAILED]
    running: list[Deferred[int]] = []
    signalled: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if signalled:
            interruption.force()
            os._exit(interrupted_status(signum))
        signalled.append(signum)
        reactor.callFromThread(interrupt, signum)

    def interrupt(signum: int) -> None:
        interruption.interrupt(signum)
        for deferred in running:
            deferred.cancel()

    def start() -> None:
        if interruption.interrupted:  # a signal beat the reactor's start
            reactor.stop()
            return
        deferred = Deferred.fromCoroutine(command(reactor, interruption))
        running.append(deferred)
        deferred.addBoth(finish)

    def finish(result: int | Failure) -> None:
        running.clear()
        if isinstance(result, Failure):
            if not interruption.interrupted:
                result.printTraceback(file=sys.stderr)
        else:
            status[0] = result
        # Not at once: an aborted connection closes (with a reset) in a call
        # its transport made for "now"; the stop waits one turn of the
        # reactor so that every such call runs first, and a run never ends
        # with a connection it aborted still open (the process's exit would
        # close it cleanly, as if the poem had ended).
        reactor.callLater(0, reactor.stop)

    _threads_never_hold_exit(reactor)
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    if interruption.signal is not None:
        return interrupted_status(interruption.signal)
    return status[0]
