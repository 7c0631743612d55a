"""
The poetry proxy: client → proxy → server over real loopback sockets, its
cache and shared fetches, upstream failures turned into aborts; the cache's
bookkeeping step by step on a fake clock; and ``poetry-endpoints proxy``: as
a subprocess for the end-to-end check, in this process (``tests/inprocess.py``)
for the rest, in front of ``serve``'s services in a thread
(``tests/server_thread.py``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import FakeClient
from inprocess import run_cli
from inprocess_serve import Serving, serve_cli
from loopback_servers import refused_port
from serve_process import WAIT, Running, cli, connect, fetch
from server_thread import ServerThread
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from conftest import unix_socket_path
from poetry_endpoints import PoetryError, get_poetry
from poetry_endpoints.servers.faults import FaultyServerFactory
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory, bundled_poems
from poetry_endpoints.servers.proxy import UpstreamCache
from poetry_endpoints.servers.service import ProxyConfig, build_proxy, when_listening

POEMS = [
    PoemFile("one", "Erste Strophe — ü\n".encode()),
    PoemFile("two", b"second poem\n"),
    PoemFile("latin1", "caf\u00e9 in Latin-1, not UTF-8\n".encode("latin-1")),
]


class CountingFactory(PoetryServerFactory):
    """A poetry server factory that counts its connections."""

    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class Chain(TestCase):
    """A real poetry server, a proxy in front of it, and the library as the client."""

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    async def upstream(self, factory: Any, unix: bool = False) -> str:
        if unix:
            path = unix_socket_path(self)
            port = await UNIXServerEndpoint(reactor, path).listen(factory)
            source = f"unix:{path}"
        else:
            port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            source = f"tcp:127.0.0.1:{port.getHost().port}"
        self.addCleanup(port.stopListening)
        return source

    async def proxy(self, upstream: str, **settings: Any) -> str:
        config = ProxyConfig(upstream=upstream, listen=("tcp:0:interface=127.0.0.1",), **settings)
        service = build_proxy(reactor, config)
        service.startService()
        self.addCleanup(service.stopService)
        (source,) = await when_listening(service)
        return source

    async def test_poems_pass_through_byte_for_byte(self) -> None:
        server = CountingFactory(POEMS, reactor)
        proxy = await self.proxy(await self.upstream(server))
        received = [(await get_poetry(reactor, proxy, encoding="latin-1")).data for _ in POEMS]
        self.assertEqual(received, [poem.data for poem in POEMS])
        self.assertEqual(server.connections, 3, "no cache: one upstream fetch per connection")

    async def test_a_unix_upstream(self) -> None:
        proxy = await self.proxy(await self.upstream(PoetryServerFactory(POEMS, reactor), True))
        poem = await get_poetry(reactor, proxy)
        self.assertEqual(poem.data, POEMS[0].data)

    async def test_cached_poem_is_served_again_without_fetching(self) -> None:
        server = CountingFactory(POEMS, reactor)
        proxy = await self.proxy(await self.upstream(server), cache_seconds=60)
        received = [(await get_poetry(reactor, proxy)).data for _ in range(3)]
        self.assertEqual(received, [POEMS[0].data] * 3)
        self.assertEqual(server.connections, 1)

    async def test_connections_during_a_fetch_share_it(self) -> None:
        server = CountingFactory(POEMS, reactor, delay=0.01, num_bytes=3)
        proxy = await self.proxy(await self.upstream(server), cache_seconds=0)
        poems = await gatherResults([get_poetry(reactor, proxy) for _ in range(5)])
        self.assertEqual({poem.data for poem in poems}, {POEMS[0].data})
        self.assertEqual(server.connections, 1)
        # Once that fetch is over, with no cache, the next connection fetches again.
        later = await get_poetry(reactor, proxy)
        self.assertEqual((later.data, server.connections), (POEMS[1].data, 2))

    async def assert_aborted(self, proxy: str, upstream: str, kind: str) -> None:
        try:
            poem = await get_poetry(reactor, proxy)
        except PoetryError as e:
            self.assertEqual(e.kind, "incomplete", str(e))
        else:
            self.fail(f"the proxy handed out a {len(poem.data)}-byte poem for a failed upstream")
        # The proxy's own event (the client library logs its failures with a kind too).
        logged = [e for e in self.events if e.get("kind") == kind and "upstream" in e]
        self.assertTrue(logged, f"no log event with kind {kind!r}")
        self.assertEqual(logged[0]["upstream"], upstream)

    async def test_a_refused_upstream_aborts_the_client_connection(self) -> None:
        upstream = f"tcp:127.0.0.1:{refused_port()}"
        proxy = await self.proxy(upstream)
        await self.assert_aborted(proxy, upstream, "connect-failed")

    async def test_an_upstream_reset_is_not_passed_on_as_a_short_poem(self) -> None:
        upstream = await self.upstream(FaultyServerFactory(POEMS, reactor, "reset"))
        proxy = await self.proxy(upstream)
        await self.assert_aborted(proxy, upstream, "incomplete")

    async def test_an_empty_poem_from_a_stalled_upstream_is_never_sent(self) -> None:
        upstream = await self.upstream(FaultyServerFactory(POEMS, reactor, "stall"))
        proxy = await self.proxy(upstream, idle_timeout=0.2)
        await self.assert_aborted(proxy, upstream, "timeout")

    async def test_a_failure_is_not_cached(self) -> None:
        upstream = await self.upstream(FaultyServerFactory(POEMS, reactor, "reset"))
        proxy = await self.proxy(upstream, cache_seconds=60)
        await self.assert_aborted(proxy, upstream, "incomplete")
        await self.assert_aborted(proxy, upstream, "incomplete")
        fetching = [e for e in self.events if e.get("log_format") == "fetching {upstream}"]
        self.assertEqual(len(fetching), 2)


class Recorder:
    """A subscriber that records what it is relayed and how it ends."""

    def __init__(self) -> None:
        self.data = b""
        self.ended: str | Failure | None = None

    def deliver(self, chunks: list[bytes]) -> None:
        self.data += b"".join(chunks)

    def finish(self) -> None:
        self.ended = "whole"

    def fail(self, failure: Failure) -> None:
        self.ended = failure


def _served(cache: UpstreamCache) -> Recorder:
    """A subscriber served from the cache, or subscribed to a fetch."""
    recorder = Recorder()
    poem = cache.cached()
    if poem is None:
        cache.subscribe(recorder)
    else:
        recorder.deliver([poem])
        recorder.finish()
    return recorder


def test_cache_expires_after_cache_seconds() -> None:
    client = FakeClient()
    cache = UpstreamCache(client, "up", cache_seconds=10)  # type: ignore[arg-type]
    first = _served(cache)
    client.answer(0, b"a")
    client.reactor.advance(9.9)
    again = _served(cache)
    assert first.data == again.data == b"a" and cache.fetches == 1
    assert first.ended == again.ended == "whole"
    client.reactor.advance(0.1)
    _served(cache)
    assert cache.fetches == 2


def test_a_failure_reaches_every_subscriber_and_is_not_cached() -> None:
    client = FakeClient()
    cache = UpstreamCache(client, "up", cache_seconds=10)  # type: ignore[arg-type]
    recorders = [_served(cache) for _ in range(3)]
    assert cache.fetches == 1
    client.sinks[0].write(b"half a po")
    client.fetches[0].errback(PoetryError("up", "incomplete", "reset"))
    assert [r.data for r in recorders] == [b"half a po"] * 3
    assert [r.ended.value.kind for r in recorders] == ["incomplete"] * 3  # type: ignore[union-attr]
    _served(cache)
    assert cache.fetches == 2


def test_only_the_last_subscriber_leaving_cancels_the_fetch() -> None:
    client = FakeClient()
    cache = UpstreamCache(client, "up", cache_seconds=0)  # type: ignore[arg-type]
    first, second = Recorder(), Recorder()
    fetch = cache.subscribe(first)
    assert cache.subscribe(second) is fetch
    fetch.leave(first)
    assert client.cancelled == 0
    fetch.leave(second)
    assert client.cancelled == 1
    # A fetch nobody wants any more takes no one new: the next one starts its own.
    assert cache.subscribe(Recorder()) is not fetch and cache.fetches == 2


def test_cache_seconds_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="cache_seconds"):
        UpstreamCache(FakeClient(), "up", cache_seconds=-1)  # type: ignore[arg-type]


def test_cli_proxy_chain_and_upstream_failure(tmp_path: Path) -> None:
    """The end-to-end check of ``proxy``: the command as a process, stopped by SIGINT."""
    poem = tmp_path / "poem.txt"
    poem.write_bytes("through the proxy — ü\n".encode())
    sock = tmp_path / "proxy.sock"
    with ServerThread() as server:
        (upstream,) = server.serve("-l", "tcp:0:interface=127.0.0.1", str(poem))
        proxy_argv = cli(
            "proxy", "--upstream", upstream, "-l", "tcp:0:interface=127.0.0.1", "-l", f"unix:{sock}"
        )
        with Running(proxy_argv) as proxy:
            tcp, unix = proxy.sources(2)
            assert fetch(tcp) == fetch(unix) == poem.read_bytes()
            server.close()  # the upstream goes away
            # The reset can come before connect() has even returned.
            with pytest.raises(ConnectionResetError):
                fetch(tcp)
            assert proxy.stop(signal.SIGINT) == 0
    failures = [line for line in proxy.stderr_lines if "failed" in line]
    assert len(failures) == 1, proxy.stderr
    assert upstream in failures[0] and "connect-failed" in failures[0]
    assert "Traceback" not in proxy.stderr
    # Its own log says what is listening: a proxy, not a poetry server.
    assert f"proxy listening on {tcp}" in proxy.stderr
    assert "poetry listening" not in proxy.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "tpc:localhost:1"], "invalid upstream"),
        (["--upstream", "tcp:127.0.0.1:1", "-l", "tcp:abc"], "invalid listen endpoint"),
    ],
)
def test_cli_proxy_bad_settings_exit_2(args: list[str], message: str) -> None:
    result = run_cli("proxy", *args)
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert len(stderr.splitlines()) == 1 and message in stderr


def test_cli_proxy_with_a_tls_upstream(tmp_path: Path) -> None:
    from certs import make_ca

    ca = make_ca(tmp_path)
    issued = ca.issue("server")
    listen = f"ssl:0:interface=127.0.0.1:privateKey={issued.key}:certKey={issued.cert}"
    with ServerThread() as server:
        (upstream,) = server.serve("-l", listen)
        assert upstream.startswith("tls:127.0.0.1:")

        def client(proxy: Serving) -> bytes:
            (source,) = proxy.sources(1)
            received = fetch(source)
            proxy.stop()
            return received

        proxy_argv = ("proxy", "--upstream", upstream, "--cacert", str(ca.cert))
        ran, received = serve_cli(*proxy_argv, "-l", "tcp:0:interface=127.0.0.1", client=client)
        assert received == bundled_poems()[0].data
        assert ran.returncode == 0


def test_a_proxy_client_mid_poem_is_reset_when_the_proxy_stops(tmp_path: Path) -> None:
    poem = tmp_path / "slow.txt"
    poem.write_bytes(b"a line of a long, slow poem\n" * 100)  # 3 s at 10 bytes every 0.01 s
    with ServerThread() as server:
        (upstream,) = server.serve(
            "-l", "tcp:0:interface=127.0.0.1", "--delay", "0.01", "--num-bytes", "10", str(poem)
        )

        def client(proxy: Serving) -> tuple[bytes, OSError | None]:
            (source,) = proxy.sources(1)
            with connect(source) as sock:
                sock.settimeout(WAIT)
                received = sock.recv(10)  # the poem is under way
                proxy.stop(signal.SIGTERM)
                try:
                    while chunk := sock.recv(65536):
                        received += chunk
                except OSError as e:
                    return received, e
                return received, None

        argv = ("proxy", "--upstream", upstream, "-l", "tcp:0:interface=127.0.0.1")
        ran, (received, error) = serve_cli(*argv, client=client)
    assert ran.returncode == 0
    assert isinstance(error, ConnectionResetError), (error, received)
    assert 0 < len(received) < len(poem.read_bytes())
    assert poem.read_bytes().startswith(received)
    stderr = ran.stderr.decode()
    assert "resetting 1 connection(s) whose poem is unfinished" in stderr
    assert "Traceback" not in stderr
