"""
``serve`` out of file descriptors, as a real subprocess with a low limit.

When a process has no descriptor left, Twisted's listening port accepts the
waiting clients with a spare descriptor and closes them at once.  A clean
close after zero bytes is a valid, empty poem, so that close must be a reset:
clients see an incomplete poem, never an empty one, and the server goes on
serving once descriptors are free again.
"""

from __future__ import annotations

import resource
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from serve_process import Running, cli, connect, fetch
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from conftest import unix_socket_path
from poetry_endpoints import get_poetry
from poetry_endpoints.servers.limits import reset_refused_connections
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory, PoetryServerProtocol
from poetry_endpoints.servers.service import ListeningService

LIMIT = 40
CLIENTS = 70
#: Each connection is held about 0.6 s (four writes of ten bytes, three pauses):
#: the server runs out of descriptors after some thirty connections, which the
#: test makes within milliseconds, so the rest come while those are still held.
DELAY = "0.2"
POEM = b"a slow poem, sent ten bytes at a time\n"
POEMS = [PoemFile("one", b"first poem\n")]


def _low_descriptor_limit() -> None:
    # Runs in the child before exec: the server gets LIMIT descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))


def _outcome(sock: socket.socket) -> tuple[bytes, str]:
    """Everything received, and how the connection ended: clean, reset or timeout."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except TimeoutError:
        return data, "timeout"
    return data, "clean"


@pytest.mark.skipif(sys.platform != "linux", reason="the descriptor limit as Linux applies it")
def test_out_of_descriptors_clients_are_reset_never_sent_an_empty_poem(tmp_path: Path) -> None:
    poem = tmp_path / "slow.txt"
    poem.write_bytes(POEM)
    argv = cli("serve", "-l", "tcp:0:interface=127.0.0.1", "--delay", DELAY, str(poem))
    with Running(argv, preexec_fn=_low_descriptor_limit) as server:
        (source,) = server.sources(1)
        clients: list[socket.socket] = []
        reset_while_connecting = 0
        try:
            for _ in range(CLIENTS):
                try:
                    clients.append(connect(source, timeout=20))
                except ConnectionResetError:
                    # Accepted and reset before connect() returned (under load,
                    # the RST can beat this thread back from the kernel).
                    reset_while_connecting += 1
            outcomes = [_outcome(sock) for sock in clients]
            outcomes += [(b"", "reset")] * reset_while_connecting
        finally:
            for sock in clients:
                sock.close()
        # Once the descriptors are free again, the server serves as before.
        time.sleep(0.2)
        after = fetch(source)
        assert server.stop() == 0
    empty = [o for o in outcomes if o == (b"", "clean")]
    assert not empty, f"{len(empty)} clients were sent an empty poem as if whole"
    whole = sum(o == (POEM, "clean") for o in outcomes)
    reset = sum(o == (b"", "reset") for o in outcomes)
    # Every client got either the whole poem or a reset, and the limit was
    # really reached: some were reset.
    assert whole + reset == CLIENTS, outcomes
    assert reset > 0 and whole > 0, (whole, reset)
    assert after == POEM
    assert "Traceback" not in server.stderr


class Recording(PoetryServerProtocol):
    """Notes the linger setting of each connection's socket as it is served."""

    lingers: ClassVar[list[tuple[int, int]]] = []

    def connectionMade(self) -> None:
        self.lingers.append(_linger(self.transport.getHandle()))  # type: ignore[union-attr]
        super().connectionMade()


class ListenerSockets(TestCase):
    """The reset-on-refusal setting on real listeners, in process."""

    async def test_tcp_listeners_reset_refused_clients_and_serve_the_rest_normally(self) -> None:
        big = PoemFile("big", b"0123456789abcdef" * (512 * 1024))  # 8 MiB
        factory = PoetryServerFactory([big], reactor)
        factory.protocol_class = Recording
        Recording.lingers = []
        listener = ListeningService(reactor, "tcp:0:interface=127.0.0.1", factory)
        listener.startService()
        self.addCleanup(listener.stopService)
        source = await listener.when_listening()
        port: Any = listener.port
        self.assertEqual(_linger(port.socket), (1, 0))
        # A served connection closes normally: a big poem's tail, still in
        # the kernel's buffers at close, is not cut off by a reset.
        poem = await get_poetry(reactor, source)
        self.assertEqual(poem.data, big.data)
        self.assertEqual(Recording.lingers, [(0, 0)])

    async def test_unix_listeners_are_left_alone(self) -> None:
        path = unix_socket_path(self)
        listener = ListeningService(reactor, f"unix:{path}", PoetryServerFactory(POEMS, reactor))
        listener.startService()
        self.addCleanup(listener.stopService)
        source = await listener.when_listening()
        self.assertFalse(reset_refused_connections(listener.port))
        self.assertEqual((await get_poetry(reactor, source)).data, POEMS[0].data)


def _linger(sock: socket.socket) -> tuple[int, int]:
    on, seconds = struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
    return on, seconds
