"""How Twisted's failures become `PoetryError` kinds and one-line reasons."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet import error
from twisted.python.failure import Failure

from poetry_endpoints import PoetryError
from poetry_endpoints.errors import RETRYABLE
from poetry_endpoints.reasons import connect_error, describe, lost_error

SOURCE = "tcp:127.0.0.1:10000"


@pytest.mark.parametrize(
    ("exception", "reason"),
    [
        (error.ConnectionRefusedError("Connection refused"), "connection refused"),
        (error.DNSLookupError("no results for hostname lookup: x"), "name did not resolve"),
        (error.TimeoutError("User timeout caused connection failure."), "timed out"),
        (error.NoRouteError(), "no route to host"),
        (FileNotFoundError(2, "No such file or directory"), "no such socket file"),
        (error.ConnectError("No such file or directory"), "no such socket file"),
    ],
)
def test_connect_failures_are_connect_failed(exception: Exception, reason: str) -> None:
    result = connect_error(SOURCE, Failure(exception))
    assert result.kind == "connect-failed"
    assert result.kind in RETRYABLE
    assert result.source == SOURCE
    assert reason in str(result)
    assert str(result).startswith(f"{SOURCE}: could not connect: ")
    assert "\n" not in str(result)


def test_describe_drops_twisted_class_clutter() -> None:
    text = describe(Failure(error.ConnectError("Network is unreachable.")))
    assert text == "Network is unreachable"
    assert describe(Failure(error.ConnectError())) == "An error occurred while connecting"


def test_describe_never_returns_nothing() -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            return ""

    assert describe(Failure(Mute())) == "Mute"


def test_a_poetry_error_passes_through_unchanged() -> None:
    original = PoetryError("other", "timeout", "already classified")
    assert connect_error(SOURCE, Failure(original)) is original


def test_a_tls_failure_is_tls() -> None:
    failure = Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))
    connecting = connect_error(SOURCE, failure)
    lost = lost_error(SOURCE, failure, 0)
    for result in (connecting, lost):
        assert result.kind == "tls"
        assert "certificate verify failed" in str(result)
    assert "tls" not in RETRYABLE


@pytest.mark.parametrize(
    "exception",
    [error.ConnectionLost("reset"), error.ConnectionAborted(), error.TimeoutError()],
)
def test_a_lost_connection_is_incomplete_with_the_count(exception: Exception) -> None:
    result = lost_error(SOURCE, Failure(exception), 12345)
    assert result.kind == "incomplete"
    assert "12345 bytes" in str(result)
    assert "incomplete" in str(result)
