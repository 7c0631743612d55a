"""
A consumer that pauses a stream while the server finishes and closes: once
resumed, the poem arrives whole, over a Unix socket and over TCP.

While paused, the reactor does not read the connection (its descriptor is out
of the epoll set), so no event is taken and the server's close waits in the
socket, after any bytes not yet read.  On resume the kernel reports the socket
readable: at the end of a Unix socket "readable" comes with "hang-up", never
a hang-up alone, so the reactor reads what is left and then the end of input
(a clean close, the protocol's readConnectionLost).  Closing our side after
that, a Unix socket reports "writable" and "hang-up" without "readable", which
the reactor takes for a lost connection: the protocol keeps how the input
ended instead (without that, both Unix tests here fail as ``incomplete``).
"""

from __future__ import annotations

import select
import threading
from typing import Any

from loopback_servers import LoopbackServer
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer
from twisted.internet.task import deferLater
from web_helpers import WebTest, inline, reactor
from zope.interface import implementer

#: About 100 KB of distinct lines: more than one read (the reactor reads
#: 64 KiB at a time), less than the socket buffers hold, so the server can
#: send it all and close while the client still has bytes to read.
LONG_POEM = b"".join(b"Line %05d of a poem that outlasts one read\n" % i for i in range(2300))
SHORT_POEM = b"A poem that fits in one read.\n"
STEPS = 500
STEP = 0.01


@implementer(IConsumer)
class PausingConsumer:
    """Keeps every piece; pauses its producer at the first one."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.producer: IPushProducer | None = None
        #: The producer it paused (kept after it is unregistered).
        self.paused: Any = None

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        assert streaming and IPushProducer.providedBy(producer)
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.pieces.append(data)
        if len(self.pieces) == 1:
            assert self.producer is not None
            self.paused = self.producer
            self.producer.pauseProducing()


async def until(condition: Any, what: str) -> None:
    """Wait, without blocking the reactor, until C{condition()} is true (5 s at most)."""
    for _ in range(STEPS):
        if condition():
            return
        await deferLater(reactor, STEP)
    raise AssertionError(f"gave up waiting: {what}")


def peer_closed(protocol: Any) -> bool:
    """Whether the close of the other end has reached the client's socket."""
    poller = select.poll()
    poller.register(protocol.transport.getHandle().fileno(), select.POLLRDHUP)
    return any(events & select.POLLRDHUP for _, events in poller.poll(0))


class PausedWhileTheServerCloses(WebTest):
    async def whole_after_resume(self, poem: bytes, *, unix: bool) -> None:
        server = LoopbackServer(poem, unix=unix)
        self.addCleanup(server.close)
        consumer = PausingConsumer()
        streaming = self.client(max_bytes=len(poem)).stream(server.source, consumer)
        await until(lambda: consumer.pieces, "the first piece")
        finished: threading.Event = server.finished
        await until(finished.is_set, "the server to send and close")
        protocol = consumer.paused
        await until(lambda: peer_closed(protocol), "the close to reach the client's socket")
        await deferLater(reactor, 0.05)  # a few reactor turns while paused and closed
        # Still paused: nothing more was read, and the download is not over.
        self.assertEqual(len(consumer.pieces), 1)
        self.assertFalse(streaming.called)
        if poem is LONG_POEM:
            self.assertLess(len(consumer.pieces[0]), len(poem))  # bytes wait to be read too
        else:
            self.assertEqual(consumer.pieces, [poem])  # only the close waits
        protocol.resumeProducing()
        streamed = await streaming
        self.assertEqual(b"".join(consumer.pieces), poem)
        self.assertEqual((streamed.source, streamed.bytes), (server.source, len(poem)))
        self.assertIsNone(consumer.producer)  # unregistered at the end

    @inline
    async def test_unix_bytes_left_to_read(self) -> None:
        await self.whole_after_resume(LONG_POEM, unix=True)

    @inline
    async def test_unix_only_the_close_left(self) -> None:
        await self.whole_after_resume(SHORT_POEM, unix=True)

    @inline
    async def test_tcp_bytes_left_to_read(self) -> None:
        await self.whole_after_resume(LONG_POEM, unix=False)

    @inline
    async def test_tcp_only_the_close_left(self) -> None:
        await self.whole_after_resume(SHORT_POEM, unix=False)
