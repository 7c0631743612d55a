"""
A reset that the reactor reports as a hang-up is still an incomplete poem.

Twisted's epoll and poll reactors take an event with "hang up" but not
"readable" for a clean close, and never read the socket.  The kernel shows
exactly that for an instant while it handles a reset on another CPU (the
socket is marked closed before its input is marked ended), so now and then a
reset passed for the end of a whole poem.  The test makes that moment happen
for certain: the client stops reading, the server (a raw socket) resets, and
the transport is told what the reactor tells it in the race.

The same goes for an HTTP body that has no length (neither ``Content-Length``
nor chunking): it ends with the connection, so only a clean close may end it
whole.  Under TLS the race cannot pass a reset off either: a body ends whole
only after ``close_notify``, which a reset never brings.
"""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from certs import make_ca
from raw_http import RawHTTPServer
from twisted.internet import reactor as _reactor
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from poetry_endpoints import PoetryClient, PoetryError, PoetryProtocol

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
        def reset() -> None:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            server.close()  # RST

        _hang_up_after(protocol.transport, reset, select.POLLERR)

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


def _hang_up_after(transport: Any, end: Callable[[], object], seen: int) -> None:
    """
    Stop C{transport} reading, have the server C{end} the connection, wait
    until the client's socket shows C{seen} (C{POLLERR}: the reset is there,
    unread), then tell the transport what the reactor tells it in the race.
    """
    transport.stopReading()  # the reactor will not read what follows
    end()
    poller = select.poll()
    poller.register(transport.fileno(), select.POLLIN)
    deadline = time.monotonic() + WAIT
    while not poller.poll(10)[0][1] & seen:
        assert time.monotonic() < deadline, "the end of the connection never reached the client"
    # What _doReadOrWrite does for "hang up" without "readable".
    transport.readConnectionLost(Failure(ConnectionDone()))


CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
HALF = b"half a po"


class HTTPResetSeenAsHangUpTests(TestCase):
    """
    The race, for an http(s) body with no length: a raw server sends the
    head and half a body, the client stops reading, the server resets (or
    closes cleanly), and the client's TCP transport is told "hang up".
    """

    timeout = 10

    def setUp(self) -> None:
        self.go = threading.Event()  # set once the client has stopped reading
        self.addCleanup(self.go.set)

    def _serve(self, *, reset: bool, tls: bool = False) -> tuple[RawHTTPServer, PoetryClient]:
        def answer(connection: socket.socket) -> None:
            connection.sendall(CLOSE_DELIMITED + HALF)
            if not self.go.wait(WAIT):
                return
            if reset:  # the server closes the socket next: RST
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:  # FIN, after close_notify under TLS
                if isinstance(connection, ssl.SSLSocket):
                    connection = connection.unwrap()
                connection.shutdown(socket.SHUT_WR)

        cacert = None
        issued = None
        if tls:
            folder = Path(tempfile.mkdtemp(prefix="poetry-race-"))
            self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
            ca = make_ca(folder)
            issued = ca.issue("server")
            cacert = str(ca.cert)
        server = RawHTTPServer(answer, tls=issued, wait=WAIT)
        self.addCleanup(server.close)
        client = PoetryClient(reactor, idle_timeout=WAIT, cacert=cacert)
        self.addCleanup(client.close)
        return server, client

    async def _race(self, server: RawHTTPServer, client: PoetryClient, seen: int) -> Any:
        received: list[int] = []
        download = client.get(server.url, progress=received.append)
        deadline = time.monotonic() + WAIT
        while not received or received[-1] < len(HALF):
            self.assertLess(time.monotonic(), deadline, "the body's bytes never arrived")
            await _tick()
        transport = _connection_to(server.port)
        _hang_up_after(transport, self.go.set, seen)
        return await download

    def test_a_reset_reported_as_a_hang_up_is_incomplete(self) -> Any:
        async def run() -> None:
            server, client = self._serve(reset=True)
            with self.assertRaises(PoetryError) as caught:
                await self._race(server, client, select.POLLERR)
            self.assertEqual(caught.exception.kind, "incomplete", str(caught.exception))
            self.assertIn("lost", str(caught.exception))

        return Deferred.fromCoroutine(run())

    def test_a_clean_close_reported_as_a_hang_up_ends_the_body_whole(self) -> Any:
        async def run() -> None:
            server, client = self._serve(reset=False)
            poem = await self._race(server, client, select.POLLIN)
            self.assertEqual(poem.data, HALF)

        return Deferred.fromCoroutine(run())

    def test_under_tls_a_reset_reported_as_a_hang_up_is_incomplete(self) -> Any:
        async def run() -> None:
            server, client = self._serve(reset=True, tls=True)
            with self.assertRaises(PoetryError) as caught:
                await self._race(server, client, select.POLLERR)
            self.assertEqual(caught.exception.kind, "incomplete", str(caught.exception))

        return Deferred.fromCoroutine(run())

    def test_a_pooled_connection_the_server_closes_is_closed_and_not_reused(self) -> Any:
        # The end of a keep-alive connection's input now goes through
        # readConnectionLost too: the client must still close its side, and
        # the pool must open a new connection for the next request.
        body = b"a whole poem\n"

        def answer(connection: socket.socket) -> None:
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            connection.sendall(body)  # then the server closes: FIN

        async def run() -> None:
            server = RawHTTPServer(answer, connections=2, wait=WAIT)
            self.addCleanup(server.close)
            client = PoetryClient(reactor, idle_timeout=WAIT)
            self.addCleanup(client.close)
            self.assertEqual((await client.get(server.url)).data, body)
            deadline = time.monotonic() + WAIT
            while _connections_to(server.port):
                self.assertLess(time.monotonic(), deadline, "the client never closed its side")
                await _tick()
            self.assertEqual((await client.get(server.url)).data, body)
            self.assertEqual(len(server.requests), 2)

        return Deferred.fromCoroutine(run())


def _connections_to(port: int) -> list[Any]:
    """The reactor's TCP transports connected to 127.0.0.1:C{port}, reading or writing."""
    selectables = set(reactor.getReaders()) | set(reactor.getWriters())
    return [s for s in selectables if isinstance(s, tcp.Client) and s.getPeer().port == port]


def _connection_to(port: int) -> Any:
    """The reactor's TCP transport connected to 127.0.0.1:C{port} (only one may be)."""
    found = _connections_to(port)
    assert len(found) == 1, found
    return found[0]


def _tick() -> Any:
    return deferLater(reactor, 0.01, lambda: None)
