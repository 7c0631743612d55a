"""
``get -v``: one stderr line for each attempt, retry, redirect and failure.

The client library reports these as C{twisted.logger} events in the
namespace ``poetry_endpoints.client`` whose ``event`` key names what
happened (``attempt``, ``retry``, ``redirect``, ``failure``), with the
C{source} and, as they apply, C{attempt}, C{delay}, C{location}, C{status},
C{kind} and C{reason}.  This module turns each such
event into one escaped line with the time since the run started::

    poetry-endpoints: +0.012s tcp:127.0.0.1:1: attempt 1
    poetry-endpoints: +0.013s tcp:127.0.0.1:1: attempt 1 failed: connection refused [connect-failed]
    poetry-endpoints: +0.013s tcp:127.0.0.1:1: retrying in 0.5s (attempt 2)
    poetry-endpoints: +0.540s http://h/a: redirect 301 to http://h/b

Every other event, and every event of another namespace, is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from ..errors import one_line
from ..events import EVENTS, NAMESPACE
from .output import PROG

__all__ = ["EVENTS", "NAMESPACE", "VerboseObserver", "verbose_line"]


def _why(event: LogEvent) -> str:
    reason = event.get("reason")
    kind = event.get("kind")
    text = str(reason) if reason is not None else ""
    if kind is not None:
        text = f"{text} [{kind}]" if text else f"[{kind}]"
    return text


def _seconds(value: object) -> str:
    try:
        return f"{float(value):.3g}s"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def verbose_line(event: LogEvent, elapsed: float) -> str | None:
    """
    The line for C{event}, C{elapsed} seconds after the start; C{None} for
    any event but the client library's attempt, retry, redirect and failure.
    """
    what = event.get("event")
    if event.get("log_namespace") != NAMESPACE or what not in EVENTS:
        return None
    source = event.get("source", "?")
    attempt = event.get("attempt")
    numbered = f"attempt {attempt}" if attempt is not None else "attempt"
    if what == "attempt":
        text = numbered
    elif what == "retry":
        # The reason is on the failure line just before.
        text = "retrying"
        if event.get("delay") is not None:
            text += f" in {_seconds(event['delay'])}"
        text += f" ({numbered})"
    elif what == "redirect":
        status = event.get("status")
        text = f"redirect {status} to" if status is not None else "redirect to"
        text += f" {event.get('location', '?')}"
    else:
        text = f"{numbered} failed"
        why = _why(event)
        if why:
            text += f": {why}"
    return one_line(f"{PROG}: +{elapsed:.3f}s {source}: {text}")


@implementer(ILogObserver)
class VerboseObserver:
    """
    Writes L{verbose_line} of each client event with C{write}.

    @param clock: gives the current time, in seconds.
    @param started: the run's start, on C{clock}.
    @param write: called with each line, without its newline.
    """

    def __init__(
        self, clock: Callable[[], float], started: float, write: Callable[[str], object]
    ) -> None:
        self.clock = clock
        self.started = started
        self.write = write

    def __call__(self, event: LogEvent) -> None:
        line = verbose_line(event, self.clock() - self.started)
        if line is not None:
            self.write(line)
