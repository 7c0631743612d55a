"""
Loopback web servers for the HTTP and TLS tests, in the trial reactor.

`Tracked` wraps a server factory to see, from the server's side, every
connection and how it ended: an abort by the client (RST) arrives as
``ConnectionLost``, a gentle close as ``ConnectionDone``.  `WebTest` starts
servers on 127.0.0.1:0 and, after each test, closes the clients' pools,
waits for the servers' connections to end and stops listening, so trial's
dirty-reactor check passes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from poetry_endpoints import PoetryClient, PoetryError

reactor: Any = _reactor


def inline(
    test: Callable[[Any], Coroutine[Any, Any, None]],
) -> Callable[[Any], Deferred[None]]:
    """Run an C{async def} test method as a Deferred, which trial waits for."""

    @functools.wraps(test)
    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    return run


class _Recorded(ProtocolWrapper):
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost.append(reason)
        super().connectionLost(reason)


class Tracked(WrappingFactory):
    """A server factory whose connections are counted and whose endings are kept."""

    protocol = _Recorded

    def __init__(self, wrapped: Factory) -> None:
        super().__init__(wrapped)
        self.accepted = 0
        self.lost: list[Failure] = []
        self._waiting: list[Deferred[None]] = []

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        self.accepted += 1
        super().registerProtocol(p)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def quiet(self) -> Deferred[None]:
        """Fires when no connection is open."""
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d


class WebTest(TestCase):
    """Servers and clients that are shut down in order after each test."""

    timeout = 20

    def setUp(self) -> None:
        self._clients: list[PoetryClient] = []
        self._ports: list[tuple[IListeningPort, Tracked]] = []
        self.addCleanup(self._shut_down)

    def listen(
        self,
        factory: Factory,
        options: CertificateOptions | None = None,
        interface: str = "127.0.0.1",
    ) -> tuple[int, Tracked]:
        """Listen on C{interface}, port 0, with TLS if C{options}; the port and the tracker."""
        port, tracked = self.listening(factory, options, interface)
        return port.getHost().port, tracked

    def listening(
        self,
        factory: Factory,
        options: CertificateOptions | None = None,
        interface: str = "127.0.0.1",
    ) -> tuple[IListeningPort, Tracked]:
        """Like L{listen}, but the listening port itself."""
        tracked = Tracked(factory)
        if options is None:
            port = reactor.listenTCP(0, tracked, interface=interface)
        else:
            port = reactor.listenSSL(0, tracked, options, interface=interface)
        self._ports.append((port, tracked))
        return port, tracked

    def serve(
        self, resource: Resource, options: CertificateOptions | None = None
    ) -> tuple[str, Tracked]:
        """A twisted.web site for C{resource}; its base URL (ending in /) and tracker."""
        site = Site(resource)
        site.displayTracebacks = False
        port, tracked = self.listen(site, options)
        scheme = "http" if options is None else "https"
        return f"{scheme}://127.0.0.1:{port}/", tracked

    def client(self, **settings: Any) -> PoetryClient:
        """A client that is closed after the test."""
        client = PoetryClient(reactor, **settings)
        self._clients.append(client)
        return client

    async def fail_with(self, d: Deferred[Any]) -> PoetryError:
        """The `PoetryError` C{d} fails with; fails the test if it succeeds."""
        try:
            result = await d
        except PoetryError as e:
            return e
        raise self.failureException(f"expected a PoetryError, got {result!r}")

    async def _shut_down(self) -> None:
        for client in self._clients:
            await client.close()
        for port, tracked in self._ports:
            await tracked.quiet()
            await port.stopListening()


class Page(Resource):
    """Fixed bytes with a fixed Content-Type (and status)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes, code: int = 200) -> None:
        Resource.__init__(self)
        self.body = body
        self.content_type = content_type
        self.code = code

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", self.content_type)
        return self.body


class Redirect(Resource):
    """A 302 to C{location} (or none at all)."""

    isLeaf = True

    def __init__(self, location: bytes | None) -> None:
        Resource.__init__(self)
        self.location = location

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(302)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return b""


class Stall(Resource):
    """Sends C{first} (maybe nothing, maybe not even headers), then never finishes."""

    isLeaf = True

    def __init__(self, first: bytes, *, headers: bool = True) -> None:
        Resource.__init__(self)
        self.first = first
        self.headers = headers
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> Any:
        self.requests.append(request)
        if self.headers:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(self.first)
        return NOT_DONE_YET


class RawHTTP(Protocol):
    """Answers any request with C{response} bytes, then closes the connection cleanly."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self._seen = b""

    def dataReceived(self, data: bytes) -> None:
        self._seen += data
        if b"\r\n\r\n" in self._seen:
            self.transport.write(self.response)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


def raw_factory(response: bytes) -> Factory:
    """A factory of `RawHTTP` servers."""
    return Factory.forProtocol(lambda: RawHTTP(response))
