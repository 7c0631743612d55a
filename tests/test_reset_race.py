"""
A reset that the reactor reports as a hang-up is still an incomplete poem.

Twisted's epoll and poll reactors take an event with "hang up" but not
"readable" for a clean close, and never read the socket.  The kernel shows
exactly that for an instant while it handles a reset on another CPU (the
socket is marked closed before its input is marked ended), so now and then a
reset passed for the end of a whole poem.  The test makes that moment happen
for certain: the client stops reading, the server (a raw socket) resets, and
the transport is told what the reactor tells it in the race.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from poetry_endpoints import PoetryError, PoetryProtocol

reactor: Any = _reactor
WAIT = 5.0


class ResetSeenAsHangUpTests(TestCase):
    timeout = 10

    async def _connected(self) -> tuple[PoetryProtocol, socket.socket]:
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        listener.settimeout(WAIT)
        port = listener.getsockname()[1]
        protocol = PoetryProtocol(f"tcp:127.0.0.1:{port}", reactor, idle_timeout=None)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, protocol)
        server, _ = listener.accept()
        self.addCleanup(server.close)
        return protocol, server

    async def _hang_up_after_a_reset(self, protocol: PoetryProtocol, server: socket.socket) -> None:
        transport: Any = protocol.transport
        transport.stopReading()  # the reactor will not read what follows
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()  # RST
        poller = select.poll()
        poller.register(transport.fileno(), select.POLLIN)
        deadline = time.monotonic() + WAIT
        while not poller.poll(10)[0][1] & select.POLLERR:
            self.assertLess(time.monotonic(), deadline, "the reset never reached the client")
        # What _doReadOrWrite does for "hang up" without "readable".
        transport.readConnectionLost(Failure(ConnectionDone()))

    def test_a_reset_reported_as_a_hang_up_is_incomplete(self) -> Any:
        async def run() -> None:
            protocol, server = await self._connected()
            server.sendall(b"half a po")
            deadline = time.monotonic() + WAIT
            while protocol.received < 9:
                self.assertLess(time.monotonic(), deadline, "the poem's bytes never arrived")
                await _tick()
            finished = protocol.finished
            assert finished is not None
            await self._hang_up_after_a_reset(protocol, server)
            with self.assertRaises(PoetryError) as caught:
                await finished
            self.assertEqual(caught.exception.kind, "incomplete")
            self.assertIn("lost after 9 bytes", str(caught.exception))

        return Deferred.fromCoroutine(run())

    def test_a_clean_close_still_ends_the_poem_whole(self) -> Any:
        async def run() -> None:
            protocol, server = await self._connected()
            finished = protocol.finished
            assert finished is not None
            server.sendall(b"a whole poem\n")
            server.shutdown(socket.SHUT_WR)
            self.assertEqual(await finished, b"a whole poem\n")

        return Deferred.fromCoroutine(run())


def _tick() -> Any:
    return deferLater(reactor, 0.01, lambda: None)
