"""
The proxy's bounds against clients that never read: a write timeout, a limit
on clients served at once (the ports pause, the others wait), and memory that
stays within what those settings allow, measured on a real subprocess.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import FakeClient
from serve_process import WAIT, Running, cli, connect, fetch
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from poetry_endpoints import PoetryError, get_poetry
from poetry_endpoints.cli import build_parser
from poetry_endpoints.cli.proxy import proxy_config
from poetry_endpoints.defaults import DEFAULT_MAX_BYTES
from poetry_endpoints.servers.faults import FaultyServerFactory
from poetry_endpoints.servers.limits import ConnectionLimit
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory
from poetry_endpoints.servers.proxy import PoetryProxyFactory, PoetryProxyProtocol, UpstreamCache
from poetry_endpoints.servers.proxytap import Options as ProxyOptions
from poetry_endpoints.servers.service import (
    ConfigError,
    ProxyConfig,
    build_proxy,
    listeners,
    when_listening,
)
from poetry_endpoints.servers.stopping import CutShortOnStop


@implementer(IReadDescriptor)
class FakePort:
    """A listening port as far as pausing goes: a reader the reactor watches."""

    def fileno(self) -> int:
        return -1

    def doRead(self) -> None:
        raise AssertionError("not read in these tests")

    def connectionLost(self, reason: Any) -> None:
        pass

    def logPrefix(self) -> str:
        return "FakePort"


def _connect(factory: PoetryProxyFactory) -> tuple[PoetryProxyProtocol, StringTransport]:
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def _proxy(**settings: Any) -> tuple[FakeClient, PoetryProxyFactory]:
    client = FakeClient()
    cache = UpstreamCache(client, "up", cache_seconds=0)  # type: ignore[arg-type]
    return client, PoetryProxyFactory(cache, **settings)


@pytest.fixture
def logged() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_a_client_that_does_not_take_its_poem_is_aborted_after_the_write_timeout(
    logged: list[dict[str, Any]],
) -> None:
    client, factory = _proxy(write_timeout=5)
    _, transport = _connect(factory)
    client.reactor.advance(100)  # waiting for the upstream does not count
    client.answer(0, b"a poem\n")
    assert transport.value() == b"a poem\n" and transport.disconnecting
    client.reactor.advance(4.9)
    assert not transport.disconnected
    client.reactor.advance(0.1)
    assert transport.disconnected, "aborted"
    warnings = [e for e in logged if "did not take its poem" in e.get("log_format", "")]
    assert len(warnings) == 1 and warnings[0]["timeout"] == 5
    # The abort ends the connection; nothing stays scheduled after.
    assert client.reactor.getDelayedCalls() == []


def test_a_client_that_takes_its_poem_in_time_leaves_nothing_scheduled() -> None:
    client, factory = _proxy(write_timeout=5)
    protocol, transport = _connect(factory)
    client.answer(0, b"a poem\n")
    protocol.connectionLost(connectionDone)
    assert client.reactor.getDelayedCalls() == []
    client.reactor.advance(10)
    assert not transport.disconnected


def test_no_write_timeout_means_no_timer() -> None:
    client, factory = _proxy(write_timeout=None)
    _connect(factory)
    client.answer(0, b"a poem\n")
    assert client.reactor.getDelayedCalls() == []


def test_clients_beyond_the_limit_wait_for_a_slot_while_the_ports_pause() -> None:
    reactor = MemoryReactorClock()
    port = FakePort()
    reactor.addReader(port)  # listening: the reactor watches the port
    limit = ConnectionLimit(reactor, 2)
    limit.add_port(port)
    client, factory = _proxy(limit=limit)

    first, first_t = _connect(factory)
    assert port in reactor.getReaders()
    second, second_t = _connect(factory)
    assert port not in reactor.getReaders(), "full: the port stops accepting"
    third, third_t = _connect(factory)
    fourth, fourth_t = _connect(factory)
    assert (limit.in_use, limit.waiting) == (2, 2)
    assert len(client.fetches) == 1, "only the clients with a slot are fetched for"

    client.answer(0, b"a poem\n")
    assert first_t.value() == second_t.value() == b"a poem\n"
    assert third_t.value() == b""

    # A waiting client that goes away gives up its place, not a slot.
    fourth.connectionLost(connectionDone)
    assert (limit.in_use, limit.waiting) == (2, 1)

    first.connectionLost(connectionDone)
    assert (limit.in_use, limit.waiting) == (2, 0), "the third took the freed slot"
    assert port not in reactor.getReaders()
    assert len(client.fetches) == 2
    client.answer(1, b"again\n")
    assert third_t.value() == b"again\n"

    second.connectionLost(connectionDone)
    assert port in reactor.getReaders(), "a free slot: accepting again"
    third.connectionLost(connectionDone)
    assert (limit.in_use, limit.waiting, limit.paused) == (0, 0, False)
    assert port in reactor.getReaders()
    assert fourth_t.value() == b""


def test_a_port_removed_while_paused_is_never_resumed() -> None:
    reactor = MemoryReactorClock()
    port = FakePort()
    reactor.addReader(port)
    limit = ConnectionLimit(reactor, 1)
    limit.add_port(port)
    limit.acquire()
    assert port not in reactor.getReaders()
    limit.remove_port(port)
    limit.release()
    assert port not in reactor.getReaders()


def test_a_port_added_while_full_starts_paused() -> None:
    reactor = MemoryReactorClock()
    limit = ConnectionLimit(reactor, 1)
    limit.acquire()
    port = FakePort()
    reactor.addReader(port)
    limit.add_port(port)
    assert port not in reactor.getReaders()
    limit.release()
    assert port in reactor.getReaders()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionLimit(MemoryReactorClock(), 0)
    with pytest.raises(ValueError, match="write_timeout"):
        _proxy(write_timeout=0)
    base = {"upstream": "tcp:127.0.0.1:1", "listen": ("tcp:0:interface=127.0.0.1",)}
    with pytest.raises(ConfigError, match="--max-clients"):
        build_proxy(MemoryReactorClock(), ProxyConfig(**base, max_clients=0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--max-bytes"):
        build_proxy(MemoryReactorClock(), ProxyConfig(**base, max_bytes=0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--write-timeout"):
        build_proxy(MemoryReactorClock(), ProxyConfig(**base, write_timeout=-1))  # type: ignore[arg-type]


def test_the_defaults_bound_the_proxy() -> None:
    config = ProxyConfig(upstream="tcp:127.0.0.1:1")
    assert (config.timeout, config.write_timeout, config.max_clients) == (120, 60, 100)
    options = ProxyOptions()
    options.parseOptions(["-u", "tcp:127.0.0.1:1"])
    assert options["config"] == config
    # The upstream fetches have a whole-attempt limit unless told otherwise.
    (listener,) = listeners(build_proxy(MemoryReactorClock(), config))
    assert listener.factory.cache.client.timeout == 120  # type: ignore[attr-defined]
    # The upstream poem is capped as `get` caps it (16M), unless --max-bytes says otherwise.
    assert config.max_bytes == DEFAULT_MAX_BYTES == 16 * MiB
    assert listener.factory.cache.client.max_bytes == DEFAULT_MAX_BYTES  # type: ignore[attr-defined]
    assert listener.factory.write_timeout == 60  # type: ignore[attr-defined]
    assert listener.factory.limit.maximum == 100  # type: ignore[attr-defined]
    options = ProxyOptions()
    options.parseOptions(
        ["-u", "tcp:127.0.0.1:1", "-t", "none", "--write-timeout", "none", "--max-clients", "none"]
    )
    assert (options["config"].timeout, options["config"].write_timeout) == (None, None)
    assert options["config"].max_clients is None


# --- a real proxy subprocess and clients that never read -------------------------------------

POEM_BYTES = 12 * 1024 * 1024
MAX_CLIENTS = 4
HOGS = 16
MiB = 1024 * 1024


def _peak_kib(pid: int) -> int:
    """The process's own peak resident memory (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _count(process: Running, text: str) -> int:
    return sum(text in line for line in process.stderr_lines)


def _hog(source: str) -> socket.socket:
    # A client that never reads, with a small receive buffer so that the
    # poem stays with the proxy rather than in this side's kernel buffers.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    host, port = source[len("tcp:") :].rsplit(":", 1)
    sock.connect((host, int(port)))
    return sock


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_clients_that_never_read_cost_at_most_max_clients_poems(tmp_path: Path) -> None:
    poem = tmp_path / "big.txt"
    poem.write_bytes(
        (b"a line of a long poem, over and over\n" * (POEM_BYTES // 37 + 1))[:POEM_BYTES]
    )
    loopback = "tcp:0:interface=127.0.0.1"
    with Running(cli("serve", "-l", loopback, str(poem))) as server:
        (upstream,) = server.sources(1)
        argv = cli(
            "proxy",
            "-u",
            upstream,
            "-l",
            loopback,
            # No cache: each client that never reads holds up a fetch of its
            # own, with what that fetch read before the client stalled it.
            "--cache-seconds",
            "0",
            "--max-clients",
            str(MAX_CLIENTS),
            "--write-timeout",
            "0.5",
        )
        with Running(argv) as proxy:
            (source,) = proxy.sources(1)
            assert fetch(source) == poem.read_bytes()
            # One fetch, with its transient copies, is already in the peak.
            before = _peak_kib(proxy.process.pid)
            hogs: list[socket.socket] = []
            try:
                deadline = time.monotonic() + WAIT * 2
                for served in range(2, HOGS + 2):
                    # One at a time, each once the last has its poem: they
                    # do not share a fetch.  Past MAX_CLIENTS, a hog waits
                    # until an earlier one has been aborted.
                    hogs.append(_hog(source))
                    while _count(proxy, "relaying") < served:
                        assert time.monotonic() < deadline, proxy.stderr
                        time.sleep(0.02)
                while time.monotonic() < deadline:
                    aborted = _count(proxy, "did not take its poem")
                    if aborted == HOGS:
                        break
                    time.sleep(0.05)
                peak = _peak_kib(proxy.process.pid)
                assert aborted == HOGS, proxy.stderr
            finally:
                for hog in hogs:
                    hog.close()
            # Every client that waited was served in its turn, and the
            # proxy still serves once they are gone.
            assert fetch(source) == poem.read_bytes()
            assert proxy.stop() == 0
        server.stop()
    growth_mib = (peak - before) / 1024
    # At most MAX_CLIENTS poems are held at once, plus the one being fetched;
    # without the limits every hog held one when the proxy buffered whole
    # poems (measured: 238 MiB for 16).  Streaming, a hog holds what its
    # fetch read before it stalled (measured: 14.5 MiB for these 16).
    assert growth_mib < (MAX_CLIENTS + 2) * POEM_BYTES / MiB, (before, peak)
    assert _count(proxy, "relaying") == HOGS + 2
    assert "Traceback" not in proxy.stderr


def test_a_client_that_never_reads_is_reset_and_the_next_one_served(tmp_path: Path) -> None:
    poem = tmp_path / "big.txt"
    poem.write_bytes(b"x" * (4 * MiB))
    loopback = "tcp:0:interface=127.0.0.1"
    with Running(cli("serve", "-l", loopback, str(poem))) as server:
        (upstream,) = server.sources(1)
        argv = cli("proxy", "-u", upstream, "-l", loopback, "--write-timeout", "0.3")
        with Running(argv) as proxy:
            (source,) = proxy.sources(1)
            hog = _hog(source)
            with hog:
                deadline = time.monotonic() + WAIT
                while not any("did not take" in line for line in proxy.stderr_lines):
                    assert time.monotonic() < deadline, proxy.stderr
                    time.sleep(0.05)
                # What it is sent now ends with a reset, never a clean close.
                with pytest.raises(ConnectionResetError):
                    while hog.recv(65536):
                        pass
            with connect(source) as ok:
                data = b""
                while chunk := ok.recv(65536):
                    data += chunk
            assert data == poem.read_bytes()
            assert proxy.stop() == 0
        server.stop()


class RealPorts(TestCase):
    """The limit pausing a real listening port of a proxy built by `build_proxy`."""

    async def test_a_full_proxy_stops_accepting_until_a_client_is_done(self) -> None:
        stalling = FaultyServerFactory([PoemFile("one", b"never sent\n")], reactor, "stall")
        upstream = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(stalling)
        self.addCleanup(upstream.stopListening)
        config = ProxyConfig(
            upstream=f"tcp:127.0.0.1:{upstream.getHost().port}",
            listen=("tcp:0:interface=127.0.0.1",),
            max_clients=1,
            idle_timeout=0.5,
        )
        service = build_proxy(reactor, config)
        service.startService()
        self.addCleanup(service.stopService)
        (source,) = await when_listening(service)
        (listener,) = listeners(service)
        limit = listener.limit
        assert limit is not None
        self.assertIn(listener.port, reactor.getReaders())

        first = get_poetry(reactor, source)
        await _until(lambda: limit.in_use == 1)
        self.assertNotIn(listener.port, reactor.getReaders())
        # The stalled upstream times out, the client is aborted, its slot is free.
        with self.assertRaises(PoetryError) as failed:
            await first
        self.assertEqual(failed.exception.kind, "incomplete")
        await _until(lambda: limit.in_use == 0)
        self.assertIn(listener.port, reactor.getReaders())

    async def test_a_poem_past_max_bytes_resets_the_client_and_one_under_it_passes(self) -> None:
        big, small = b"x" * 2047 + b"\n", b"a short poem\n" * 40  # 2K, then 520 bytes
        served = PoetryServerFactory([PoemFile("big", big), PoemFile("small", small)], reactor)
        upstream = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(served)
        self.addCleanup(upstream.stopListening)
        args = ["-u", f"tcp:127.0.0.1:{upstream.getHost().port}", "--cache-seconds", "0"]
        args += ["-l", "tcp:0:interface=127.0.0.1", "--max-bytes", "1K"]
        config = proxy_config(build_parser().parse_args(["proxy", *args]))
        twist_options = ProxyOptions()
        twist_options.parseOptions(args)
        self.assertEqual(twist_options["config"], config)
        self.assertEqual(config.max_bytes, 1024)
        service = build_proxy(reactor, config)
        (listener,) = listeners(service)
        self.assertEqual(listener.factory.cache.client.max_bytes, 1024)  # type: ignore[attr-defined]
        service.startService()
        self.addCleanup(service.stopService)
        (source,) = await when_listening(service)

        # The upstream serves the 2K poem first: it is relayed up to 1K, then the client reset.
        with self.assertRaises(PoetryError) as failed:
            await get_poetry(reactor, source, timeout=10)
        self.assertEqual(failed.exception.kind, "incomplete")
        # The next fetch is the 520-byte poem: under the cap, it passes whole.
        poem = await get_poetry(reactor, source, timeout=10)
        self.assertEqual(poem.data, small)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("never came true")


def test_a_stop_resets_the_clients_mid_poem_or_waiting_and_keeps_a_whole_poem() -> None:
    limit = ConnectionLimit(MemoryReactorClock(), 2)
    client, factory = _proxy(limit=limit)
    done, done_t = _connect(factory)
    client.answer(0, b"a poem\n")
    assert done_t.value() == b"a poem\n" and done_t.disconnecting  # closing, still open
    relaying, relaying_t = _connect(factory)
    client.sinks[1].write(b"half a po")
    waiting, waiting_t = _connect(factory)
    assert (limit.in_use, limit.waiting) == (2, 1)

    stopped: list[None] = []
    factory.open_connections.stop().addCallback(stopped.append)
    assert relaying_t.disconnected and waiting_t.disconnected, "reset, mid-poem or not begun"
    assert not done_t.disconnected, "a whole poem is given a turn to finish its clean close"
    assert client.cancelled == 1, "the reset client's fetch is cancelled"
    assert limit.waiting == 0, "a client being reset waits for no slot"

    relaying.connectionLost(Failure(ConnectionAborted()))
    assert len(client.fetches) == 2, "the freed slot starts no fetch"
    done.connectionLost(connectionDone)  # closed cleanly within the turn
    client.reactor.advance(0)
    assert not done_t.disconnected
    assert stopped == []
    waiting.connectionLost(Failure(ConnectionAborted()))
    assert stopped == [None]
    assert limit.in_use == 0
    assert waiting_t.value() == b""
    assert client.reactor.getDelayedCalls() == []


def test_build_proxy_resets_unfinished_poems_when_it_stops() -> None:
    service = build_proxy(MemoryReactorClock(), ProxyConfig(upstream="tcp:127.0.0.1:1"))
    (proxy,) = listeners(service)
    cutting = next(iter(service))
    assert isinstance(cutting, CutShortOnStop), "first, so that it stops after the listeners"
    assert cutting.connections is proxy.factory.open_connections  # type: ignore[attr-defined]
