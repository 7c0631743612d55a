"""
The companion server in memory (deterministic), and the service builder that
``serve`` and ``twist poetry`` share, over real loopback sockets.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError, ConnectionAborted, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from conftest import unix_socket_path
from poetry_endpoints import get_poetry
from poetry_endpoints.defaults import DEFAULT_LISTEN
from poetry_endpoints.servers.faults import FaultyServerFactory
from poetry_endpoints.servers.poetry import (
    PoemFile,
    PoetryServerFactory,
    bundled_poems,
    describe_peer,
    load_poems,
)
from poetry_endpoints.servers.proxytap import Options as ProxyOptions
from poetry_endpoints.servers.service import (
    ConfigError,
    ListeningService,
    ServerConfig,
    build_server,
    listeners,
    parse_listen,
    source_for,
    when_listening,
)
from poetry_endpoints.servers.stopping import STOP_WAIT_LIMIT, CutShortOnStop
from poetry_endpoints.servers.tap import Options as ServerOptions

PEER = IPv4Address("TCP", "127.0.0.1", 50000)
POEMS = [PoemFile("one", b"first poem\n"), PoemFile("two", "zweites Gedicht — ü\n".encode())]


def _connect(factory: PoetryServerFactory) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_poem_is_sent_whole_then_closed_cleanly() -> None:
    _, transport = _connect(PoetryServerFactory(POEMS, MemoryReactorClock()))
    assert transport.value() == POEMS[0].data
    assert transport.disconnecting and not transport.disconnected


def test_connections_get_the_poems_in_turn() -> None:
    factory = PoetryServerFactory(POEMS, MemoryReactorClock())
    sent = [_connect(factory)[1].value() for _ in range(5)]
    assert sent == [POEMS[0].data, POEMS[1].data] * 2 + [POEMS[0].data]


def test_slow_mode_writes_num_bytes_every_delay() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS[:1], clock, delay=0.5, num_bytes=4)
    _, transport = _connect(factory)
    writes = [transport.value()]
    while not transport.disconnecting:
        transport.clear()
        clock.advance(0.5)
        writes.append(transport.value())
    assert writes[0] == b"firs"
    assert b"".join(writes) == POEMS[0].data
    assert all(len(write) <= 4 for write in writes)
    assert len(writes) == -(-len(POEMS[0].data) // 4)
    assert not clock.getDelayedCalls()


def test_a_client_leaving_a_slow_poem_cancels_the_next_write() -> None:
    clock = MemoryReactorClock()
    protocol, _ = _connect(PoetryServerFactory(POEMS, clock, delay=1.0, num_bytes=2))
    assert clock.getDelayedCalls()
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1.0}, "delay"),
        ({"num_bytes": 0}, "num_bytes"),
    ],
)
def test_factory_refuses_bad_settings(kwargs: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoetryServerFactory(POEMS, MemoryReactorClock(), **kwargs)
    with pytest.raises(ValueError, match="at least one poem"):
        PoetryServerFactory([], MemoryReactorClock())


def test_bundled_poems_are_original_utf8_and_some_not_ascii() -> None:
    poems = bundled_poems()
    assert len(poems) >= 3
    assert [poem.name for poem in poems] == sorted(poem.name for poem in poems)
    for poem in poems:
        poem.data.decode("utf-8")
    assert any(not poem.data.isascii() for poem in poems)


def test_load_poems(tmp_path: Path) -> None:
    assert load_poems([]) == bundled_poems()
    path = tmp_path / "ode.txt"
    path.write_bytes(b"ode\n")
    assert load_poems([str(path)]) == [PoemFile("ode", b"ode\n")]
    with pytest.raises(OSError):
        load_poems([str(tmp_path / "missing.txt")])


def test_describe_peer() -> None:
    assert describe_peer(PEER) == "127.0.0.1:50000"
    assert describe_peer(IPv6Address("TCP", "::1", 5)) == "[::1]:5"
    assert describe_peer(UNIXAddress(None)) == "a unix socket client"
    assert describe_peer(UNIXAddress(b"/run/p.sock")) == "unix:/run/p.sock"


def test_a_unix_peer_named_by_the_client_cannot_forge_a_log_line() -> None:
    # A client binds its end to any path it likes before connecting.
    forged = UNIXAddress(b"/tmp/x\n12:00:00 poetry listening on tcp:1.2.3.4:1\xff")
    assert describe_peer(forged) == "unix:/tmp/x\\n12:00:00 poetry listening on tcp:1.2.3.4:1\\xff"


@pytest.mark.parametrize(
    ("address", "description", "kind", "source"),
    [
        (IPv4Address("TCP", "127.0.0.1", 43121), "tcp:0", "poetry", "tcp:127.0.0.1:43121"),
        (IPv4Address("TCP", "0.0.0.0", 10000), "tcp:10000", "poetry", "tcp:127.0.0.1:10000"),
        (IPv6Address("TCP", "::1", 10000), "tcp6:10000", "poetry", "[::1]:10000"),
        (IPv6Address("TCP", "::", 10000), "tcp6:10000", "poetry", "[::1]:10000"),
        (
            UNIXAddress(b"/run/poetry.sock"),
            "unix:/run/poetry.sock",
            "poetry",
            "unix:/run/poetry.sock",
        ),
        (UNIXAddress("/tmp/a:b.sock"), "unix:/tmp/a\\:b.sock", "poetry", "unix:/tmp/a\\:b.sock"),
        (IPv4Address("TCP", "0.0.0.0", 8443), "ssl:8443", "poetry", "tls:127.0.0.1:8443"),
        (IPv4Address("TCP", "127.0.0.1", 8080), "tcp:8080", "http", "http://127.0.0.1:8080/"),
        (IPv6Address("TCP", "::", 8080), "tcp6:8080", "http", "http://[::1]:8080/"),
        (IPv4Address("TCP", "127.0.0.1", 8443), "ssl:8443", "http", "https://127.0.0.1:8443/"),
    ],
)
def test_source_for(address: Any, description: str, kind: str, source: str) -> None:
    assert source_for(address, description, kind) == source


@pytest.mark.parametrize(
    "description",
    ["tcp:abc", "tpc:10000", "tcp", "unix:", "tcp:0:bogus=1", "", "ssl:0:certKey=/nope"],
)
def test_parse_listen_turns_every_refusal_into_a_config_error(description: str) -> None:
    with pytest.raises(ConfigError, match="invalid listen endpoint") as raised:
        parse_listen(reactor, description)
    assert "\n" not in str(raised.value)


def test_build_server_refuses_unreadable_files_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read poem file .*missing"):
        build_server(reactor, ServerConfig(poems=(str(tmp_path / "missing"),)))
    with pytest.raises(ConfigError, match="num_bytes"):
        build_server(reactor, ServerConfig(num_bytes=0))
    with pytest.raises(ConfigError, match="nothing to listen on"):
        build_server(reactor, ServerConfig(listen=()))


def test_build_server_makes_one_listener_per_endpoint_sharing_one_factory() -> None:
    service = build_server(
        reactor, ServerConfig(listen=("tcp:0", "unix:/tmp/x.sock"), fault="reset")
    )
    found = listeners(service)
    assert [listener.description for listener in found] == ["tcp:0", "unix:/tmp/x.sock"]
    assert found[0].factory is found[1].factory
    assert isinstance(found[0].factory, FaultyServerFactory)


def test_twist_options(tmp_path: Path) -> None:
    poem = tmp_path / "a.txt"
    poem.write_bytes(b"a poem\n")
    options = ServerOptions()
    options.parseOptions(["--listen", "tcp:1", "-l", "unix:/p", "--delay", "0.5", str(poem)])
    assert options["config"] == ServerConfig(
        listen=("tcp:1", "unix:/p"), poems=(str(poem),), delay=0.5, num_bytes=10
    )
    default = ServerOptions()
    default.parseOptions([])
    assert default["config"].listen == (DEFAULT_LISTEN,)
    for bad in (["--delay", "soon"], ["--num-bytes", "x"], ["--fault", "nope"]):
        with pytest.raises(usage.UsageError):
            ServerOptions().parseOptions(bad)
    proxy = ProxyOptions()
    proxy.parseOptions(["--upstream", "tcp:127.0.0.1:1", "--cache-seconds", "5", "-t", "2"])
    config = proxy["config"]
    assert (config.upstream, config.cache_seconds, config.timeout) == ("tcp:127.0.0.1:1", 5, 2)
    with pytest.raises(usage.UsageError, match="--upstream"):
        ProxyOptions().parseOptions([])


class Listening(TestCase):
    """L{ListeningService} and L{when_listening} on real loopback sockets."""

    async def test_listens_reports_a_source_that_reaches_it_and_stops(self) -> None:
        socket_path = unix_socket_path(self)
        service = build_server(
            reactor,
            ServerConfig(listen=("tcp:0:interface=127.0.0.1", f"unix:{socket_path}")),
        )
        service.startService()
        tcp, unix = await when_listening(service)
        self.assertTrue(tcp.startswith("tcp:127.0.0.1:"))
        self.assertEqual(unix, f"unix:{socket_path}")
        first = await get_poetry(reactor, tcp)
        second = await get_poetry(reactor, unix)
        poems = bundled_poems()
        self.assertEqual([first.data, second.data], [poems[0].data, poems[1].data])
        await service.stopService()
        self.assertFalse(Path(socket_path).exists())

    async def test_a_port_in_use_fails_when_listening(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = build_server(
            reactor,
            ServerConfig(listen=("tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1")),
        )
        service.startService()
        self.addCleanup(service.stopService)
        with self.assertRaises(CannotListenError):
            await when_listening(service)
        self.flushLoggedErrors(CannotListenError)

    def test_when_listening_after_the_fact(self) -> None:
        listener = ListeningService(
            reactor, "tcp:0:interface=127.0.0.1", PoetryServerFactory(POEMS, reactor)
        )
        listener.startService()
        self.addCleanup(listener.stopService)
        late = listener.when_listening()
        self.assertTrue(self.successResultOf(late).startswith("tcp:127.0.0.1:"))
        self.assertEqual(listener.source, self.successResultOf(listener.when_listening()))


# --- the stop: unfinished poems are reset, whole ones keep their clean close ------------------


def _stopping(factory: PoetryServerFactory, clock: MemoryReactorClock) -> list[None]:
    stopped: list[None] = []
    factory.open_connections.stop().addCallback(stopped.append)
    return stopped


def test_a_stop_resets_a_poem_half_sent_at_once() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS, clock, delay=1.0, num_bytes=4)
    protocol, transport = _connect(factory)
    assert transport.value() == b"firs"
    stopped = _stopping(factory, clock)
    assert transport.disconnected, "aborted: a reset, not a clean close"
    assert stopped == [], "the stop waits for the abort to land"
    protocol.connectionLost(Failure(ConnectionAborted()))
    assert stopped == [None]
    assert not clock.getDelayedCalls(), "no write left scheduled, no stop timer"
    assert len(factory.open_connections) == 0


def test_a_stop_keeps_the_clean_close_of_a_poem_all_sent() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS, clock)
    protocol, transport = _connect(factory)
    assert transport.value() == POEMS[0].data and transport.disconnecting
    stopped = _stopping(factory, clock)
    assert not transport.disconnected, "given a turn to finish closing"
    protocol.connectionLost(Failure(ConnectionDone()))  # its last bytes were with the kernel
    clock.advance(0)
    assert not transport.disconnected, "never aborted"
    assert stopped == [None]
    assert not clock.getDelayedCalls()


def test_a_stop_resets_a_poem_all_written_that_the_client_has_not_taken() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS, clock)
    protocol, transport = _connect(factory)
    stopped = _stopping(factory, clock)
    clock.advance(0)  # a turn, and the connection is still not closed
    assert transport.disconnected, "aborted"
    protocol.connectionLost(Failure(ConnectionAborted()))
    assert stopped == [None]
    assert not clock.getDelayedCalls()


def test_a_stop_with_no_connection_is_done_at_once() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS, clock)
    protocol, _ = _connect(factory)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert _stopping(factory, clock) == [None]
    assert not clock.getDelayedCalls()


def test_a_stop_waits_a_bounded_time_for_a_transport_that_never_reports_its_loss() -> None:
    clock = MemoryReactorClock()
    factory = PoetryServerFactory(POEMS, clock, delay=1.0)
    _, transport = _connect(factory)
    stopped = _stopping(factory, clock)
    assert transport.disconnected
    clock.advance(STOP_WAIT_LIMIT - 0.01)
    assert stopped == []
    clock.advance(0.01)
    assert stopped == [None]
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    ("fault", "reset"),
    [
        ("stall", True),
        ("hang", True),
        ("reset", True),
        ("endless", True),
        ("bad-utf8", False),
        ("escapes", False),
        ("empty", False),
    ],
)
def test_a_stop_resets_the_fault_modes_that_never_finish_a_poem(fault: str, reset: bool) -> None:
    clock = MemoryReactorClock()
    factory = FaultyServerFactory(POEMS, clock, fault)
    protocol, transport = _connect(factory)
    assert not transport.disconnected, "nothing aborted before the stop"
    stopped = _stopping(factory, clock)
    assert transport.disconnected == reset
    protocol.connectionLost(Failure(ConnectionAborted() if reset else ConnectionDone()))
    assert stopped == [None]
    assert len(factory.open_connections) == 0
    assert not clock.getDelayedCalls()


def test_build_server_resets_unfinished_poems_when_it_stops() -> None:
    clock = MemoryReactorClock()
    service = build_server(clock, ServerConfig(listen=("tcp:0",), delay=1.0))
    (cutting,) = [child for child in service if isinstance(child, CutShortOnStop)]
    assert next(iter(service)) is cutting, "first, so that it stops after the listeners"
    (listener,) = listeners(service)
    assert cutting.connections is listener.factory.open_connections  # type: ignore[attr-defined]
    protocol, transport = _connect(listener.factory)  # type: ignore[arg-type]
    service.startService()
    stopped: list[object] = []
    service.stopService().addCallback(stopped.append)
    assert transport.disconnected
    protocol.connectionLost(Failure(ConnectionAborted()))
    assert len(stopped) == 1
