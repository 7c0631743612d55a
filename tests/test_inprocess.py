"""
The in-process runs' own check (`inprocess.Leftovers`): a run that is about
to stop with a connection or a timer still on its reactor is caught, which
a look after the run cannot do (the reactor's shutdown closes whatever is
still open).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from inprocess import WAIT, Leftovers, _assert_nothing_left, _close
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol


def _run(then: Callable[[Any, Protocol], object], *, turn: bool = True) -> tuple[Any, Leftovers]:
    """
    Connect to a loopback listener on a fresh reactor, call C{then(reactor,
    protocol)}, and stop the reactor one turn later, as the runner does
    (without C{turn}: at once).
    """
    reactor: Any = EPollReactor()
    guard = reactor.callLater(WAIT, reactor.stop)
    leftovers = Leftovers(reactor, guard)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1])

        def connected(protocol: Protocol) -> None:
            then(reactor, protocol)
            if turn:
                reactor.callLater(0, reactor.stop)
            else:
                reactor.stop()

        def failed(failure: object) -> None:
            reactor.stop()
            raise AssertionError(failure)

        endpoint.connect(Factory.forProtocol(Protocol)).addCallbacks(connected, failed)
        reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    return reactor, leftovers


def test_a_connection_left_open_is_flagged_though_the_shutdown_closes_it() -> None:
    reactor, leftovers = _run(lambda reactor, protocol: None)
    try:
        assert leftovers.noted
        with pytest.raises(AssertionError, match="was ending with connections left"):
            leftovers.check(("test",))
        _assert_nothing_left(reactor, ("test",))  # the shutdown closed it: too late to see
    finally:
        _close(reactor)


def test_a_timer_left_is_flagged() -> None:
    reactor, leftovers = _run(
        lambda reactor, protocol: (
            reactor.callLater(WAIT, lambda: None),
            protocol.transport.abortConnection(),  # type: ignore[union-attr]
        )
    )
    try:
        with pytest.raises(AssertionError, match="was ending with timers left"):
            leftovers.check(("test",))
    finally:
        for call in reactor.getDelayedCalls():
            call.cancel()
        _close(reactor)


def test_an_aborted_connection_is_gone_a_turn_later() -> None:
    reactor, leftovers = _run(
        lambda reactor, protocol: protocol.transport.abortConnection()  # type: ignore[union-attr]
    )
    try:
        leftovers.check(("test",))
    finally:
        _close(reactor)


def test_a_connection_closing_with_nothing_to_send_is_not_left_behind() -> None:
    # What a "Connection: close" response leaves: twisted.web's loseConnection,
    # which only waits for the socket to be writable, stopped before it is.
    closing: list[Any] = []

    def close(reactor: Any, protocol: Protocol) -> None:
        protocol.transport.loseConnection()  # type: ignore[union-attr]
        closing.append(protocol.transport)

    reactor, leftovers = _run(close, turn=False)
    try:
        assert leftovers.let_through == closing
        leftovers.check(("test",))
    finally:
        _close(reactor)
