"""
The proxy streams: the upstream's bytes reach the clients as they arrive, one
upstream connection serves the clients that ask at once, a slow client paces
the upstream (the proxy's own peak memory stays flat for a big poem), an
upstream that fails mid-poem resets every client, and only small poems are
cached.

The hostile upstreams here are raw sockets in a thread, written without the
project's code.  The proxy command runs in this process
(``tests/inprocess.py``), or as a subprocess where its own peak memory is
measured; its services run in-process where the test is about their
bookkeeping.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import FakeClient
from inprocess_serve import Serving, serve_cli
from peak_memory import measured_cli, read_peak
from serve_process import WAIT, Running, connect
from server_thread import ServerThread
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from poetry_endpoints import PoetryClient, PoetryError, get_poetry
from poetry_endpoints.cli import build_parser
from poetry_endpoints.cli.proxy import proxy_config
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory
from poetry_endpoints.servers.proxy import PoetryProxyFactory, PoetryProxyProtocol, UpstreamCache
from poetry_endpoints.servers.proxytap import Options as ProxyOptions
from poetry_endpoints.servers.service import ConfigError, ProxyConfig, build_proxy, when_listening
from poetry_endpoints.streaming import Streamed

LOOPBACK = "tcp:0:interface=127.0.0.1"
FIRST = b"The first lines arrive,\n"
REST = b"and the rest only once the test has seen them.\n"
MiB = 1024 * 1024


class GatedUpstream:
    """
    A poetry server in a thread: to each connection it sends L{FIRST}, waits
    for C{gate}, then sends L{REST} and closes cleanly, or resets instead.
    """

    def __init__(self, end: str = "close") -> None:
        self.end = end
        self.gate = threading.Event()
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.source = f"tcp:127.0.0.1:{self.listener.getsockname()[1]}"
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        accepting = threading.Thread(target=self._accept, daemon=True)
        accepting.start()
        self._threads.append(accepting)

    def _accept(self) -> None:
        deadline = time.monotonic() + WAIT * 4
        while not self._closing.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            serving = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            serving.start()
            self._threads.append(serving)

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.sendall(FIRST)
                # Never a clean close when the test did not open the gate:
                # that would pass the first lines off as a whole poem.
                if not self.gate.wait(WAIT) or self.end == "reset":
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                connection.sendall(REST)
            except OSError:
                pass

    def close(self) -> None:
        self.gate.set()
        self._closing.set()
        for thread in self._threads:
            thread.join(WAIT)
        self.listener.close()


@pytest.fixture
def gated() -> Any:
    upstreams: list[GatedUpstream] = []

    def make(end: str = "close") -> GatedUpstream:
        upstreams.append(GatedUpstream(end))
        return upstreams[-1]

    yield make
    for upstream in upstreams:
        upstream.close()


def _receive(sock: socket.socket, size: int) -> bytes:
    """Exactly C{size} bytes from C{sock} (a clean close before is a failure)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _rest(sock: socket.socket) -> bytes:
    """Everything until a clean close."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_first_bytes_reach_the_client_before_the_upstream_ends(gated: Any) -> None:
    upstream = gated()

    def client(proxy: Serving) -> tuple[bytes, bytes]:
        (source,) = proxy.sources(1)
        try:
            with connect(source) as sock:
                # The upstream sends the rest only once this has arrived.
                first = _receive(sock, len(FIRST))
                upstream.gate.set()
                return first, _rest(sock)
        finally:
            proxy.stop()

    ran, (first, rest) = serve_cli("proxy", "-u", upstream.source, "-l", LOOPBACK, client=client)
    assert first == FIRST
    assert rest == REST
    assert ran.returncode == 0


def test_clients_asking_at_once_share_one_upstream_connection(gated: Any) -> None:
    upstream = gated()

    def client(proxy: Serving) -> list[bytes]:
        (source,) = proxy.sources(1)
        try:
            with connect(source) as first, connect(source) as second:
                received = [_receive(first, len(FIRST))]
                # The second joined the fetch in flight: the bytes so far, then the rest.
                received.append(_receive(second, len(FIRST)))
                upstream.gate.set()
                return [*received, _rest(first), _rest(second)]
        finally:
            proxy.stop()

    ran, received = serve_cli("proxy", "-u", upstream.source, "-l", LOOPBACK, client=client)
    assert received == [FIRST, FIRST, REST, REST]
    assert upstream.accepted == 1
    assert ran.returncode == 0


def test_an_upstream_reset_mid_poem_resets_every_client(gated: Any) -> None:
    upstream = gated("reset")

    def client(proxy: Serving) -> None:
        (source,) = proxy.sources(1)
        try:
            with connect(source) as first, connect(source) as second:
                assert _receive(first, len(FIRST)) == _receive(second, len(FIRST)) == FIRST
                upstream.gate.set()
                for sock in (first, second):
                    # Never a clean close that would make the first lines a whole poem.
                    with pytest.raises(ConnectionResetError):
                        _rest(sock)
        finally:
            proxy.stop()

    ran, _ = serve_cli("proxy", "-u", upstream.source, "-l", LOOPBACK, client=client)
    assert ran.returncode == 0
    stderr = ran.stderr.decode()
    failures = [line for line in stderr.splitlines() if "failed (incomplete)" in line]
    assert len(failures) == 2, stderr
    assert upstream.accepted == 1
    assert "Traceback" not in stderr


def _own_peak(pid: int) -> int:
    """The process's own peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


POEM_BYTES = 12 * MiB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_slow_client_paces_the_upstream_and_memory_stays_flat(tmp_path: Path) -> None:
    poem = tmp_path / "big.txt"
    line = b"a line of a long poem, relayed as it comes\n"
    poem.write_bytes((line * (POEM_BYTES // len(line) + 1))[:POEM_BYTES])
    report = tmp_path / "peak"
    with ServerThread() as server:
        (upstream,) = server.serve("-l", LOOPBACK, str(poem))
        with Running(measured_cli(report, "proxy", "-u", upstream, "-l", LOOPBACK)) as proxy:
            (source,) = proxy.sources(1)
            before = _own_peak(proxy.process.pid)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A small receive buffer, so that what this client has not read
            # waits at the proxy (or upstream), not in this side's kernel.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(WAIT)
            host, port = source[len("tcp:") :].rsplit(":", 1)
            sock.connect((host, int(port)))
            received = 0
            with sock:
                for _ in range(POEM_BYTES):  # bounded: each read takes at least a byte
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += len(chunk)
                    time.sleep(0.002)
            assert received == POEM_BYTES
            assert proxy.stop() == 0
    growth = read_peak(report) - before
    # Buffering the whole poem costs more than the poem (measured: 24.6 MiB
    # before the proxy streamed).  Streaming costs what one upstream read
    # holds in the client's send buffer: the library reads 4 MiB at a time
    # past the first MiB of a poem (measured: 3.3 to 4.3 MiB).
    assert growth < POEM_BYTES * 2 // 3, (before, growth)


# --- the cache's bound, on real loopback sockets in this process ------------------------------


class CountingFactory(PoetryServerFactory):
    """A poetry server factory that counts its connections."""

    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class CacheBound(TestCase):
    """Only poems of at most C{cache_max_bytes} are cached."""

    async def proxy_of(self, poem: bytes, cache_max_bytes: int) -> tuple[str, CountingFactory]:
        server = CountingFactory([PoemFile("one", poem)], reactor)
        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
        self.addCleanup(listening.stopListening)
        client = PoetryClient(reactor, encoding="latin-1")
        cache = UpstreamCache(
            client,
            f"tcp:127.0.0.1:{listening.getHost().port}",
            cache_seconds=60,
            cache_max_bytes=cache_max_bytes,
        )
        factory = PoetryProxyFactory(cache)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return f"tcp:127.0.0.1:{port.getHost().port}", server

    async def test_a_small_poem_is_served_from_the_cache(self) -> None:
        source, server = await self.proxy_of(b"s" * 100, cache_max_bytes=100)
        for _ in range(3):
            self.assertEqual((await get_poetry(reactor, source)).data, b"s" * 100)
        self.assertEqual(server.connections, 1)

    async def test_a_poem_over_the_bound_is_streamed_every_time(self) -> None:
        source, server = await self.proxy_of(b"b" * 101, cache_max_bytes=100)
        for _ in range(3):
            self.assertEqual((await get_poetry(reactor, source)).data, b"b" * 101)
        self.assertEqual(server.connections, 3)


class CacheMaxBytesOption(TestCase):
    """C{--cache-max-bytes} of both command lines reaches the proxy's cache."""

    async def fetches(self, config: ProxyConfig, poem: bytes, clients: int) -> int:
        """How many times a real upstream is fetched from for C{clients} clients in a row."""
        server = CountingFactory([PoemFile("one", poem)], reactor)
        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
        self.addCleanup(listening.stopListening)
        config = replace(config, upstream=f"tcp:127.0.0.1:{listening.getHost().port}")
        service = build_proxy(reactor, config)
        service.startService()
        self.addCleanup(service.stopService)
        (source,) = await when_listening(service)
        for _ in range(clients):
            self.assertEqual((await get_poetry(reactor, source, encoding="latin-1")).data, poem)
        return server.connections

    def configs(self, *words: str) -> list[ProxyConfig]:
        """The proxy's settings as ``proxy`` and ``twist poetry-proxy`` read C{words}."""
        argv = ["-u", "tcp:127.0.0.1:1", "-l", "tcp:0:interface=127.0.0.1", *words]
        twist = ProxyOptions()
        twist.parseOptions(argv)
        return [proxy_config(build_parser().parse_args(["proxy", *argv])), twist["config"]]

    async def test_a_poem_over_the_option_is_fetched_again_and_one_under_it_is_not(self) -> None:
        poem = b"p" * 2000
        for config in self.configs("--cache-seconds", "60", "--cache-max-bytes", "1999"):
            self.assertEqual(await self.fetches(config, poem, clients=2), 2)
        for config in self.configs("--cache-seconds", "60", "--cache-max-bytes", "2K"):
            self.assertEqual(await self.fetches(config, poem, clients=2), 1)

    async def test_zero_caches_nothing(self) -> None:
        for config in self.configs("--cache-seconds", "60", "--cache-max-bytes", "0"):
            self.assertEqual(config.cache_max_bytes, 0)
            self.assertEqual(await self.fetches(config, b"x", clients=2), 2)

    def test_a_negative_bound_from_the_library_is_a_config_error(self) -> None:
        config = ProxyConfig(upstream="tcp:127.0.0.1:1", cache_max_bytes=-1)
        with self.assertRaisesRegex(ConfigError, "--cache-max-bytes must be 0 or more"):
            build_proxy(reactor, config)


# --- the fan-out step by step: a fake clock, fake connections -----------------------------------


@implementer(IPushProducer)
class FakeUpstream:
    """The upstream connection as the proxy sees it: a push producer."""

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        raise AssertionError("the proxy cancels, it does not stop the producer")


class StreamingFakeClient(FakeClient):
    """The fake client whose upstreams are push producers the proxy can pause."""

    def __init__(self) -> None:
        super().__init__()
        self.upstreams: list[FakeUpstream] = []

    def stream(self, source: Any, sink: Any) -> Deferred[Streamed]:
        fetch = super().stream(source, sink)
        self.upstreams.append(FakeUpstream())
        sink.registerProducer(self.upstreams[-1], True)
        return fetch


def _proxy(**settings: Any) -> tuple[StreamingFakeClient, PoetryProxyFactory]:
    client = StreamingFakeClient()
    cache = UpstreamCache(client, "up", cache_seconds=0, cache_max_bytes=10)  # type: ignore[arg-type]
    return client, PoetryProxyFactory(cache, **settings)


def _connect(factory: PoetryProxyFactory) -> tuple[PoetryProxyProtocol, StringTransport]:
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_late_client_joins_while_the_poem_fits_the_bound_then_fetches_its_own() -> None:
    client, factory = _proxy()
    _, first = _connect(factory)
    client.sinks[0].write(b"12345")
    _, joined = _connect(factory)
    assert joined.value() == b"12345" and len(client.fetches) == 1
    client.sinks[0].write(b"678901")  # 11 bytes: more than the bound keeps
    _, late = _connect(factory)
    assert len(client.fetches) == 2 and late.value() == b""
    client.fetches[0].callback(Streamed("up", 11, 0.0))
    assert first.value() == joined.value() == b"12345678901"
    for closed in (first, joined):
        assert closed.disconnecting and not closed.disconnected, "closed cleanly, not aborted"
    assert not late.disconnecting


def test_one_full_client_pauses_the_upstream_until_every_client_has_room() -> None:
    client, factory = _proxy()
    first, _ = _connect(factory)
    second, _ = _connect(factory)
    upstream = client.upstreams[0]
    first.pauseProducing()  # as its transport does when its send buffer is full
    second.pauseProducing()
    assert upstream.paused
    first.resumeProducing()
    assert upstream.paused, "the second one is still full"
    second.resumeProducing()
    assert not upstream.paused


def test_a_client_full_for_the_write_timeout_is_aborted_and_the_others_go_on() -> None:
    client, factory = _proxy(write_timeout=5)
    stalled, stalled_transport = _connect(factory)
    _, reading = _connect(factory)
    upstream = client.upstreams[0]
    stalled.pauseProducing()
    assert upstream.paused
    client.reactor.advance(4.9)
    assert not stalled_transport.disconnected
    client.reactor.advance(0.1)
    assert stalled_transport.disconnected, "aborted"
    assert not upstream.paused, "the stalled client no longer holds the others"
    client.sinks[0].write(b"more")
    client.fetches[0].callback(Streamed("up", 4, 0.0))
    assert reading.value() == b"more"
    assert reading.disconnecting and not reading.disconnected
    assert stalled_transport.value() == b""


def test_an_upstream_failure_after_some_bytes_aborts_every_client() -> None:
    client, factory = _proxy()
    transports = [_connect(factory)[1] for _ in range(2)]
    client.sinks[0].write(b"half a po")
    client.fetches[0].errback(PoetryError("up", "incomplete", "reset"))
    for transport in transports:
        assert transport.value() == b"half a po"
        assert transport.disconnected, "aborted (a clean close leaves this false)"
