"""
`PoetryClient.stream`: bytes to a sink as they arrive, in memory (every phase
of caps, timeouts, cancellation and retries) and over real loopback sockets
(a consumer that pauses the connection, HTTP).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IConsumer, IProducer
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from web_helpers import Page, Stall, WebTest, inline, reactor
from zope.interface import implementer

from poetry_endpoints import PoetryClient, PoetryError, Streamed

SOURCE = "tcp:127.0.0.1:10000"


class Recorded:
    def __init__(self, deferred: Deferred[Any]) -> None:
        self.deferred = deferred
        self.results: list[Any] = []
        deferred.addBoth(self.results.append)

    @property
    def value(self) -> Any:
        assert len(self.results) == 1, self.results
        return self.results[0]

    @property
    def error(self) -> BaseException:
        failure = self.value
        assert isinstance(failure, Failure), failure
        return failure.value  # type: ignore[no-any-return]

    @property
    def kind(self) -> str:
        error = self.error
        assert isinstance(error, PoetryError), error
        return error.kind


@implementer(IConsumer)
class Consumer:
    """An IConsumer that records what it is given and which producer it has."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.producer: IProducer | None = None
        self.registrations = 0

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        assert self.producer is None and streaming
        self.producer = producer
        self.registrations += 1

    def unregisterProducer(self) -> None:
        assert self.producer is not None
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data.append(data)


class Net:
    def __init__(self, **settings: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.client = PoetryClient(self.reactor, **settings)
        self.protocols: dict[int, Any] = {}
        self.transports: dict[int, StringTransport] = {}

    def accept(self, i: int) -> StringTransport:
        host, port, factory = self.reactor.tcpClients[i][:3]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.protocols[i], self.transports[i] = protocol, transport
        return transport

    def send(self, i: int, data: bytes) -> None:
        self.protocols[i].dataReceived(data)

    def close(self, i: int) -> None:
        self.protocols[i].connectionLost(Failure(ConnectionDone()))

    def reset(self, i: int) -> None:
        self.protocols[i].connectionLost(Failure(ConnectionLost("reset")))

    def refuse(self, i: int) -> None:
        factory = self.reactor.tcpClients[i][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[i], Failure(ConnectionRefusedError())
        )

    def aborted(self, i: int) -> bool:
        aborted = self.transports[i].disconnected  # abortConnection, not loseConnection
        if aborted:
            self.protocols[i].connectionLost(Failure(ConnectionLost("aborted")))
        return aborted

    @property
    def attempts(self) -> int:
        return len(self.reactor.tcpClients)

    def idle(self) -> bool:
        return self.reactor.getDelayedCalls() == []


# --- delivery -------------------------------------------------------------------------------


def test_a_callable_sink_gets_each_piece_as_it_arrives() -> None:
    net = Net()
    pieces: list[bytes] = []
    result = Recorded(net.client.stream(SOURCE, pieces.append))
    net.accept(0)
    net.send(0, b"Tyger Tyger, ")
    assert pieces == [b"Tyger Tyger, "]  # before the poem is whole
    net.reactor.advance(2)
    net.send(0, b"burning bright\n")
    assert pieces == [b"Tyger Tyger, ", b"burning bright\n"]
    net.close(0)
    assert result.value == Streamed(SOURCE, 28, 2.0)
    assert net.idle()


def test_a_consumer_has_the_connection_as_its_producer_and_can_pause_it() -> None:
    net = Net(idle_timeout=5)
    consumer = Consumer()
    result = Recorded(net.client.stream(SOURCE, consumer))
    transport = net.accept(0)
    assert consumer.producer is not None
    net.send(0, b"abc")
    consumer.producer.pauseProducing()
    assert transport.producerState == "paused"
    net.reactor.advance(60)  # a paused download is not idle: the consumer is slow, not the server
    assert not result.results
    consumer.producer.resumeProducing()
    assert transport.producerState == "producing"
    net.reactor.advance(4.9)
    net.send(0, b"def")
    net.close(0)
    assert consumer.data == [b"abc", b"def"]
    assert consumer.producer is None, "unregistered once the poem is whole"
    assert result.value.bytes == 6
    assert net.idle()


def test_the_idle_timeout_counts_again_after_a_resume() -> None:
    net = Net(idle_timeout=5)
    consumer = Consumer()
    result = Recorded(net.client.stream(SOURCE, consumer))
    net.accept(0)
    assert consumer.producer is not None
    consumer.producer.pauseProducing()
    consumer.producer.resumeProducing()
    net.reactor.advance(5)
    assert result.kind == "timeout"
    assert net.aborted(0)
    assert consumer.producer is None
    assert net.idle()


def test_a_consumer_that_stops_the_producer_cancels_and_aborts() -> None:
    net = Net(retries=3)
    consumer = Consumer()
    result = Recorded(net.client.stream(SOURCE, consumer))
    net.accept(0)
    net.send(0, b"abc")
    assert consumer.producer is not None
    consumer.producer.stopProducing()
    assert result.kind == "cancelled"
    assert net.aborted(0)
    assert net.attempts == 1
    assert net.idle()


def test_a_sink_that_raises_fails_with_its_own_exception_and_aborts() -> None:
    net = Net(retries=3)

    def sink(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    result = Recorded(net.client.stream(SOURCE, sink))
    net.accept(0)
    net.send(0, b"abc")
    assert isinstance(result.error, OSError)
    assert net.aborted(0)
    net.reactor.advance(60)
    assert net.attempts == 1
    assert net.idle()


def test_a_sink_that_is_neither_callable_nor_a_consumer_is_refused() -> None:
    net = Net()
    with pytest.raises(TypeError, match=r"^sink must be a callable or an IConsumer"):
        net.client.stream(SOURCE, b"not a sink")  # type: ignore[arg-type]
    assert net.attempts == 0


# --- caps, timeouts, cancellation -----------------------------------------------------------


def test_the_cap_applies_to_a_stream() -> None:
    net = Net(max_bytes=10)
    pieces: list[bytes] = []
    result = Recorded(net.client.stream(SOURCE, pieces.append))
    net.accept(0)
    net.send(0, b"x" * 8)
    net.send(0, b"x" * 8)
    assert result.kind == "too-large"
    assert pieces == [b"x" * 8], "nothing past the cap reaches the sink"
    assert net.aborted(0)
    assert net.idle()


def test_the_whole_attempt_timeout_applies_to_a_stream() -> None:
    net = Net(timeout=3, idle_timeout=None)
    consumer = Consumer()
    result = Recorded(net.client.stream(SOURCE, consumer))
    net.accept(0)
    net.send(0, b"a")
    assert consumer.producer is not None
    consumer.producer.pauseProducing()  # a paused stream still has the whole-attempt limit
    net.reactor.advance(3)
    assert result.kind == "timeout"
    assert net.aborted(0)
    assert net.idle()


def test_cancel_while_waiting_for_a_slot() -> None:
    net = Net(concurrency=1)
    first = Recorded(net.client.stream(SOURCE, list().append))
    second = Recorded(net.client.stream(SOURCE, list().append))
    assert net.attempts == 1
    second.deferred.cancel()
    assert second.kind == "cancelled"
    assert "slot" in str(second.error)
    first.deferred.cancel()
    assert first.kind == "cancelled"
    assert net.attempts == 1
    assert net.idle()


def test_cancel_while_connecting() -> None:
    net = Net()
    result = Recorded(net.client.stream(SOURCE, list().append))
    result.deferred.cancel()
    assert result.kind == "cancelled"
    assert net.reactor.connectors[0].stoppedConnecting
    assert net.idle()


def test_cancel_mid_stream_aborts() -> None:
    net = Net()
    consumer = Consumer()
    result = Recorded(net.client.stream(SOURCE, consumer))
    net.accept(0)
    net.send(0, b"abc")
    result.deferred.cancel()
    assert result.kind == "cancelled"
    assert net.aborted(0)
    assert consumer.producer is None
    assert net.idle()


def test_cancel_while_waiting_to_retry() -> None:
    net = Net(retries=2, backoff=5)
    result = Recorded(net.client.stream(SOURCE, list().append))
    net.refuse(0)
    assert not net.idle()
    result.deferred.cancel()
    assert result.kind == "cancelled"
    assert "retry" in str(result.error)
    assert net.idle()


# --- retries --------------------------------------------------------------------------------


def test_attempts_that_delivered_nothing_are_retried() -> None:
    net = Net(retries=2, backoff=1)
    pieces: list[bytes] = []
    result = Recorded(net.client.stream(SOURCE, pieces.append))
    net.refuse(0)
    net.reactor.advance(1)
    net.accept(1)
    net.reset(1)  # connected, lost before any byte: incomplete, nothing delivered
    net.reactor.advance(2)
    net.accept(2)
    net.send(2, b"whole")
    net.close(2)
    assert result.value.bytes == 5
    assert pieces == [b"whole"]
    assert net.attempts == 3
    assert net.idle()


def test_an_attempt_that_delivered_bytes_is_not_retried() -> None:
    net = Net(retries=3, backoff=1)
    pieces: list[bytes] = []
    result = Recorded(net.client.stream(SOURCE, pieces.append))
    net.accept(0)
    net.send(0, b"half a po")
    net.reset(0)
    assert result.kind == "incomplete"
    net.reactor.advance(60)
    assert net.attempts == 1
    assert pieces == [b"half a po"]
    assert net.idle()


# --- real sockets ---------------------------------------------------------------------------

BIG = 32 * 1024 * 1024


def _serve_bytes(size: int) -> tuple[socket.socket, threading.Thread]:
    """A raw server that sends C{size} bytes to one client, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)

    def run() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(20)
            block = b"p" * (1024 * 1024)
            sent = 0
            try:
                while sent < size:
                    connection.sendall(block[: size - sent])
                    sent += min(len(block), size - sent)
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


@implementer(IConsumer)
class SlowConsumer(Consumer):
    """Pauses its producer at the first write; counts bytes, keeps none."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received == len(data):
            assert self.producer is not None
            self.producer.pauseProducing()


class LoopbackTests(WebTest):
    async def held_while_paused(
        self, consumer: SlowConsumer, streaming: Deferred[Streamed]
    ) -> Streamed:
        """
        Check that nothing more is read once C{consumer}'s first write has
        paused it, then resume it; what C{streaming} fires with.
        """
        for _ in range(200):  # until the first write paused it
            if consumer.received:
                break
            await deferLater(reactor, 0.01)
        await deferLater(reactor, 0.3)
        held = consumer.received
        await deferLater(reactor, 0.3)
        # Paused: nothing more is read, however much the server has sent
        # (the rest waits in the kernel's buffers and the server's sendall).
        self.assertEqual(consumer.received, held)
        self.assertLess(held, 4 * 1024 * 1024)
        assert consumer.producer is not None
        consumer.producer.resumeProducing()
        return await streaming

    @inline
    async def test_a_paused_consumer_stops_the_reading(self) -> None:
        listener, thread = _serve_bytes(BIG)
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        consumer = SlowConsumer()
        client = self.client(max_bytes=BIG)
        streaming = client.stream(f"tcp:127.0.0.1:{port}", consumer)
        streamed = await self.held_while_paused(consumer, streaming)
        self.assertEqual(streamed.bytes, BIG)
        self.assertEqual(consumer.received, BIG)
        thread.join(5)

    @inline
    async def test_http_streams_too(self) -> None:
        poem = b"I wandered lonely as a cloud\n" * 10000
        root = Resource()
        root.putChild(b"poem", Page(poem, b"text/plain"))
        base, _ = self.serve(root)
        pieces: list[bytes] = []
        streamed = await self.client().stream(base + "poem", pieces.append)
        self.assertEqual(b"".join(pieces), poem)
        self.assertEqual((streamed.source, streamed.bytes), (base + "poem", len(poem)))

    @inline
    async def test_http_an_error_page_never_reaches_the_sink(self) -> None:
        root = Resource()
        root.putChild(b"gone", Page(b"not here", b"text/plain", code=404))
        base, _ = self.serve(root)
        pieces: list[bytes] = []
        error = await self.fail_with(self.client().stream(base + "gone", pieces.append))
        self.assertEqual(error.kind, "http-status")
        self.assertEqual(pieces, [])

    @inline
    async def test_http_a_paused_consumer_stops_the_reading(self) -> None:
        poem = b"q" * BIG
        root = Resource()
        root.putChild(b"poem", Page(poem, b"text/plain"))
        base, _ = self.serve(root)
        consumer = SlowConsumer()
        streaming = self.client(max_bytes=BIG).stream(base + "poem", consumer)
        streamed = await self.held_while_paused(consumer, streaming)
        self.assertEqual(streamed.bytes, BIG)

    @inline
    async def test_http_cancel_mid_body_aborts_the_connection(self) -> None:
        stall = Stall(b"The first line, then nothing\n")
        root = Resource()
        root.putChild(b"stall", stall)
        base, tracked = self.serve(root)
        pieces: list[bytes] = []

        def sink(data: bytes) -> None:
            pieces.append(data)
            reactor.callLater(0, streaming.cancel)

        streaming = self.client(idle_timeout=None, retries=3).stream(base + "stall", sink)
        error = await self.fail_with(streaming)
        self.assertEqual(error.kind, "cancelled")
        self.assertEqual(pieces, [b"The first line, then nothing\n"])
        await tracked.quiet()
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)  # cut, not closed gently
        self.assertEqual(len(stall.requests), 1)
