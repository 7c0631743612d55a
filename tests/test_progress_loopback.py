"""
A progress callback that raises, over real loopback sockets: the download fails
with the callback's own exception, the connection is cut, and nothing is
logged (trial fails a test that logs an unhandled error).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from poetry_endpoints import PoetryClient

reactor: Any = _reactor


class CallbackBug(Exception):
    pass


class Endless(Protocol):
    """Sends a first piece (after an HTTP request head, if asked), then never ends."""

    def __init__(self, head: bytes | None) -> None:
        self.head = head
        self.request = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.head is None:
            self.transport.write(b"The first line of a poem that never ends\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.request += data
        if self.head is not None and b"\r\n\r\n" in self.request:
            self.transport.write(self.head + b"x" * 100)  # type: ignore[union-attr]
            self.head = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class EndlessFactory(Factory):
    def __init__(self, head: bytes | None = None) -> None:
        self.head = head
        self.connections: list[Endless] = []

    def buildProtocol(self, addr: Any) -> Endless:
        protocol = Endless(self.head)
        self.connections.append(protocol)
        return protocol


def raising(received: int) -> None:
    raise CallbackBug(f"progress callback broke at {received} bytes")


class RaisingProgressTests(TestCase):
    timeout = 60

    async def check(self, factory: EndlessFactory, source: str) -> None:
        client = PoetryClient(reactor, timeout=30, retries=2)
        try:
            with self.assertRaises(CallbackBug):
                await client.get(source, progress=raising)
            self.assertEqual(len(factory.connections), 1, "not retried")
            await factory.connections[0].closed  # cut: the server never ends it
        finally:
            await client.close()

    async def test_tcp(self) -> None:
        factory = EndlessFactory()
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        await self.check(factory, f"tcp:127.0.0.1:{port.getHost().port}")

    async def test_http(self) -> None:
        factory = EndlessFactory(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        await self.check(factory, f"http://127.0.0.1:{port.getHost().port}/")
