"""
The connect path on its own (`connect_poem`, `QuietEndpoint`), the client's
fixed settings, its async context manager and its log events.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from web_helpers import Page, Redirect, WebTest, inline, reactor

from conftest import subprocess_env
from poetry_endpoints import PoetryClient, PoetryError, PoetryProtocol
from poetry_endpoints.connect import QuietEndpoint, connect_poem
from poetry_endpoints.events import EVENTS, NAMESPACE

POEM = b"So much depends\nupon\na red wheel\nbarrow\n"


class Recorded:
    """What a Deferred fired with, kept without leaving an unhandled error."""

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.results: list[Any] = []
        deferred.addBoth(self.results.append)

    @property
    def error(self) -> PoetryError:
        assert len(self.results) == 1, self.results
        failure = self.results[0]
        assert isinstance(failure, Failure) and isinstance(failure.value, PoetryError), failure
        return failure.value


def memory_attempt() -> tuple[MemoryReactorClock, Deferred[bytes]]:
    reactor = MemoryReactorClock()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", 10000)
    protocol = PoetryProtocol("here", reactor, idle_timeout=5)
    return reactor, connect_poem(endpoint, protocol)


def accept(reactor: MemoryReactorClock) -> tuple[Protocol, StringTransport]:
    factory = reactor.tcpClients[0][2]
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 10000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


# --- connect_poem, on its own ---------------------------------------------------------------


def test_connect_poem_fires_with_the_poem_through_a_quiet_factory() -> None:
    reactor, attempt = memory_attempt()
    factory = reactor.tcpClients[0][2]
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        factory.doStart()  # what a real connector calls, and where the noise comes from
        factory.doStop()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert logged == []
    protocol, _ = accept(reactor)
    protocol.dataReceived(POEM)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert Recorded(attempt).results == [POEM]
    assert reactor.getDelayedCalls() == []


def test_connect_poem_refused_is_connect_failed() -> None:
    reactor, attempt = memory_attempt()
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
    error = Recorded(attempt).error
    assert (error.kind, error.source) == ("connect-failed", "here")
    assert reactor.getDelayedCalls() == []


def test_connect_poem_cancelled_while_connecting_stops_connecting() -> None:
    reactor, attempt = memory_attempt()
    recorded = Recorded(attempt)
    attempt.cancel()
    assert recorded.error.kind == "cancelled"
    assert "while connecting" in str(recorded.error)
    assert reactor.connectors[0].stoppedConnecting
    assert reactor.getDelayedCalls() == []


def test_connect_poem_cancelled_once_connected_aborts_the_connection() -> None:
    reactor, attempt = memory_attempt()
    recorded = Recorded(attempt)
    protocol, transport = accept(reactor)
    protocol.dataReceived(b"So much")
    attempt.cancel()
    assert recorded.error.kind == "cancelled"
    assert "after 7 bytes" in str(recorded.error)
    assert transport.disconnected  # StringTransport.abortConnection, not loseConnection
    assert reactor.getDelayedCalls() == []


def test_quiet_endpoint_silences_the_factory_and_delegates() -> None:
    reactor = MemoryReactorClock()
    factory = Factory.forProtocol(Protocol)
    assert factory.noisy
    QuietEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", 10000)).connect(factory)
    assert factory.noisy is False
    assert reactor.tcpClients[0][:2] == ("127.0.0.1", 10000)


# --- settings -------------------------------------------------------------------------------


def test_settings_are_one_immutable_object() -> None:
    client = PoetryClient(MemoryReactorClock(), timeout=3, max_bytes=10)
    assert (client.settings.timeout, client.settings.max_bytes) == (3, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.settings.timeout = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.timeout = 5  # type: ignore[misc]
    assert client.timeout == 3


@pytest.mark.parametrize("encoding", ["rot13", "base64", "zlib", "punycode", "idna"])
def test_an_encoding_that_cannot_decode_a_poem_is_refused_at_construction(encoding: str) -> None:
    with pytest.raises(ValueError, match=f"^encoding '{encoding}' is "):
        PoetryClient(MemoryReactorClock(), encoding=encoding)


def test_an_unknown_encoding_is_refused_at_construction() -> None:
    with pytest.raises(LookupError):
        PoetryClient(MemoryReactorClock(), encoding="no-such-codec")


# --- log events -----------------------------------------------------------------------------


class Events:
    """The client's log events while in use."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> list[dict[str, Any]]:
        globalLogPublisher.addObserver(self._observe)
        return self.seen

    def __exit__(self, *exc_info: object) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == NAMESPACE:
            self.seen.append(event)


def test_attempts_failures_and_retries_are_logged_with_stable_keys() -> None:
    reactor = MemoryReactorClock()
    client = PoetryClient(reactor, retries=1, backoff=2)
    with Events() as seen:
        recorded = Recorded(client.get("tcp:127.0.0.1:10000"))
        for i in range(2):
            factory = reactor.tcpClients[i][2]
            factory.clientConnectionFailed(reactor.connectors[i], Failure(ConnectionRefusedError()))
            reactor.advance(2)
    assert recorded.error.kind == "connect-failed"
    assert [e["event"] for e in seen] == ["attempt", "failure", "retry", "attempt", "failure"]
    assert {e["event"] for e in seen} <= set(EVENTS)
    assert all(e["source"] == "tcp:127.0.0.1:10000" for e in seen)
    assert [e.get("attempt") for e in seen] == [1, 1, 2, 2, 2]
    retry = seen[2]
    assert (retry["delay"], retry["kind"]) == (2, "connect-failed")
    assert seen[1]["kind"] == "connect-failed" and "refused" in seen[1]["reason"]


def test_no_factory_noise_is_logged_for_a_download() -> None:
    reactor = MemoryReactorClock()
    client = PoetryClient(reactor)
    with Events() as seen:
        Recorded(client.get("tcp:127.0.0.1:10000"))
    assert [e["event"] for e in seen] == ["attempt"]


class LoopbackTests(WebTest):
    @inline
    async def test_no_starting_factory_noise_over_a_real_connection(self) -> None:
        port, _ = self.listen(Factory.forProtocol(lambda: _Once(POEM)))
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        try:
            poem = await self.client().get(f"tcp:127.0.0.1:{port}")
        finally:
            globalLogPublisher.removeObserver(seen.append)
        self.assertEqual(poem.data, POEM)
        noise = [e for e in seen if "factory" in str(e.get("log_format", "")).lower()]
        self.assertEqual(noise, [])

    @inline
    async def test_a_redirect_followed_is_logged_from_and_to(self) -> None:
        root = Resource()
        root.putChild(b"poem", Page(POEM, b"text/plain"))
        root.putChild(b"old", Redirect(b"/poem"))
        base, _ = self.serve(root)
        with Events() as seen:
            poem = await self.client().get(base + "old")
        self.assertEqual(poem.data, POEM)
        redirects = [e for e in seen if e["event"] == "redirect"]
        self.assertEqual(len(redirects), 1)
        self.assertEqual(redirects[0]["previous"], base + "old")
        self.assertEqual(redirects[0]["location"], base + "poem")
        self.assertEqual(redirects[0]["status"], 302)

    @inline
    async def test_async_with_closes_the_client(self) -> None:
        root = Resource()
        root.putChild(b"poem", Page(POEM, b"text/plain"))
        base, tracked = self.serve(root)
        async with PoetryClient(reactor) as client:
            poem = await client.get(base + "poem")
            self.assertEqual(poem.data, POEM)
        await tracked.quiet()  # the pooled connection was closed on the way out


class _Once(Protocol):
    def __init__(self, poem: bytes) -> None:
        self._poem = poem

    def connectionMade(self) -> None:
        self.transport.write(self._poem)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def test_async_with_under_asyncio_waits_for_the_close() -> None:
    program = """
import asyncio
from twisted.web.server import Site
from twisted.web.resource import Resource
from twisted.web.static import Data
from poetry_endpoints import PoetryClient
from poetry_endpoints.aio import as_future, twisted_reactor

async def main():
    async with twisted_reactor() as reactor:
        root = Resource()
        root.putChild(b"poem", Data(b"a poem\\n", "text/plain"))
        site = Site(root)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        # HTTP: the client keeps the connection, so leaving waits for it to close.
        async with PoetryClient(reactor) as client:
            poem = await as_future(client.get(f"http://127.0.0.1:{port.getHost().port}/poem"))
        print(poem.text, end="")
        await as_future(port.stopListening())

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "a poem\n", "")
