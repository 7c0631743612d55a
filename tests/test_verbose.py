"""``get -v``'s lines, made from the client's log events (in process)."""

from __future__ import annotations

from twisted.logger import LogPublisher

from poetry_endpoints.cli.verbose import VerboseObserver, verbose_line


def test_each_client_event_is_one_line_with_the_time_since_start() -> None:
    src = "tcp:127.0.0.1:1"
    assert verbose_line({"event": "attempt", "source": src, "attempt": 1}, 0.0123) == (
        "poetry-endpoints: +0.012s tcp:127.0.0.1:1: attempt 1"
    )
    retry = {
        "event": "retry",
        "source": src,
        "attempt": 1,
        "delay": 0.5,
        "kind": "connect-failed",
        "reason": "connection refused",
    }
    assert verbose_line(retry, 1.0) == (
        "poetry-endpoints: +1.000s tcp:127.0.0.1:1: retry 1 in 0.5s: "
        "connection refused [connect-failed]"
    )
    redirect = {"event": "redirect", "source": "http://h/a", "location": "http://h/b"}
    assert verbose_line(redirect, 2.5) == (
        "poetry-endpoints: +2.500s http://h/a: redirect to http://h/b"
    )
    failure = {"event": "failure", "source": src, "kind": "timeout", "reason": "took too long"}
    assert verbose_line(failure, 3) == (
        "poetry-endpoints: +3.000s tcp:127.0.0.1:1: failed: took too long [timeout]"
    )


def test_other_events_are_not_shown() -> None:
    assert verbose_line({"log_format": "something else"}, 0) is None
    assert verbose_line({"event": "unknown", "source": "x"}, 0) is None


def test_what_a_server_sent_cannot_drive_the_terminal_or_split_the_line() -> None:
    hostile = {
        "event": "redirect",
        "source": "http://h/a",
        "location": "http://h/\x1b[2J\nfake line\u202e",
    }
    line = verbose_line(hostile, 0)
    assert line is not None
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    assert line.endswith("redirect to http://h/\\x1b[2J\\nfake line\\u202e")


def test_the_observer_writes_a_line_per_client_event() -> None:
    written: list[str] = []
    now = [10.0]
    publisher = LogPublisher()
    publisher.addObserver(VerboseObserver(lambda: now[0], 9.5, written.append))
    publisher({"event": "attempt", "source": "s", "attempt": 2})
    publisher({"log_format": "unrelated"})
    assert written == ["poetry-endpoints: +0.500s s: attempt 2"]
