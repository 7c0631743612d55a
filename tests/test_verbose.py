"""``get -v``'s lines, made from the client's log events (in process)."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogPublisher

from poetry_endpoints.cli.verbose import NAMESPACE, VerboseObserver, verbose_line

SRC = "tcp:127.0.0.1:1"


def _event(**keys: Any) -> dict[str, Any]:
    return {"log_namespace": NAMESPACE, "source": SRC, **keys}


def test_each_client_event_is_one_line_with_the_time_since_start() -> None:
    assert verbose_line(_event(event="attempt", attempt=1), 0.0123) == (
        "poetry-endpoints: +0.012s tcp:127.0.0.1:1: attempt 1"
    )
    failure = _event(event="failure", attempt=1, kind="connect-failed", reason="refused")
    assert verbose_line(failure, 1) == (
        "poetry-endpoints: +1.000s tcp:127.0.0.1:1: attempt 1 failed: refused [connect-failed]"
    )
    retry = _event(event="retry", attempt=2, delay=0.5, kind="connect-failed", reason="refused")
    assert verbose_line(retry, 1.0) == (
        "poetry-endpoints: +1.000s tcp:127.0.0.1:1: retrying in 0.5s (attempt 2)"
    )
    redirect = _event(event="redirect", source="http://h/a", location="http://h/b", status=301)
    assert verbose_line(redirect, 2.5) == (
        "poetry-endpoints: +2.500s http://h/a: redirect 301 to http://h/b"
    )


def test_other_events_are_not_shown() -> None:
    assert verbose_line({"log_namespace": NAMESPACE, "log_format": "something"}, 0) is None
    assert verbose_line(_event(event="unknown"), 0) is None
    # Another library's event with the same key is not the client's.
    assert verbose_line({"log_namespace": "other", "event": "attempt", "source": "s"}, 0) is None


def test_what_a_server_sent_cannot_drive_the_terminal_or_split_the_line() -> None:
    hostile = _event(event="redirect", location="http://h/\x1b[2J\nfake line\u202e", status=302)
    line = verbose_line(hostile, 0)
    assert line is not None
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    assert line.endswith("redirect 302 to http://h/\\x1b[2J\\nfake line\\u202e")


def test_the_observer_writes_a_line_per_client_event() -> None:
    written: list[str] = []
    now = [10.0]
    publisher = LogPublisher()
    publisher.addObserver(VerboseObserver(lambda: now[0], 9.5, written.append))
    publisher(_event(event="attempt", source="s", attempt=2))
    publisher({"log_format": "unrelated"})
    assert written == ["poetry-endpoints: +0.500s s: attempt 2"]
