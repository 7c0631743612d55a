"""
`PoetryClient` and `get_poetry` on a `MemoryReactorClock`: connections are only
recorded (C{reactor.tcpClients}, C{reactor.connectors}); the tests play the
network by building the protocol from the recorded factory and attaching a
`StringTransport`, or by failing the attempt, and move time with C{advance}.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from poetry_endpoints import Poem, PoetryClient, PoetryError, get_poetry
from poetry_endpoints.resolving import DEFAULT_NEGATIVE_TTL


def source(i: int = 0) -> str:
    return f"tcp:127.0.0.1:{10000 + i}"


class Result:
    """What a Deferred fired with (once), recorded without leaving an unhandled error."""

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.deferred = deferred
        self.results: list[Any] = []
        deferred.addBoth(self.results.append)

    @property
    def fired(self) -> bool:
        return bool(self.results)

    @property
    def poem(self) -> Poem:
        assert len(self.results) == 1, self.results
        value = self.results[0]
        assert isinstance(value, Poem), value
        return value

    @property
    def error(self) -> PoetryError:
        assert len(self.results) == 1, self.results
        value = self.results[0]
        assert isinstance(value, Failure), value
        assert isinstance(value.value, PoetryError), value
        return value.value


class Net:
    """The memory reactor, a client on it, and ways to answer its connection attempts."""

    def __init__(self, **settings: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.client = PoetryClient(self.reactor, **settings)
        self.transports: dict[int, StringTransport] = {}
        self.protocols: dict[int, IProtocol] = {}

    def get(self, src: str) -> Result:
        return Result(self.client.get(src))

    @property
    def attempts(self) -> int:
        return len(self.reactor.tcpClients)

    def accept(self, i: int) -> StringTransport:
        host, port, factory = self.reactor.tcpClients[i][:3]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports[i], self.protocols[i] = transport, protocol
        return transport

    def refuse(self, i: int) -> None:
        factory = self.reactor.tcpClients[i][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[i], Failure(ConnectionRefusedError("refused"))
        )

    def send(self, i: int, data: bytes) -> None:
        self.protocols[i].dataReceived(data)

    def close(self, i: int) -> None:
        self.protocols[i].connectionLost(Failure(ConnectionDone()))

    def reset(self, i: int) -> None:
        self.protocols[i].connectionLost(Failure(ConnectionLost("reset by peer")))

    def serve(self, i: int, data: bytes) -> None:
        self.accept(i)
        self.send(i, data)
        self.close(i)

    def aborted(self, i: int) -> bool:
        # StringTransport.abortConnection sets `disconnected`; loseConnection doesn't.
        aborted = self.transports[i].disconnected
        if aborted:  # the real transport would report it; nothing may fire twice
            self.protocols[i].connectionLost(Failure(ConnectionAborted()))
        return aborted

    def stopped_connecting(self, i: int) -> bool:
        return bool(self.reactor.connectors[i].stoppedConnecting)

    def idle(self) -> bool:
        return self.reactor.getDelayedCalls() == []


# --- one download --------------------------------------------------------------------------


def test_a_poem_is_delivered() -> None:
    net = Net()
    result = net.get(source())
    assert net.attempts == 1
    assert net.reactor.tcpClients[0][:2] == ("127.0.0.1", 10000)
    net.accept(0)
    net.reactor.advance(2)
    net.send(0, b"Tyger Tyger, burning bright\n")
    net.send(0, b"In the forests of the night\n")
    net.close(0)
    poem = result.poem
    assert poem.source == source()
    assert poem.data == b"Tyger Tyger, burning bright\nIn the forests of the night\n"
    assert poem.text == poem.data.decode()
    assert poem.elapsed == 2.0
    assert net.idle()


def test_connection_refused_is_connect_failed_naming_the_source() -> None:
    net = Net()
    result = net.get(source())
    net.refuse(0)
    error = result.error
    assert error.kind == "connect-failed"
    assert error.source == source()
    assert "refused" in str(error)
    assert str(error).startswith(source() + ": ")
    assert "\n" not in str(error)
    assert net.idle()


def test_an_invalid_source_fails_without_connecting() -> None:
    net = Net()
    result = net.get("tcp:localhost")
    assert result.error.kind == "invalid-source"
    assert net.attempts == 0


def test_a_cap_exceeded_is_too_large_and_aborted() -> None:
    net = Net(max_bytes=100, retries=3)
    result = net.get(source())
    net.accept(0)
    net.send(0, b"x" * 101)
    assert result.error.kind == "too-large"
    assert net.aborted(0)
    net.reactor.advance(60)
    assert net.attempts == 1, "too-large is not retried"
    assert net.idle()


def test_reset_mid_poem_is_incomplete() -> None:
    net = Net()
    result = net.get(source())
    net.accept(0)
    net.send(0, b"half")
    net.reset(0)
    assert result.error.kind == "incomplete"
    assert "4 bytes" in str(result.error)
    assert net.idle()


def test_idle_timeout_through_the_client() -> None:
    net = Net(idle_timeout=3.0)
    result = net.get(source())
    net.accept(0)
    net.reactor.advance(2.0)
    net.send(0, b"a")
    net.reactor.advance(2.9)
    assert not result.fired
    net.reactor.advance(0.1)
    assert result.error.kind == "timeout"
    assert net.aborted(0)
    assert net.idle()


# --- whole-attempt timeout -----------------------------------------------------------------


def test_timeout_while_connecting() -> None:
    net = Net(timeout=5.0, retries=3)
    result = net.get(source())
    net.reactor.advance(4.9)
    assert not result.fired
    net.reactor.advance(0.1)
    error = result.error
    assert error.kind == "timeout"
    assert "5 s" in str(error)
    assert net.stopped_connecting(0)
    net.reactor.advance(100)
    assert net.attempts == 1, "a timed-out attempt is not retried"
    assert net.idle()


def test_timeout_while_receiving() -> None:
    net = Net(timeout=5.0, idle_timeout=None, retries=3)
    result = net.get(source())
    net.reactor.advance(2.0)
    net.accept(0)
    for _ in range(2):
        net.reactor.advance(1.0)
        net.send(0, b"slow ")
    assert not result.fired
    net.reactor.advance(1.0)  # 5 s since the attempt began, though never idle for long
    assert result.error.kind == "timeout"
    assert net.aborted(0)
    net.reactor.advance(100)
    assert net.attempts == 1
    assert net.idle()


def test_timeout_counts_per_attempt() -> None:
    net = Net(timeout=5.0, retries=1, backoff=1.0)
    result = net.get(source())
    net.reactor.advance(4.0)
    net.refuse(0)
    net.reactor.advance(1.0)
    assert net.attempts == 2  # the retry gets a fresh 5 s
    net.reactor.advance(4.0)
    net.serve(1, b"in time")
    assert result.poem.data == b"in time"
    assert net.idle()


# --- cancellation in every phase -----------------------------------------------------------


def test_cancel_while_waiting_for_a_slot() -> None:
    net = Net(concurrency=1)
    first, second = net.get(source(0)), net.get(source(1))
    assert net.attempts == 1
    second.deferred.cancel()
    assert second.error.kind == "cancelled"
    assert "slot" in str(second.error)
    net.serve(0, b"first")
    assert first.poem.data == b"first"
    assert net.attempts == 1, "a cancelled download never connects"
    assert net.idle()


def test_cancel_while_connecting() -> None:
    net = Net(retries=3)
    result = net.get(source())
    result.deferred.cancel()
    assert result.error.kind == "cancelled"
    assert net.stopped_connecting(0)
    net.reactor.advance(100)
    assert net.attempts == 1, "a cancelled attempt is not retried"
    assert net.idle()


def test_cancel_while_connecting_with_a_timeout_set() -> None:
    net = Net(timeout=10.0)
    result = net.get(source())
    net.reactor.advance(1.0)
    result.deferred.cancel()
    assert result.error.kind == "cancelled"
    assert net.stopped_connecting(0)
    assert net.idle()


def test_cancel_while_receiving() -> None:
    net = Net(timeout=10.0, retries=3)
    result = net.get(source())
    net.accept(0)
    net.send(0, b"part of a po")
    result.deferred.cancel()
    assert result.error.kind == "cancelled"
    assert net.aborted(0)
    net.reactor.advance(100)
    assert net.attempts == 1
    assert net.idle()


def test_cancel_while_waiting_to_retry() -> None:
    net = Net(retries=3)
    result = net.get(source())
    net.refuse(0)
    assert not result.fired
    assert len(net.reactor.getDelayedCalls()) == 1
    result.deferred.cancel()
    assert result.error.kind == "cancelled"
    assert "retry" in str(result.error)
    assert net.idle()
    net.reactor.advance(100)
    assert net.attempts == 1


def test_cancel_frees_the_slot() -> None:
    net = Net(concurrency=1)
    first = net.get(source(0))
    second = net.get(source(1))
    net.accept(0)
    first.deferred.cancel()
    assert first.error.kind == "cancelled"
    assert net.attempts == 2
    net.serve(1, b"second")
    assert second.poem.data == b"second"


def test_cancel_after_delivery_changes_nothing() -> None:
    net = Net()
    result = net.get(source())
    net.serve(0, b"whole")
    result.deferred.cancel()
    assert result.poem.data == b"whole"


# --- retries -------------------------------------------------------------------------------


def test_retries_back_off_exponentially_for_connect_failed() -> None:
    net = Net(retries=3)
    result = net.get(source())
    starts = []
    for expected_start in (0.0, 0.5, 1.5, 3.5):
        while net.attempts == len(starts):
            net.reactor.advance(0.125)
        starts.append(net.reactor.seconds())
        assert starts[-1] == expected_start
        net.refuse(len(starts) - 1)
    error = result.error
    assert error.kind == "connect-failed"
    assert net.attempts == 4
    net.reactor.advance(100)
    assert net.attempts == 4
    assert net.idle()


def test_retry_after_incomplete_then_success() -> None:
    net = Net(retries=2)
    result = net.get(source())
    net.accept(0)
    net.send(0, b"Half a po")
    net.reset(0)
    assert not result.fired
    net.reactor.advance(0.49)
    assert net.attempts == 1
    net.reactor.advance(0.01)
    assert net.attempts == 2
    net.serve(1, b"A whole poem")
    poem = result.poem
    assert poem.data == b"A whole poem", "nothing of the failed attempt leaks into the poem"
    assert poem.elapsed == 0.5
    assert net.idle()


def test_no_retries_by_default() -> None:
    net = Net()
    result = net.get(source())
    net.refuse(0)
    assert result.error.kind == "connect-failed"
    net.reactor.advance(100)
    assert net.attempts == 1


def test_decode_errors_are_not_retried() -> None:
    net = Net(retries=3)
    result = net.get(source())
    net.serve(0, b"\xff\xfe bad")
    assert result.error.kind == "decode"
    net.reactor.advance(100)
    assert net.attempts == 1


# --- concurrency ---------------------------------------------------------------------------


def test_concurrency_bounds_connections_in_flight() -> None:
    net = Net(concurrency=2)
    results = [net.get(source(i)) for i in range(5)]
    assert net.attempts == 2
    net.serve(0, b"0")
    assert net.attempts == 3
    net.refuse(1)
    assert net.attempts == 4
    net.accept(2)
    assert net.attempts == 4, "a connected download still holds its slot"
    net.send(2, b"2")
    net.close(2)
    net.serve(3, b"3")
    net.serve(4, b"4")
    assert net.attempts == 5
    assert [r.results[0].data for r in results if isinstance(r.results[0], Poem)] == [
        b"0",
        b"2",
        b"3",
        b"4",
    ]
    assert results[1].error.kind == "connect-failed"
    assert net.idle()


def test_a_download_waiting_to_retry_holds_its_slot() -> None:
    net = Net(concurrency=1, retries=1)
    first, second = net.get(source(0)), net.get(source(1))
    net.refuse(0)
    net.reactor.advance(0.5)
    assert [c[1] for c in net.reactor.tcpClients] == [10000, 10000]
    net.serve(1, b"first")
    assert first.poem.data == b"first"
    assert net.reactor.tcpClients[2][1] == 10001
    net.serve(2, b"second")
    assert second.poem.data == b"second"


# --- decoding ------------------------------------------------------------------------------


def test_utf8_by_default() -> None:
    net = Net()
    result = net.get(source())
    net.serve(0, "Ünïcödé — 詩\n".encode())
    assert result.poem.text == "Ünïcödé — 詩\n"
    assert result.poem.encoding == "utf-8"


def test_invalid_utf8_is_decode_naming_the_source() -> None:
    net = Net()
    result = net.get(source())
    net.serve(0, b"ok \xff")
    error = result.error
    assert error.kind == "decode"
    assert error.source == source()
    assert "utf-8" in str(error)
    assert net.idle()


def test_errors_replace() -> None:
    net = Net(errors="replace")
    result = net.get(source())
    net.serve(0, b"ok \xff")
    assert result.poem.text == "ok \ufffd"
    assert result.poem.data == b"ok \xff"


def test_explicit_encoding_wins() -> None:
    net = Net(encoding="latin-1")
    result = net.get(source())
    net.serve(0, "é".encode())
    assert result.poem.text == "é".encode().decode("latin-1")
    assert result.poem.encoding == "latin-1"


# --- a progress callback that raises -------------------------------------------------------


class CallbackBug(Exception):
    pass


def raise_at(limit: int, seen: list[int]) -> Any:
    def progress(received: int) -> None:
        seen.append(received)
        if received >= limit:
            raise CallbackBug(f"no more than {limit} please")

    return progress


def test_a_raising_progress_callback_fails_the_download_with_its_own_exception() -> None:
    net = Net(retries=3)
    seen: list[int] = []
    result = Result(net.client.get(source(), progress=raise_at(5, seen)))
    net.accept(0)
    net.send(0, b"abc")
    assert not result.fired
    net.send(0, b"defg")  # raises inside the callback; must not escape dataReceived
    assert seen == [3, 7]
    assert len(result.results) == 1
    failure = result.results[0]
    assert isinstance(failure, Failure) and failure.check(CallbackBug), failure
    assert str(failure.value) == "no more than 5 please"
    assert net.aborted(0)
    net.send(0, b"late")  # bytes in flight after the abort reach no callback
    assert seen == [3, 7]
    net.reactor.advance(100)
    assert net.attempts == 1, "the caller's bug is not retried"
    assert net.idle()


def test_a_raising_progress_callback_frees_the_slot() -> None:
    net = Net(concurrency=1)
    first = Result(net.client.get(source(0), progress=raise_at(1, [])))
    second = net.get(source(1))
    net.accept(0)
    net.send(0, b"x")
    assert first.results[0].check(CallbackBug)
    assert net.attempts == 2
    net.serve(1, b"next")
    assert second.poem.data == b"next"
    assert net.idle()


# --- many ----------------------------------------------------------------------------------


def test_get_many_keeps_order_and_never_fails() -> None:
    net = Net(concurrency=10)
    many = Result(net.client.get_many([source(0), "tpc:nope:1", source(1), source(2)]))
    assert net.attempts == 3
    net.serve(2, b"third")  # finishes first
    net.refuse(1)
    net.serve(0, b"first")
    assert len(many.results) == 1
    values = many.results[0]
    assert isinstance(values, list) and len(values) == 4
    assert isinstance(values[0], Poem) and values[0].data == b"first"
    assert isinstance(values[1], PoetryError) and values[1].kind == "invalid-source"
    assert isinstance(values[2], PoetryError) and values[2].kind == "connect-failed"
    assert values[2].source == source(1)
    assert isinstance(values[3], Poem) and values[3].data == b"third"
    assert net.idle()


@implementer(IStreamClientEndpoint)
class BrokenEndpoint:
    """An endpoint with a bug: connect raises instead of returning a Deferred."""

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        raise RuntimeError("bug in the endpoint")


def test_get_many_never_lists_a_failure_it_hands_a_bug_on() -> None:
    net = Net(concurrency=10)
    many = Result(net.client.get_many([source(0), BrokenEndpoint(), "tpc:nope:1"]))
    net.serve(0, b"first")
    assert len(many.results) == 1
    failure = many.results[0]
    assert isinstance(failure, Failure), failure
    assert failure.check(RuntimeError)
    assert str(failure.value) == "bug in the endpoint"
    assert net.idle()


def test_get_many_of_nothing() -> None:
    net = Net()
    many = Result(net.client.get_many([]))
    assert many.results == [[]]


# --- get_poetry and async def --------------------------------------------------------------


def test_get_poetry() -> None:
    reactor = MemoryReactorClock()
    result = Result(get_poetry(reactor, source(), max_bytes=5, timeout=3.0))
    host, port, factory = reactor.tcpClients[0][:3]
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"123456")
    assert result.error.kind == "too-large"
    assert transport.disconnected
    assert reactor.getDelayedCalls() == []


def test_get_poetry_timeout() -> None:
    reactor = MemoryReactorClock()
    result = Result(get_poetry(reactor, source(), timeout=3.0))
    reactor.advance(3.0)
    assert result.error.kind == "timeout"
    assert reactor.connectors[0].stoppedConnecting
    assert reactor.getDelayedCalls() == []


def test_await_with_from_coroutine() -> None:
    net = Net()

    async def fetch_two() -> list[str]:
        first = await net.client.get(source(0))
        try:
            await net.client.get(source(1))
        except PoetryError as e:
            return [first.text, e.kind]
        raise AssertionError("the second download should fail")

    result = Result(Deferred.fromCoroutine(fetch_two()))
    net.serve(0, b"awaited")
    assert not result.fired
    net.refuse(1)
    assert result.results == [["awaited", "connect-failed"]]


def test_await_with_ensure_deferred_and_cancel() -> None:
    net = Net()

    async def fetch() -> Poem:
        return await get_poetry(net.reactor, source())

    result = Result(ensureDeferred(fetch()))
    net.accept(0)
    net.send(0, b"never finished")
    result.deferred.cancel()
    assert len(result.results) == 1
    failure = result.results[0]
    assert isinstance(failure, Failure) and isinstance(failure.value, PoetryError)
    assert failure.value.kind == "cancelled"
    assert net.aborted(0)
    assert net.idle()


# --- settings ------------------------------------------------------------------------------


NAN, INF = float("nan"), float("inf")

BAD_SETTINGS: list[tuple[str, object, type[Exception]]] = [
    ("timeout", 0, ValueError),
    ("timeout", -1, ValueError),
    ("timeout", NAN, ValueError),
    ("timeout", INF, ValueError),
    ("timeout", True, TypeError),
    ("timeout", "5", TypeError),
    ("idle_timeout", 0, ValueError),
    ("idle_timeout", NAN, ValueError),
    ("idle_timeout", INF, ValueError),
    ("idle_timeout", -INF, ValueError),
    ("max_bytes", 0, ValueError),
    ("max_bytes", -5, ValueError),
    ("max_bytes", True, TypeError),
    ("max_bytes", 1.5, TypeError),
    ("max_bytes", NAN, TypeError),
    ("concurrency", 0, ValueError),
    ("concurrency", NAN, TypeError),
    ("concurrency", 2.0, TypeError),
    ("concurrency", True, TypeError),
    ("retries", -1, ValueError),
    ("retries", NAN, TypeError),
    ("retries", INF, TypeError),
    ("retries", False, TypeError),
    ("backoff", -1, ValueError),
    ("backoff", NAN, ValueError),
    ("backoff", INF, ValueError),
    ("backoff", True, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_SETTINGS)
def test_bad_settings_are_refused_naming_the_parameter(
    name: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"^{name} must be"):
        PoetryClient(MemoryReactorClock(), **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [bad for bad in BAD_SETTINGS if bad[0] not in {"concurrency", "retries", "backoff"}],
)
def test_get_poetry_refuses_bad_settings_too(
    name: str, value: object, error: type[Exception]
) -> None:
    reactor = MemoryReactorClock()
    with pytest.raises(error, match=f"^{name} must be"):
        get_poetry(reactor, source(), **{name: value})  # type: ignore[arg-type]
    assert reactor.tcpClients == []


@pytest.mark.parametrize(
    ("value", "error"), [(value, error) for name, value, error in BAD_SETTINGS if name == "timeout"]
)
def test_a_bad_close_timeout_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^timeout must be"):
        PoetryClient(MemoryReactorClock()).close(timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout": 1e-3, "idle_timeout": None, "max_bytes": None},
        {"timeout": None, "idle_timeout": 1, "max_bytes": 1},
        {"concurrency": 1, "retries": 0, "backoff": 0},
    ],
)
def test_edge_settings_are_accepted(settings: dict[str, Any]) -> None:
    PoetryClient(MemoryReactorClock(), **settings)


def test_something_that_is_not_a_reactor_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^reactor must be a Twisted reactor.* not str$"):
        PoetryClient("not a reactor")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not Clock$"):
        get_poetry(Clock(), source())  # type: ignore[arg-type]


def test_unknown_codec_is_refused_up_front() -> None:
    with pytest.raises(LookupError):
        PoetryClient(MemoryReactorClock(), encoding="no-such-codec")
    with pytest.raises(LookupError):
        PoetryClient(MemoryReactorClock(), errors="no-such-handler")


# --- names: resolving is a phase of its own ------------------------------------------------


@implementer(IHostResolution)
class Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        raise NotImplementedError("HostnameEndpoint never cancels a resolution")


@implementer(IHostnameResolver)
class PendingResolver:
    """A resolver that answers only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[IResolutionReceiver, str, int]] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: object = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        self.pending.append((resolutionReceiver, hostName, portNumber))
        return resolution

    def answer(self, *hosts: str) -> None:
        receiver, _, port = self.pending.pop(0)
        for host in hosts:
            receiver.addressResolved(IPv4Address("TCP", host, port))
        receiver.resolutionComplete()


@implementer(IReactorPluggableNameResolver)
class ResolvingReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.nameResolver = PendingResolver()

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        old, self.nameResolver = self.nameResolver, resolver
        return old


class NamedNet(Net):
    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.reactor = ResolvingReactor()
        self.client = PoetryClient(self.reactor, **settings)


def test_shorthand_name_is_resolved_then_connected() -> None:
    net = NamedNet()
    result = net.get("poetry:10000")
    assert net.attempts == 0
    assert net.reactor.nameResolver.pending[0][1:] == ("poetry", 10000)
    net.reactor.nameResolver.answer("127.0.0.1")
    assert net.reactor.tcpClients[0][:2] == ("127.0.0.1", 10000)
    net.serve(0, b"from a container")
    assert result.poem.data == b"from a container"
    assert result.poem.source == "poetry:10000"
    assert net.idle()


def test_a_name_that_does_not_resolve_is_connect_failed() -> None:
    net = NamedNet()
    result = net.get("poetry:10000")
    net.reactor.nameResolver.answer()
    error = result.error
    assert error.kind == "connect-failed"
    assert "resolve" in str(error)
    assert net.attempts == 0
    assert net.idle()


def test_cancel_while_resolving() -> None:
    net = NamedNet(retries=3)
    result = net.get("poetry:10000")
    result.deferred.cancel()
    assert result.error.kind == "cancelled"
    net.reactor.nameResolver.answer("127.0.0.1")  # too late: nothing connects
    net.reactor.advance(100)
    assert net.attempts == 0
    assert net.idle()


def test_timeout_while_resolving() -> None:
    net = NamedNet(timeout=2.0, retries=3)
    result = net.get("poetry:10000")
    net.reactor.advance(2.0)
    assert result.error.kind == "timeout"
    net.reactor.nameResolver.answer("127.0.0.1")
    net.reactor.advance(100)
    assert net.attempts == 0
    assert net.idle()


# --- memory: a poem is held at most twice (bytes and text) --------------------------------


def test_peak_memory_while_finishing_a_poem_stays_below_two_and_a_half_poems() -> None:
    size = 16 << 20
    net = Net(max_bytes=size)
    result = net.get(source())
    net.accept(0)
    piece = b"v" * 4096
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(size // len(piece)):
            net.send(0, piece[:-1] + b"w")  # a fresh object per read, as from recv
        net.close(0)  # join, decode, Poem: the moment the copies could pile up
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    poem = result.poem
    assert len(poem.data) == len(poem.text) == size
    assert peak < 2.5 * size, f"peak {peak / size:.2f} x the poem"
    result.results.clear()


def test_cancelling_get_many_cancels_every_download() -> None:
    net = Net(concurrency=1)
    many = Result(net.client.get_many([source(0), source(1), source(2)]))
    net.accept(0)
    net.send(0, b"partial")
    many.deferred.cancel()
    assert net.aborted(0)
    assert net.attempts == 1
    assert len(many.results) == 1
    values = many.results[0]
    assert [v.kind for v in values] == ["cancelled"] * 3
    net.reactor.advance(100)
    assert net.attempts == 1
    assert net.idle()


def test_elapsed_excludes_waiting_for_a_slot() -> None:
    net = Net(concurrency=1)
    first, second = net.get(source(0)), net.get(source(1))
    net.reactor.advance(5.0)
    net.serve(0, b"first")
    net.accept(1)
    net.reactor.advance(1.5)
    net.send(1, b"second")
    net.close(1)
    assert first.poem.elapsed == 5.0
    assert second.poem.elapsed == 1.5


# --- name lookups shared within one client (issue 6) ----------------------------------------


def test_concurrent_downloads_of_one_name_share_one_lookup() -> None:
    net = NamedNet()
    results = [net.get("poetry:10000") for _ in range(5)]
    assert len(net.reactor.nameResolver.pending) == 1
    net.reactor.nameResolver.answer("127.0.0.1")
    assert net.attempts == 5
    assert all(client[:2] == ("127.0.0.1", 10000) for client in net.reactor.tcpClients)
    for i in range(5):
        net.serve(i, b"shared")
    assert [r.poem.data for r in results] == [b"shared"] * 5
    assert net.idle()


def test_a_resolved_name_is_reused_for_a_minute_then_asked_again() -> None:
    net = NamedNet()
    first = net.get("poetry:10000")
    net.reactor.nameResolver.answer("127.0.0.1")
    net.serve(0, b"one")
    assert first.poem.data == b"one"
    second = net.get("poetry:10000")
    assert net.reactor.nameResolver.pending == []  # answered from memory
    net.serve(1, b"two")
    assert second.poem.data == b"two"
    net.reactor.advance(61)
    net.get("poetry:10000")
    assert len(net.reactor.nameResolver.pending) == 1


def test_a_name_that_did_not_resolve_is_asked_again_after_a_short_while() -> None:
    net = NamedNet()
    first = net.get("poetry:10000")
    net.reactor.nameResolver.answer()
    assert first.error.kind == "connect-failed"
    # Within the negative TTL the failure is remembered (issue 14 item 14) ...
    again = net.get("poetry:10000")
    assert net.reactor.nameResolver.pending == []
    net.reactor.advance(0)  # a remembered failure is told on the next turn
    assert again.error.kind == "connect-failed"
    # ... and then the name is asked again.
    net.reactor.advance(DEFAULT_NEGATIVE_TTL)
    net.get("poetry:10000")
    assert len(net.reactor.nameResolver.pending) == 1


def test_other_clients_do_not_share_lookups() -> None:
    net = NamedNet()
    net.get("poetry:10000")
    PoetryClient(net.reactor).get("poetry:10000")
    assert len(net.reactor.nameResolver.pending) == 2
