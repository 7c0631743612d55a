"""
Connecting a `PoetryProtocol` to an endpoint: the endpoint source kind.

`connect_poem` is the whole path for one endpoint attempt, usable on its
own: Twisted's `connectProtocol` through a `QuietEndpoint`, then the
protocol's own ``finished``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from .errors import PoetryError
from .protocol import PoetryProtocol
from .reasons import connect_error


@implementer(IStreamClientEndpoint)
class QuietEndpoint:
    """
    An endpoint that connects as the one it wraps, with a quiet factory.

    Each C{connectProtocol} builds a factory that logs "Starting factory"
    and "Stopping factory" for every connection (twisted/twisted#6549):
    with many small downloads that logging costs a quarter of the time.
    Setting the factory's public C{noisy} attribute to C{False} before
    delegating silences it, without a factory class of our own.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        """Silence C{protocolFactory}, then connect it with the wrapped endpoint."""
        protocolFactory.noisy = False  # type: ignore[attr-defined]
        return self.endpoint.connect(protocolFactory)


def connect_poem(endpoint: IStreamClientEndpoint, protocol: PoetryProtocol) -> Deferred[bytes]:
    """
    Connect C{protocol} to C{endpoint} and wait for its poem.

    @return: fires with what C{protocol.finished} fires with (the poem's
        bytes, or a `PoetryError`); a failure to connect is kind
        ``connect-failed``.  Cancelling it at any moment fails it with kind
        ``cancelled``: while connecting, the connection attempt is
        cancelled (which endpoints report in ways of their own, all turned
        into ``cancelled`` here); once connected, the connection is aborted.
        Either way nothing is left in the reactor.
    """
    finished = protocol.finished
    assert finished is not None, "a protocol is connected once"
    return _Attempt(endpoint, protocol, finished).result


class _Attempt:
    """One connection attempt, and what cancelling it means in each phase."""

    def __init__(
        self, endpoint: IStreamClientEndpoint, protocol: PoetryProtocol, finished: Deferred[bytes]
    ) -> None:
        self._source = protocol.source
        self._finished = finished
        # Endpoints report their own cancellation in different ways:
        # ConnectingCancelledError (not a CancelledError), and, while
        # HostnameEndpoint resolves, a DNSLookupError.  Only this flag tells
        # a cancel from a real connection failure, which may be retried.
        self._cancelled = False
        self._connecting: Deferred[Any] = connectProtocol(QuietEndpoint(endpoint), protocol)
        self.result: Deferred[bytes] = Deferred(self._cancel)
        self._connecting.addCallbacks(self._connected, self._not_connected)
        self._connecting.chainDeferred(self.result)

    def _cancel(self, _: Deferred[bytes]) -> None:
        self._cancelled = True
        # Connected: the result is waiting on `finished`, which the chain
        # cancels too, and cancelling `finished` aborts the connection.
        self._connecting.cancel()

    def _connected(self, _: object) -> Deferred[bytes]:
        return self._finished

    def _not_connected(self, failure: Failure) -> Failure:
        if self._cancelled or failure.check(CancelledError, ConnectingCancelledError):
            error = PoetryError(self._source, "cancelled", "cancelled while connecting")
            return Failure(error)
        return Failure(connect_error(self._source, failure))
