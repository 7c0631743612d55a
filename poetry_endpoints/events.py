"""
What the client library tells a log observer: one `twisted.logger` event per
step of a download.  The library never prints; a program that wants these
(the command line's ``-v``) adds an observer, filtered on the namespace
``poetry_endpoints.client``.

Every event has these keys, stable from one version to the next:

- ``event``: which step, one of ``attempt``, ``retry``, ``redirect``,
  ``failure`` (`EVENTS`);
- ``source``: the source's name as the user gave it;
- ``log_format``: a one-line English description (``formatEvent`` renders it);
- ``log_namespace``: ``poetry_endpoints.client``; ``log_level``: ``debug``
  for every one (they are details of a download, whose outcome the caller
  gets anyway: a server or program logging at ``info`` shows none of them).

And, by step:

- ``attempt``: an attempt starts (connecting, or sending the HTTP request).
  ``attempt``: its number, 1 for the first.
- ``retry``: a failed attempt will be tried again.  ``attempt``: the number
  of the attempt that will be made; ``delay``: seconds until it starts;
  ``kind`` and ``reason``: the failure that caused it.
- ``redirect``: an HTTP redirect is followed.  ``location``: where to (the
  URL, every byte that is not printable ASCII escaped); ``previous``: where
  from; ``status``: the redirect's status code.
- ``failure``: an attempt failed.  ``attempt``: its number; ``kind`` and
  ``reason``: the `PoetryError`'s kind and reason.  A download that is
  retried has one ``failure`` per failed attempt, each followed by a
  ``retry`` except the last.
"""

from __future__ import annotations

from time import time
from typing import Any, Final

from twisted.logger import Logger, LogLevel

#: The namespace of every event the client emits.
NAMESPACE: Final = "poetry_endpoints.client"
#: The values of the ``event`` key.
EVENTS: Final = ("attempt", "retry", "redirect", "failure")

log: Final = Logger(namespace=NAMESPACE)


def _emit(level: LogLevel, log_format: str, event: dict[str, Any]) -> None:
    # The same event Logger.emit builds, without its per-call checks: one of
    # these is emitted per attempt, thousands a second with many small poems.
    event["log_logger"] = log
    event["log_level"] = level
    event["log_namespace"] = NAMESPACE
    event["log_source"] = None
    event["log_format"] = log_format
    event["log_time"] = time()
    log.observer(event)


def log_attempt(source: str, attempt: int) -> None:
    """An attempt (numbered from 1) starts."""
    _emit(
        LogLevel.debug,
        "{source}: attempt {attempt}",
        {"event": "attempt", "source": source, "attempt": attempt},
    )


def log_retry(source: str, attempt: int, delay: float, kind: str, reason: str) -> None:
    """Attempt number C{attempt} will start in C{delay} seconds, after C{kind} failed."""
    _emit(
        LogLevel.debug,
        "{source}: retrying in {delay:g} s (attempt {attempt}) after {kind}",
        {
            "event": "retry",
            "source": source,
            "attempt": attempt,
            "delay": delay,
            "kind": kind,
            "reason": reason,
        },
    )


def log_redirect(source: str, previous: str, location: str, status: int) -> None:
    """An HTTP redirect from C{previous} to C{location} is followed."""
    _emit(
        LogLevel.debug,
        "{source}: HTTP {status} redirect from {previous} to {location}",
        {
            "event": "redirect",
            "source": source,
            "previous": previous,
            "location": location,
            "status": status,
        },
    )


def log_failure(source: str, attempt: int, kind: str, reason: str) -> None:
    """Attempt number C{attempt} failed with a `PoetryError` of C{kind}."""
    _emit(
        LogLevel.debug,
        "{source}: attempt {attempt} failed: {kind}: {reason}",
        {"event": "failure", "source": source, "attempt": attempt, "kind": kind, "reason": reason},
    )
