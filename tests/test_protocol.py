"""
`PoetryProtocol` on a `StringTransport` with a `MemoryReactorClock` as its
clock: every way a connection can end, deterministically.

`StringTransport.abortConnection` sets C{disconnected} (and C{disconnecting});
`loseConnection` sets only C{disconnecting}.  So C{disconnected} tells an abort
(RST) from a gentle close.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from poetry_endpoints import PoetryError, PoetryProtocol
from poetry_endpoints.protocol import BIG_POEM, BIG_READ

SOURCE = "tcp:127.0.0.1:10000"


class Outcome:
    """Everything a Deferred fired with, so a second firing would show."""

    def __init__(self, deferred: Deferred[bytes]) -> None:
        self.results: list[bytes | Failure] = []
        deferred.addBoth(self._record)

    def _record(self, result: bytes | Failure) -> None:
        self.results.append(result)

    @property
    def data(self) -> bytes:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, bytes), result
        return result

    @property
    def error(self) -> PoetryError:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, Failure), result
        assert isinstance(result.value, PoetryError), result
        return result.value


def connected(
    clock: MemoryReactorClock, **settings: float | int | None
) -> tuple[PoetryProtocol, StringTransport, Outcome]:
    protocol = PoetryProtocol(SOURCE, clock, **settings)  # type: ignore[arg-type]
    assert protocol.finished is not None
    outcome = Outcome(protocol.finished)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, outcome


def done() -> Failure:
    return Failure(ConnectionDone("clean close"))


def reset() -> Failure:
    return Failure(ConnectionLost("Connection reset by peer"))


@pytest.fixture
def clock() -> MemoryReactorClock:
    return MemoryReactorClock()


# --- endings -------------------------------------------------------------------------------


def test_clean_close_delivers_the_joined_bytes(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock)
    for chunk in (b"Once ", b"upon ", b"", b"a midnight dreary\n"):
        protocol.dataReceived(chunk)
    assert outcome.results == []
    protocol.connectionLost(done())
    assert outcome.data == b"Once upon a midnight dreary\n"
    assert protocol.received == len(outcome.data)
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_clean_close_after_no_bytes_is_an_empty_poem(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock)
    protocol.connectionLost(done())
    assert outcome.data == b""
    assert clock.getDelayedCalls() == []


def test_clean_close_is_the_default_reason(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock)
    protocol.dataReceived(b"x")
    protocol.connectionLost()
    assert outcome.data == b"x"


@pytest.mark.parametrize(
    "reason",
    [
        ConnectionLost("Connection reset by peer"),
        ConnectionAborted(),
        OSError("something else"),
    ],
)
def test_any_other_end_is_incomplete_with_the_byte_count(
    clock: MemoryReactorClock, reason: Exception
) -> None:
    protocol, _, outcome = connected(clock)
    protocol.dataReceived(b"a" * 1234)
    protocol.dataReceived(b"b" * 766)
    protocol.connectionLost(Failure(reason))
    error = outcome.error
    assert error.kind == "incomplete"
    assert error.source == SOURCE
    assert "2000 bytes" in str(error)
    assert str(error).startswith(f"{SOURCE}: ")
    assert clock.getDelayedCalls() == []


# --- idle timeout --------------------------------------------------------------------------


def test_idle_timeout_aborts_and_fails_with_timeout(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock, idle_timeout=5.0)
    protocol.dataReceived(b"some")
    clock.advance(4.999)
    assert outcome.results == []
    clock.advance(0.001)
    error = outcome.error
    assert error.kind == "timeout"
    assert "4 bytes" in str(error)
    assert transport.disconnected, "the connection must be aborted, not closed gently"
    assert clock.getDelayedCalls() == []
    # The transport then reports the abort; nothing fires again.
    protocol.connectionLost(Failure(ConnectionAborted()))
    assert len(outcome.results) == 1


def test_idle_timeout_runs_from_connection_made(clock: MemoryReactorClock) -> None:
    protocol = PoetryProtocol(SOURCE, clock, idle_timeout=3.0)
    assert protocol.finished is not None
    outcome = Outcome(protocol.finished)
    clock.advance(100)  # not connected yet: no timer
    assert outcome.results == [] and clock.getDelayedCalls() == []
    transport = StringTransport()
    protocol.makeConnection(transport)
    clock.advance(3.0)
    assert outcome.error.kind == "timeout"
    assert transport.disconnected


def test_each_read_resets_the_idle_timer(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock, idle_timeout=5.0)
    for _ in range(10):
        clock.advance(4.0)
        protocol.dataReceived(b"line\n")
    assert outcome.results == []
    assert clock.seconds() == 40.0  # far past one idle period in total
    clock.advance(4.9)
    assert outcome.results == []
    protocol.connectionLost(done())
    assert outcome.data == b"line\n" * 10
    assert clock.getDelayedCalls() == []
    assert not transport.disconnected


def test_no_idle_timeout(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock, idle_timeout=None)
    assert clock.getDelayedCalls() == []
    clock.advance(10**6)
    protocol.dataReceived(b"late")
    protocol.connectionLost(done())
    assert outcome.data == b"late"


# --- max_bytes -----------------------------------------------------------------------------


def test_exactly_the_cap_is_fine(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock, max_bytes=10)
    protocol.dataReceived(b"12345")
    protocol.dataReceived(b"67890")
    assert not transport.disconnecting
    protocol.connectionLost(done())
    assert outcome.data == b"1234567890"


def test_one_byte_over_the_cap_aborts_at_once(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock, max_bytes=10)
    protocol.dataReceived(b"1234567890")
    assert outcome.results == []
    protocol.dataReceived(b"!")
    error = outcome.error
    assert error.kind == "too-large"
    assert "10" in str(error)
    assert transport.disconnected
    assert clock.getDelayedCalls() == []
    # Bytes still in flight and the transport's own report change nothing.
    protocol.dataReceived(b"more")
    protocol.connectionLost(Failure(ConnectionAborted()))
    assert len(outcome.results) == 1


def test_one_big_chunk_over_the_cap(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock, max_bytes=4096)
    protocol.dataReceived(b"x" * 4097)
    assert outcome.error.kind == "too-large"
    assert transport.disconnected


def test_no_cap(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock, max_bytes=None)
    protocol.dataReceived(b"x" * (1 << 20))
    protocol.connectionLost(done())
    assert len(outcome.data) == 1 << 20


# --- cancellation and firing once ----------------------------------------------------------


def test_cancel_aborts_and_fails_with_cancelled(clock: MemoryReactorClock) -> None:
    protocol, transport, outcome = connected(clock)
    protocol.dataReceived(b"half a po")
    assert protocol.finished is not None
    protocol.finished.cancel()
    error = outcome.error
    assert error.kind == "cancelled"
    assert error.source == SOURCE
    assert transport.disconnected
    assert clock.getDelayedCalls() == []
    protocol.connectionLost(Failure(ConnectionAborted()))
    protocol.dataReceived(b"em")
    assert len(outcome.results) == 1


def test_cancel_before_connection_fails_without_a_transport(clock: MemoryReactorClock) -> None:
    protocol = PoetryProtocol(SOURCE, clock)
    assert protocol.finished is not None
    outcome = Outcome(protocol.finished)
    protocol.finished.cancel()
    assert outcome.error.kind == "cancelled"


def test_late_events_after_a_clean_close_change_nothing(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock)
    protocol.dataReceived(b"poem")
    protocol.connectionLost(done())
    protocol.dataReceived(b"garbage")
    protocol.connectionLost(reset())
    protocol.abort(PoetryError(SOURCE, "timeout", "late"))
    assert outcome.data == b"poem"
    assert protocol.finished is None


def test_late_events_after_a_failure_change_nothing(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock, idle_timeout=1.0)
    protocol.dataReceived(b"poem")
    protocol.connectionLost(reset())
    assert outcome.error.kind == "incomplete"
    protocol.dataReceived(b"more")
    protocol.connectionLost(done())
    clock.advance(10)
    assert len(outcome.results) == 1
    assert protocol.received == 4, "chunks after firing are dropped, not counted"


def test_a_finished_protocol_holds_no_data(clock: MemoryReactorClock) -> None:
    protocol, _, outcome = connected(clock, max_bytes=100)
    protocol.dataReceived(b"x" * 60)
    protocol.dataReceived(b"x" * 60)
    assert outcome.error.kind == "too-large"
    assert protocol._chunks == []


def test_progress_is_reported_after_each_read(clock: MemoryReactorClock) -> None:
    seen: list[int] = []
    protocol, _, outcome = connected(clock, progress=seen.append)  # type: ignore[arg-type]
    for chunk in (b"ab", b"cde", b"f"):
        protocol.dataReceived(chunk)
    protocol.connectionLost(done())
    assert seen == [2, 5, 6]
    assert outcome.data == b"abcdef"


# --- no quadratic copying (issue 2 item 3, issue 6 item 3) --------------------------------

CHUNK = 4096


class ClassicProtocol(Protocol):
    """The tutorial's receiver, `poem += data`: what the guard must catch."""

    def __init__(self) -> None:
        self.poem = b""

    def dataReceived(self, data: bytes) -> None:
        self.poem += data


def allocation_while_receiving(
    protocol: Protocol, size: int, finish: Callable[[], object]
) -> tuple[int, int]:
    """
    Feed C{size} bytes in 4 KiB chunks, as a transport would (each chunk a new
    object), then C{finish}.

    @return: the bytes allocated by C{dataReceived} calls, summed over the
        calls (each call's peak above the memory in use when it started), and
        the peak traced memory above the start, C{finish} included.
    """
    piece = b"p" * CHUNK
    allocated = 0
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        peak = 0
        for _ in range(size // CHUNK):
            chunk = piece[:-1] + b"q"  # a fresh object per read, like a transport's recv
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            protocol.dataReceived(chunk)
            del chunk
            call_peak = tracemalloc.get_traced_memory()[1]
            allocated += call_peak - before
            peak = max(peak, call_peak - start)
        tracemalloc.reset_peak()
        finish()
        peak = max(peak, tracemalloc.get_traced_memory()[1] - start)
    finally:
        tracemalloc.stop()
    return allocated, peak


def test_the_guard_catches_quadratic_copying() -> None:
    # 1 MiB in 4 KiB reads: `poem += data` copies ~128 MiB in all.
    size = 1 << 20
    allocated, _ = allocation_while_receiving(ClassicProtocol(), size, lambda: None)
    assert allocated > 20 * size


def test_receiving_copies_linearly_and_peaks_below_two_and_a_half_poems(
    clock: MemoryReactorClock,
) -> None:
    size = 16 << 20
    protocol, _, outcome = connected(clock, max_bytes=size)
    allocated, peak = allocation_while_receiving(
        protocol, size, lambda: protocol.connectionLost(done())
    )
    assert len(outcome.data) == size
    # Storing each read costs a little bookkeeping; copying the poem so far on
    # each read would cost ~2 GiB here.
    assert allocated < 2 * size, f"{allocated} bytes allocated while receiving {size}"
    assert peak < 2.5 * size, f"peak {peak} bytes for a {size}-byte poem"
    outcome.results.clear()  # let the 16 MiB go


# --- read size ------------------------------------------------------------------------------


def _reading(transport_read_size: int) -> tuple[PoetryProtocol, StringTransport]:
    protocol = PoetryProtocol("tcp:poems:10000", MemoryReactorClock(), max_bytes=None)
    transport = StringTransport()
    transport.bufferSize = transport_read_size  # type: ignore[attr-defined]
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_long_poem_is_read_in_bigger_pieces_once_it_passes_big_poem() -> None:
    protocol, transport = _reading(65536)
    protocol.dataReceived(b"x" * (BIG_POEM - 1))
    assert transport.bufferSize == 65536  # type: ignore[attr-defined]
    protocol.dataReceived(b"x")
    assert transport.bufferSize == BIG_READ  # type: ignore[attr-defined]


def test_a_short_poem_keeps_the_transports_read_size() -> None:
    protocol, transport = _reading(65536)
    protocol.dataReceived(b"x" * 4096)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert transport.bufferSize == 65536  # type: ignore[attr-defined]


def test_a_transport_reading_more_already_is_left_alone() -> None:
    protocol, transport = _reading(BIG_READ * 2)
    protocol.dataReceived(b"x" * BIG_POEM)
    assert transport.bufferSize == BIG_READ * 2  # type: ignore[attr-defined]
