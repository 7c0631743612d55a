"""
The fault modes: each one observed by the library over real loopback sockets
(the kind a client reports), by a plain socket against ``serve --fault`` (what
is on the wire; the command runs in this process, `inprocess.serve_cli`), and,
for the producer-driven ones, step by step in memory.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from inprocess import Ran
from inprocess_serve import Serving, serve_cli
from serve_process import WAIT, connect
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from poetry_endpoints import PoetryError, get_poetry
from poetry_endpoints.servers.faults import (
    BAD_UTF8,
    ENDLESS_CHUNK,
    ESCAPES_AFTER,
    ESCAPES_BEFORE,
    FAULTS,
    FaultyServerFactory,
    partial,
    with_bad_utf8,
    with_escapes,
)
from poetry_endpoints.servers.poetry import PoemFile

POEM = PoemFile("test", "A poem in two lines — with é\nand a second line\n".encode())


def test_every_documented_mode_exists() -> None:
    assert list(FAULTS) == ["stall", "hang", "reset", "endless", "bad-utf8", "escapes", "empty"]


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault mode 'nope'"):
        FaultyServerFactory([POEM], MemoryReactorClock(), "nope")


def test_payloads() -> None:
    assert partial(POEM.data) == POEM.data[: len(POEM.data) // 2]
    assert partial(b"x") == b"x" and partial(b"") == b""
    bad = with_bad_utf8(POEM.data)
    assert bad.startswith(POEM.data.split(b"\n")[0] + b"\n" + BAD_UTF8)
    with pytest.raises(UnicodeDecodeError):
        bad.decode("utf-8")
    escapes = with_escapes(POEM.data)
    assert escapes == ESCAPES_BEFORE + POEM.data + ESCAPES_AFTER
    text = escapes.decode("utf-8")  # hostile, but valid UTF-8
    for sequence in ("\x1b]0;pwned\x07", "\x1b[2J", "\u009b", "\x7f", "\r"):
        assert sequence in text


def _connect(factory: FaultyServerFactory) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
    protocol.makeConnection(transport)
    return protocol, transport


def test_endless_writes_one_chunk_each_time_the_transport_asks() -> None:
    clock = MemoryReactorClock()
    protocol, transport = _connect(FaultyServerFactory([POEM], clock, "endless"))
    # A pull producer: nothing is written unless the transport has drained.
    assert transport.producer is not None and not transport.streaming
    assert transport.value() == b""
    for turn in range(1, 4):
        transport.producer.resumeProducing()
        assert len(transport.value()) == turn * ENDLESS_CHUNK
    stream = transport.value()
    period = len(POEM.data)
    assert stream == (POEM.data * (len(stream) // period + 1))[: len(stream)]
    assert not transport.disconnecting
    protocol.connectionLost(None)


def test_endless_with_a_delay_writes_num_bytes_per_turn_on_the_clock() -> None:
    clock = MemoryReactorClock()
    factory = FaultyServerFactory([POEM], clock, "endless", delay=1.0, num_bytes=5)
    protocol, transport = _connect(factory)
    transport.producer.resumeProducing()
    transport.producer.resumeProducing()  # asked twice before the clock moved: one write
    clock.advance(1.0)
    assert transport.value() == POEM.data[:5]
    transport.producer.resumeProducing()
    clock.advance(1.0)
    assert transport.value() == POEM.data[:10]
    transport.producer.resumeProducing()
    transport.loseConnection()
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls(), "no timer left behind"


def test_reset_aborts_only_after_the_half_poem_is_flushed() -> None:
    _, transport = _connect(FaultyServerFactory([POEM], MemoryReactorClock(), "reset"))
    assert transport.value() == partial(POEM.data)
    assert transport.producer is not None and not transport.streaming
    assert not transport.disconnecting, "the buffer has not been flushed yet"
    assert not transport.disconnected
    transport.producer.resumeProducing()  # the transport's buffer has drained
    # StringTransport marks an abortConnection (not a loseConnection) as disconnected.
    assert transport.disconnecting and transport.disconnected


def test_hang_and_stall_never_close() -> None:
    clock = MemoryReactorClock()
    _, hang = _connect(FaultyServerFactory([POEM], clock, "hang", delay=0.5, num_bytes=4))
    clock.pump([0.5] * 40)
    assert hang.value() == partial(POEM.data) and not hang.disconnecting
    _, stall = _connect(FaultyServerFactory([POEM], clock, "stall"))
    clock.pump([1.0] * 10)
    assert stall.value() == b"" and not stall.disconnecting


def test_empty_closes_cleanly_at_once() -> None:
    _, transport = _connect(FaultyServerFactory([POEM], MemoryReactorClock(), "empty"))
    assert transport.value() == b"" and transport.disconnecting
    assert not transport.disconnected, "a clean close, not an abort"


class LibrarySeesFaults(TestCase):
    """Each mode served on 127.0.0.1 and fetched with `get_poetry`."""

    def serve(self, fault: str) -> Deferred[str]:
        factory = FaultyServerFactory([POEM], reactor, fault)
        listening = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

        def started(port: Any) -> str:
            self.addCleanup(port.stopListening)
            return f"tcp:127.0.0.1:{port.getHost().port}"

        return listening.addCallback(started)

    async def failure(self, fault: str, **settings: Any) -> PoetryError:
        source = await self.serve(fault)
        try:
            poem = await get_poetry(reactor, source, **settings)
        except PoetryError as e:
            self.assertEqual(e.source, source)
            self.assertIn(source, str(e))
            return e
        self.fail(f"{fault}: a poem of {len(poem.data)} bytes was handed out")

    async def test_stall_is_an_idle_timeout(self) -> None:
        error = await self.failure("stall", idle_timeout=0.3)
        self.assertEqual(error.kind, "timeout")

    async def test_hang_is_an_idle_timeout(self) -> None:
        error = await self.failure("hang", idle_timeout=0.3)
        self.assertEqual(error.kind, "timeout")
        self.assertIn(f"after {len(partial(POEM.data))} bytes", error.reason)

    async def test_reset_is_incomplete(self) -> None:
        error = await self.failure("reset")
        self.assertEqual(error.kind, "incomplete")

    async def test_endless_is_too_large(self) -> None:
        error = await self.failure("endless", max_bytes=1_000_000)
        self.assertEqual(error.kind, "too-large")

    async def test_bad_utf8_is_a_decode_error(self) -> None:
        error = await self.failure("bad-utf8")
        self.assertEqual(error.kind, "decode")

    async def test_escapes_arrive_as_sent(self) -> None:
        source = await self.serve("escapes")
        poem = await get_poetry(reactor, source)
        self.assertEqual(poem.data, with_escapes(POEM.data))

    async def test_empty_is_a_valid_empty_poem(self) -> None:
        source = await self.serve("empty")
        poem = await get_poetry(reactor, source)
        self.assertEqual((poem.data, poem.text), (b"", ""))


T = TypeVar("T")


def _serve(
    mode: str, poem: Any, client: Callable[[socket.socket], T], stop: int = signal.SIGTERM
) -> tuple[Ran, T]:
    """Run ``serve --fault MODE POEM``; C{client} talks to it over one connection."""

    def connected(server: Serving) -> T:
        (source,) = server.sources(1)
        try:
            with _connect_past_a_reset(source) as sock:
                return client(sock)
        finally:
            server.stop(stop)

    argv = ("serve", "-l", "tcp:0:interface=127.0.0.1", "--fault", mode, str(poem))
    return serve_cli(*argv, client=connected)


def _connect_past_a_reset(source: str, attempts: int = 5) -> socket.socket:
    """
    A socket connected to C{source}, connecting again if the server's reset
    came first.

    The reset fault resets as soon as its half poem is written; on a busy
    machine that can be before C{connect} has returned, which then raises
    the reset (and the half poem is gone with it): nothing to see there.
    """
    for _ in range(attempts - 1):
        try:
            return connect(source)
        except ConnectionResetError:
            continue
    return connect(source)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def _silent(sock: socket.socket, seconds: float = 0.3) -> bool:
    """Whether nothing at all (no byte, no close) arrives for C{seconds}."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT)
    return False


@pytest.fixture(scope="module")
def poem_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("faults") / "poem.txt"
    path.write_bytes(POEM.data)
    return path


@pytest.mark.parametrize("mode", ["stall", "hang"])
def test_serve_fault_keeps_the_connection_open(mode: str, poem_file: Any) -> None:
    expected = partial(POEM.data) if mode == "hang" else b""
    ran, (received, silent) = _serve(
        mode, poem_file, lambda sock: (_read(sock, len(expected)), _silent(sock)), signal.SIGINT
    )
    assert received == expected
    assert silent
    assert ran.returncode == 0
    assert f"fault {mode}" in ran.stderr.decode()


def test_serve_fault_reset_sends_half_then_rst(poem_file: Any) -> None:
    def client(sock: socket.socket) -> bytes:
        received = b""
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return received

    ran, received = _serve("reset", poem_file, client)
    assert ran.returncode == 0
    assert POEM.data.startswith(received) and len(received) < len(POEM.data)


def test_serve_fault_endless_sends_more_than_any_poem(poem_file: Any) -> None:
    ran, stream = _serve("endless", poem_file, lambda sock: _read(sock, 4 * ENDLESS_CHUNK))
    assert ran.returncode == 0
    assert stream == (POEM.data * (len(stream) // len(POEM.data) + 1))[: len(stream)]


@pytest.mark.parametrize(
    ("mode", "transform"),
    [("bad-utf8", with_bad_utf8), ("escapes", with_escapes), ("empty", lambda data: b"")],
)
def test_serve_fault_closes_cleanly_after_its_payload(
    mode: str, transform: Any, poem_file: Any
) -> None:
    def client(sock: socket.socket) -> bytes:
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received

    ran, received = _serve(mode, poem_file, client)
    assert ran.returncode == 0
    assert received == transform(POEM.data)
