"""
`poetry_endpoints.testing`: the in-memory source on a fake clock, and the
loopback server fixture in the real reactor.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IStreamClientEndpoint, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from conftest import unix_socket_path
from poetry_endpoints import EndpointSource, Poem, PoetryClient, PoetryError
from poetry_endpoints.servers.faults import BAD_UTF8
from poetry_endpoints.testing import MemoryPoetrySource, poetry_server

reactor: Any = _reactor

POEM = b"Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"


def poetry_error(case: SynchronousTestCase, d: Deferred[Any]) -> PoetryError:
    error = case.failureResultOf(d, PoetryError).value
    assert isinstance(error, PoetryError)
    return error


class MemorySourceTests(SynchronousTestCase):
    """The in-memory source: the package's own server, no socket, a fake clock."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.client = PoetryClient(self.clock)

    def tearDown(self) -> None:
        # Every connection ended: nothing of it is left on the clock.
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_it_is_a_client_endpoint(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, MemoryPoetrySource(self.clock, POEM)))

    def test_the_poem_arrives_on_the_next_clock_turn_not_during_the_call(self) -> None:
        got = self.client.get(MemoryPoetrySource(self.clock, POEM))
        self.assertNoResult(got)
        self.clock.advance(0)
        poem = self.successResultOf(got)
        self.assertIsInstance(poem, Poem)
        self.assertEqual(poem.data, POEM)
        self.assertEqual(poem.source, "MemoryPoetrySource")

    def test_a_wrapped_source_is_named_in_results_and_errors(self) -> None:
        source = EndpointSource(
            "memory:sonnet", MemoryPoetrySource(self.clock, POEM, fault="reset")
        )
        got = self.client.get(source)
        self.clock.advance(0)
        error = poetry_error(self, got)
        self.assertEqual(error.source, "memory:sonnet")
        self.assertIn("memory:sonnet: ", str(error))

    def test_each_connection_gets_the_next_poem_in_turn(self) -> None:
        source = MemoryPoetrySource(self.clock, [b"one\n", b"two\n"])
        got = [self.client.get(source) for _ in range(3)]
        self.clock.advance(0)
        self.assertEqual(
            [self.successResultOf(d).data for d in got], [b"one\n", b"two\n", b"one\n"]
        )
        self.assertEqual(source.connections, 3)

    def test_a_slow_poem_arrives_num_bytes_per_delay(self) -> None:
        seen: list[int] = []
        source = MemoryPoetrySource(self.clock, POEM, delay=0.5, num_bytes=20)
        got = self.client.get(source, progress=seen.append)
        self.clock.advance(0)
        self.assertEqual(seen, [20])
        self.clock.pump([0.5] * 3)
        self.assertNoResult(got)
        self.assertEqual(seen, [20, 40, 60, 80])
        self.clock.pump([0.5] * 2)
        poem = self.successResultOf(got)
        self.assertEqual(poem.data, POEM)
        self.assertEqual(poem.elapsed, 2.0)

    def test_a_reset_is_incomplete_never_a_short_poem(self) -> None:
        got = self.client.get(MemoryPoetrySource(self.clock, POEM, fault="reset"))
        self.clock.advance(0)
        error = poetry_error(self, got)
        self.assertEqual(error.kind, "incomplete")
        self.assertIn(f"after {len(POEM) // 2} bytes", str(error))

    def test_an_empty_poem_is_a_poem(self) -> None:
        got = self.client.get(MemoryPoetrySource(self.clock, POEM, fault="empty"))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(got).data, b"")

    def test_bad_utf8_is_a_decode_failure(self) -> None:
        got = self.client.get(MemoryPoetrySource(self.clock, POEM, fault="bad-utf8"))
        self.clock.advance(0)
        self.assertEqual(poetry_error(self, got).kind, "decode")
        replacing = PoetryClient(self.clock, errors="replace")
        again = replacing.get(MemoryPoetrySource(self.clock, POEM, fault="bad-utf8"))
        self.clock.advance(0)
        self.assertEqual(len(self.successResultOf(again).data), len(POEM) + len(BAD_UTF8))

    def test_an_endless_poem_is_too_large_and_the_server_stops_sending(self) -> None:
        client = PoetryClient(self.clock, max_bytes=100_000)
        source = MemoryPoetrySource(self.clock, POEM, fault="endless")
        got = client.get(source)
        self.clock.advance(0)
        self.assertEqual(poetry_error(self, got).kind, "too-large")

    def test_a_stalled_server_is_an_idle_timeout(self) -> None:
        client = PoetryClient(self.clock, idle_timeout=5)
        got = client.get(MemoryPoetrySource(self.clock, POEM, fault="stall"))
        self.clock.advance(0)
        self.clock.advance(4.9)
        self.assertNoResult(got)
        self.clock.advance(0.2)
        error = poetry_error(self, got)
        self.assertEqual(error.kind, "timeout")
        self.assertIn("after 0 bytes", str(error))

    def test_a_hanging_server_is_a_whole_attempt_timeout(self) -> None:
        client = PoetryClient(self.clock, timeout=3, idle_timeout=None)
        got = client.get(MemoryPoetrySource(self.clock, POEM, fault="hang"))
        self.clock.advance(0)
        self.assertNoResult(got)
        self.clock.advance(3)
        self.assertEqual(poetry_error(self, got).kind, "timeout")

    def test_cancelling_while_connecting(self) -> None:
        source = MemoryPoetrySource(self.clock, POEM)
        got = self.client.get(source)
        got.cancel()
        self.assertEqual(poetry_error(self, got).kind, "cancelled")
        self.clock.advance(0)
        self.assertEqual(source.connections, 0)

    def test_cancelling_while_receiving_ends_the_servers_side_too(self) -> None:
        source = MemoryPoetrySource(self.clock, POEM, delay=1, num_bytes=10)
        got = self.client.get(source)
        self.clock.pump([0, 1])
        got.cancel()
        error = poetry_error(self, got)
        self.assertEqual(error.kind, "cancelled")
        self.assertIn("after 20 bytes", str(error))
        self.clock.advance(0)  # the server learns of it; its next write is not scheduled

    def test_an_unreachable_server_is_connect_failed_and_retried(self) -> None:
        client = PoetryClient(self.clock, retries=2, backoff=1)
        source = MemoryPoetrySource(self.clock, connect_error=ConnectionRefusedError())
        got = client.get(source)
        self.clock.pump([0, 1])  # the first attempt, and the first retry a second later
        self.assertNoResult(got)
        self.clock.advance(2)  # the second retry, two seconds after the first
        error = poetry_error(self, got)
        self.assertEqual(error.kind, "connect-failed")
        self.assertIn("connection refused", str(error))
        self.assertEqual(source.connections, 0)

    def test_incomplete_attempts_are_retried_on_new_connections(self) -> None:
        client = PoetryClient(self.clock, retries=1, backoff=1)
        source = MemoryPoetrySource(self.clock, POEM, fault="reset")
        got = client.get(source)
        self.clock.pump([0, 1, 0])
        self.assertEqual(poetry_error(self, got).kind, "incomplete")
        self.assertEqual(source.connections, 2)

    def test_bad_settings_fail_at_once(self) -> None:
        self.assertRaises(ValueError, MemoryPoetrySource, self.clock, POEM, fault="melt")
        self.assertRaises(ValueError, MemoryPoetrySource, self.clock, POEM, delay=-1)
        self.assertRaises(ValueError, MemoryPoetrySource, self.clock, [])
        self.assertRaises(TypeError, MemoryPoetrySource, self.clock, ["not bytes"])


class Recorder(Protocol):
    """Records what the connection brings, and how it ends."""

    def __init__(self, write: bytes = b"", then: str = "") -> None:
        self.write = write
        self.then = then
        self.received: list[bytes] = []
        self.lost: Failure | None = None
        self.during_connection_made: list[bytes] | None = None

    def connectionMade(self) -> None:
        if self.write:
            self.transport.write(self.write)  # type: ignore[union-attr]
        self.during_connection_made = list(self.received)
        if self.then == "close":
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif self.then == "abort":
            self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.lost = reason


class MemoryTransportTests(SynchronousTestCase):
    """The in-memory connection as a transport: what any protocol sees through it."""

    def connect(self, poem: bytes, **kwargs: Any) -> tuple[MemoryReactorClock, Recorder]:
        clock = MemoryReactorClock()
        recorder = Recorder(**kwargs)
        connected = MemoryPoetrySource(clock, poem).connect(Factory.forProtocol(lambda: recorder))
        clock.advance(0)
        self.assertIs(self.successResultOf(connected), recorder)
        return clock, recorder

    def test_the_transport_provides_itransport(self) -> None:
        clock = MemoryReactorClock()
        recorder = Recorder()
        MemoryPoetrySource(clock, b"x").connect(Factory.forProtocol(lambda: recorder))
        clock.advance(0)
        self.assertTrue(verifyObject(ITransport, recorder.transport))

    def test_bytes_arrive_before_the_clean_close(self) -> None:
        _, recorder = self.connect(POEM)
        self.assertEqual(b"".join(recorder.received), POEM)
        assert recorder.lost is not None
        self.assertTrue(recorder.lost.check(ConnectionDone))
        self.assertEqual(recorder.during_connection_made, [])  # never delivered re-entrantly

    def test_an_abort_ends_at_once_and_drops_what_was_not_delivered(self) -> None:
        _, recorder = self.connect(POEM, then="abort")
        assert recorder.lost is not None
        self.assertTrue(recorder.lost.check(ConnectionAborted))
        self.assertEqual(recorder.received, [])  # the poem was written, never delivered

    def test_writes_after_closing_go_nowhere(self) -> None:
        clock = MemoryReactorClock()
        recorder = Recorder(write=b"hello", then="close")
        MemoryPoetrySource(clock, POEM, fault="stall").connect(
            Factory.forProtocol(lambda: recorder)
        )
        clock.advance(0)
        recorder.transport.write(b"late")  # type: ignore[union-attr]
        clock.advance(0)
        assert recorder.lost is not None
        self.assertTrue(recorder.lost.check(ConnectionDone))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_reset_reaches_the_peer_as_connection_lost(self) -> None:
        clock = MemoryReactorClock()
        resetting = Recorder()
        MemoryPoetrySource(clock, POEM, fault="reset").connect(
            Factory.forProtocol(lambda: resetting)
        )
        clock.advance(0)
        assert resetting.lost is not None
        self.assertTrue(resetting.lost.check(ConnectionLost))
        self.assertFalse(resetting.lost.check(ConnectionDone))
        self.assertEqual(b"".join(resetting.received), POEM[: len(POEM) // 2])


class PoetryServerTests(TestCase):
    """The loopback server fixture, in the real reactor."""

    async def fetch(self, source: str, **settings: Any) -> Poem:
        return await PoetryClient(reactor, **settings).get(source)

    async def test_it_serves_on_a_free_loopback_port(self) -> None:
        server = await poetry_server(reactor, POEM)
        self.addCleanup(server.stop)
        self.assertTrue(server.source.startswith("tcp:127.0.0.1:"), server.source)
        self.assertNotEqual(server.source, "tcp:127.0.0.1:0")
        poem = await self.fetch(server.source)
        self.assertEqual(poem.data, POEM)
        self.assertEqual(server.connections, 1)

    async def test_several_poems_are_served_in_turn_slowly(self) -> None:
        server = await poetry_server(reactor, [b"one\n", b"two\n"], delay=0.01, num_bytes=1)
        self.addCleanup(server.stop)
        client = PoetryClient(reactor)
        results = await client.get_many([server.source] * 2)
        self.assertEqual(
            sorted(r.data for r in results if isinstance(r, Poem)), [b"one\n", b"two\n"]
        )

    async def test_it_serves_on_a_unix_socket(self) -> None:
        path = unix_socket_path(self)
        server = await poetry_server(reactor, POEM, listen=f"unix:{path}")
        self.addCleanup(server.stop)
        self.assertEqual(server.source, f"unix:{path}")
        self.assertEqual((await self.fetch(server.source)).data, POEM)

    async def test_it_serves_on_ipv6_loopback(self) -> None:
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            raise SkipTest("no IPv6 loopback here") from None
        server = await poetry_server(reactor, POEM, listen="tcp6:0:interface=\\:\\:1")
        self.addCleanup(server.stop)
        self.assertTrue(server.source.startswith("[::1]:"), server.source)
        self.assertEqual((await self.fetch(server.source)).data, POEM)

    async def test_a_reset_over_tcp_is_incomplete(self) -> None:
        server = await poetry_server(reactor, POEM, fault="reset")
        self.addCleanup(server.stop)
        with self.assertRaises(PoetryError) as caught:
            await self.fetch(server.source)
        self.assertEqual(caught.exception.kind, "incomplete")

    async def test_stop_aborts_open_connections_and_waits_for_them(self) -> None:
        server = await poetry_server(reactor, POEM, fault="stall")
        download = PoetryClient(reactor).get(server.source)
        for _ in range(500):  # bounded: 5 s
            if server.open_connections:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(server.open_connections, 1)
        await server.stop()
        self.assertEqual(server.open_connections, 0)
        with self.assertRaises(PoetryError) as caught:
            await download
        self.assertEqual(caught.exception.kind, "incomplete")
        with self.assertRaises(PoetryError) as refused:
            await self.fetch(server.source)
        self.assertEqual(refused.exception.kind, "connect-failed")
        await server.stop()  # a second stop is harmless

    async def test_the_memory_source_runs_on_the_real_reactor_too(self) -> None:
        source = MemoryPoetrySource(reactor, POEM, delay=0.001, num_bytes=7)
        poem = await PoetryClient(reactor).get(source)
        self.assertEqual(poem.data, POEM)

    def test_bad_settings_fail_at_once_with_a_message(self) -> None:
        with self.assertRaises(ValueError) as caught:
            poetry_server(reactor, POEM, listen="tcp:port=ninety")
        self.assertIn("tcp:port=ninety", str(caught.exception))
        self.assertRaises(ValueError, poetry_server, reactor, POEM, fault="melt")
        self.assertRaises(ValueError, poetry_server, reactor, POEM, num_bytes=0)
