"""
The library against real sockets on loopback: TCP on 127.0.0.1 and ::1, Unix
sockets, servers from `poetry_endpoints.servers.poetry` listening on port 0.

Each test waits until the server side of every connection has closed, then
checks that the client left no delayed call behind; trial itself fails a test
that leaves a timer, and a class that leaves a socket open.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

from loopback_servers import refused_port
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IPullProducer
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from poetry_endpoints import Poem, PoetryClient, PoetryError, get_poetry
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory, PoetryServerProtocol

reactor: Any = _reactor

POEM = b"Much have I travell'd in the realms of gold,\nAnd many goodly states and kingdoms seen;\n"
NON_ASCII = "Über allen Gipfeln ist Ruh — 静かな 詩 🌙\r\n\tçà\x00end".encode()


class TrackedProtocol(PoetryServerProtocol):
    """The companion server's protocol, reporting when its connection is gone."""

    def __init__(self, poem: PoemFile, settings: TrackedFactory) -> None:
        super().__init__(poem, settings)
        self.closed: Deferred[None] = Deferred()
        settings.connections.append(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.closed.callback(None)


class TrackedFactory(PoetryServerFactory):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: list[Any] = []

    def buildProtocol(self, addr: Any) -> PoetryServerProtocol:
        return TrackedProtocol(next(self._turns), self)


class ResettingProtocol(TrackedProtocol):
    """Sends the first half of the poem, then waits for the test to reset it."""

    def connectionMade(self) -> None:
        self.transport.write(self.poem.data[: len(self.poem.data) // 2])  # type: ignore[union-attr]


class ResettingFactory(TrackedFactory):
    def buildProtocol(self, addr: Any) -> PoetryServerProtocol:
        return ResettingProtocol(next(self._turns), self)


@implementer(IPullProducer)
class StreamingProtocol(Protocol):
    """Sends C{size} bytes made on the fly, so the server holds no copy of the poem."""

    def __init__(self, factory: StreamingFactory) -> None:
        self.factory = factory
        self.sent = 0
        self.closed: Deferred[None] = Deferred()
        factory.connections.append(self)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, False)  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        block = self.factory.block
        count = min(len(block), self.factory.size - self.sent)
        if count:
            self.transport.write(block if count == len(block) else block[:count])  # type: ignore[union-attr]
            self.sent += count
        else:
            self.transport.unregisterProducer()  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class StreamingFactory(ServerFactory):
    def __init__(self, size: int) -> None:
        self.size = size
        # ~4 MiB of printable ASCII with a period (96) that no power of two divides.
        self.block = (bytes(range(32, 127)) + b"\n") * ((4 << 20) // 96)
        self.connections: list[Any] = []

    def buildProtocol(self, addr: Any) -> StreamingProtocol:
        return StreamingProtocol(self)


def is_trial_timeout(call: Any) -> bool:
    """Whether C{call} is the timer trial itself sets for the running test."""
    return "TestCase._run" in getattr(call.func, "__qualname__", "")


class LoopbackTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.before = set(reactor.getDelayedCalls())
        self.factories: list[Any] = []
        self.tmp = tempfile.mkdtemp(prefix="poetry-loopback-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    async def listen(self, description: str, factory: Any) -> IListeningPort:
        port: IListeningPort = await serverFromString(reactor, description).listen(factory)
        self.factories.append(factory)
        self.addCleanup(port.stopListening)
        return port

    async def serve(
        self, *poems: bytes, description: str = "tcp:0:interface=127.0.0.1", **settings: Any
    ) -> tuple[IListeningPort, TrackedFactory]:
        files = [PoemFile(f"poem{i}", data) for i, data in enumerate(poems or (POEM,))]
        factory = settings.pop("factory", TrackedFactory)(files, reactor, **settings)
        return await self.listen(description, factory), factory

    async def settle(self) -> None:
        """Wait for every server connection to close, then check no timer of ours is left."""
        closed = [c.closed for f in self.factories for c in f.connections]
        await DeferredList(closed)
        await deferLater(reactor, 0, lambda: None)  # aborts close on the next turn
        left = [
            call
            for call in reactor.getDelayedCalls()
            if call not in self.before and not is_trial_timeout(call)
        ]
        self.assertEqual(left, [])

    async def fetch(self, source: str, **settings: Any) -> Poem | PoetryError:
        try:
            return await get_poetry(reactor, source, **settings)
        except PoetryError as e:
            return e

    # --- delivered ---------------------------------------------------------------------------

    async def test_tcp_description(self) -> None:
        port, _ = await self.serve()
        source = f"tcp:127.0.0.1:{port.getHost().port}"
        poem = await get_poetry(reactor, source, timeout=10)
        self.assertEqual((poem.source, poem.data, poem.text), (source, POEM, POEM.decode()))
        self.assertGreaterEqual(poem.elapsed, 0)
        await self.settle()

    async def test_tcp_description_by_keyword(self) -> None:
        port, _ = await self.serve()
        poem = await get_poetry(reactor, f"tcp:host=127.0.0.1:port={port.getHost().port}:timeout=5")
        self.assertEqual(poem.data, POEM)
        await self.settle()

    async def test_shorthand_ip(self) -> None:
        port, _ = await self.serve()
        poem = await get_poetry(reactor, f"127.0.0.1:{port.getHost().port}", timeout=10)
        self.assertEqual(poem.data, POEM)
        await self.settle()

    async def test_shorthand_localhost_and_bare_port(self) -> None:
        # localhost may resolve to ::1 first; the dual-stack endpoint falls
        # through to the 127.0.0.1 listener.
        port, _ = await self.serve()
        number = port.getHost().port
        for source in (f"localhost:{number}", str(number)):
            poem = await get_poetry(reactor, source, timeout=10)
            self.assertEqual((poem.source, poem.data), (source, POEM))
        await self.settle()

    async def test_unix_socket(self) -> None:
        path = os.path.join(self.tmp, "poetry.sock")
        await self.serve(NON_ASCII, description=f"unix:{path}")
        poem = await get_poetry(reactor, f"unix:{path}", timeout=10)
        self.assertEqual(poem.data, NON_ASCII)
        await self.settle()

    async def test_ipv6_loopback(self) -> None:
        if not socket.has_ipv6:
            raise SkipTest("no IPv6 in this Python")
        try:
            port, _ = await self.serve(description=r"tcp6:0:interface=\:\:1")
        except CannotListenError as e:
            raise SkipTest(f"no ::1 here ({e})") from None
        poem = await get_poetry(reactor, f"[::1]:{port.getHost().port}", timeout=10)
        self.assertEqual(poem.data, POEM)
        await self.settle()

    async def test_non_ascii_poem_is_byte_identical(self) -> None:
        port, _ = await self.serve(NON_ASCII)
        poem = await get_poetry(reactor, f"tcp:127.0.0.1:{port.getHost().port}")
        self.assertEqual(poem.data, NON_ASCII)
        self.assertEqual(poem.text, NON_ASCII.decode("utf-8"))
        await self.settle()

    async def test_empty_poem(self) -> None:
        port, _ = await self.serve(b"")
        poem = await get_poetry(reactor, f"tcp:127.0.0.1:{port.getHost().port}")
        self.assertEqual((poem.data, poem.text), (b"", ""))
        await self.settle()

    async def test_64_mib_poem(self) -> None:
        size = 64 << 20
        data = bytes(range(97, 123)) * (size // 26) + b"!" * (size % 26)
        port, _ = await self.serve(data)
        poem = await get_poetry(
            reactor, f"tcp:127.0.0.1:{port.getHost().port}", max_bytes=size, timeout=50
        )
        self.assertEqual(len(poem.data), size)
        self.assertTrue(poem.data == data, "the 64 MiB poem differs from what was served")
        await self.settle()

    async def test_slow_server_and_many_at_once(self) -> None:
        port, _ = await self.serve(POEM, NON_ASCII, delay=0.001, num_bytes=16)
        client = PoetryClient(reactor, concurrency=3, timeout=30)
        sources = [f"tcp:127.0.0.1:{port.getHost().port}"] * 6
        results = await client.get_many(sources)
        self.assertEqual([r.data for r in results], [POEM, NON_ASCII] * 3)  # type: ignore[union-attr]
        await self.settle()

    # --- failed ------------------------------------------------------------------------------

    async def test_refused_port(self) -> None:
        source = f"tcp:127.0.0.1:{refused_port()}"
        error = await self.fetch(source, timeout=10)
        assert isinstance(error, PoetryError)
        self.assertEqual((error.kind, error.source), ("connect-failed", source))
        self.assertIn("refused", str(error))
        await self.settle()

    async def test_refused_port_with_retries(self) -> None:
        source = f"127.0.0.1:{refused_port()}"
        client = PoetryClient(reactor, retries=2, backoff=0.01)
        with self.assertRaises(PoetryError) as caught:
            await client.get(source)
        self.assertEqual(caught.exception.kind, "connect-failed")
        await self.settle()

    async def test_missing_unix_socket(self) -> None:
        source = f"unix:{os.path.join(self.tmp, 'nobody-here.sock')}"
        error = await self.fetch(source, timeout=10)
        assert isinstance(error, PoetryError)
        self.assertEqual((error.kind, error.source), ("connect-failed", source))
        self.assertIn(source, str(error))
        self.assertIn("no such socket file", str(error))
        await self.settle()

    async def test_server_resets_mid_poem(self) -> None:
        port, factory = await self.serve(POEM * 100, factory=ResettingFactory)
        source = f"tcp:127.0.0.1:{port.getHost().port}"
        client = PoetryClient(reactor, timeout=10)

        def reset_once_some_bytes_arrived(received: int) -> None:
            server = factory.connections[0]
            if received and server.transport.connected:
                server.transport.abortConnection()  # RST: SO_LINGER 0

        with self.assertRaises(PoetryError) as caught:
            await client.get(source, progress=reset_once_some_bytes_arrived)
        error = caught.exception
        self.assertEqual(error.kind, "incomplete")
        self.assertRegex(str(error), r"after [1-9]\d* bytes")
        await self.settle()

    async def test_cap_exceeded(self) -> None:
        port, _factory = await self.serve(b"x" * (1 << 20))
        source = f"tcp:127.0.0.1:{port.getHost().port}"
        error = await self.fetch(source, max_bytes=4096, timeout=10)
        assert isinstance(error, PoetryError)
        self.assertEqual((error.kind, error.source), ("too-large", source))
        await self.settle()

    async def test_idle_timeout_on_a_silent_server(self) -> None:
        port, _factory = await self.serve(b"", factory=ResettingFactory)  # sends nothing
        source = f"tcp:127.0.0.1:{port.getHost().port}"
        error = await self.fetch(source, idle_timeout=0.2, timeout=10)
        assert isinstance(error, PoetryError)
        self.assertEqual(error.kind, "timeout")
        await self.settle()

    async def test_whole_attempt_timeout_on_a_slow_server(self) -> None:
        port, _ = await self.serve(POEM * 50, delay=0.01, num_bytes=1)
        source = f"tcp:127.0.0.1:{port.getHost().port}"
        error = await self.fetch(source, timeout=0.3)
        assert isinstance(error, PoetryError)
        self.assertEqual(error.kind, "timeout")
        await self.settle()

    async def test_cancel_while_receiving(self) -> None:
        port, _factory = await self.serve(POEM * 50, delay=0.01, num_bytes=1)
        arrived: Deferred[None] = Deferred()

        def first_bytes(received: int) -> None:
            if not arrived.called:
                arrived.callback(None)

        download = PoetryClient(reactor).get(
            f"tcp:127.0.0.1:{port.getHost().port}", progress=first_bytes
        )
        await arrived
        download.cancel()
        with self.assertRaises(PoetryError) as caught:
            await download
        self.assertEqual(caught.exception.kind, "cancelled")
        await self.settle()


class HugePoemTests(TestCase):
    """1 GiB through one connection with a raised cap (issue 2 item 3)."""

    timeout = 120

    async def test_one_gib_poem(self) -> None:
        # About 7 s and 2.2 GB of RSS here (the poem's bytes and its text);
        # the server makes the bytes on the fly so it holds no copy.
        before = set(reactor.getDelayedCalls())
        size = 1 << 30
        factory = StreamingFactory(size)
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        try:
            poem = await get_poetry(
                reactor, f"tcp:127.0.0.1:{port.getHost().port}", max_bytes=size, timeout=110
            )
        finally:
            await port.stopListening()
        await DeferredList([c.closed for c in factory.connections])
        self.assertEqual((len(poem.data), factory.connections[0].sent), (size, size))
        block = factory.block
        whole, rest = divmod(size, len(block))
        intact = all(poem.data.startswith(block, i * len(block)) for i in range(whole))
        self.assertTrue(intact and poem.data.endswith(block[:rest]), "the poem differs")
        await deferLater(reactor, 0, lambda: None)
        left = [c for c in reactor.getDelayedCalls() if c not in before and not is_trial_timeout(c)]
        self.assertEqual(left, [])
