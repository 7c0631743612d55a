"""
Testing code that uses poetry_endpoints with plain pytest: no plugin, no
running reactor.

    pytest examples/test_user_pytest.py

`MemoryPoetrySource` connects the package's own poetry server in memory, on
a `MemoryReactorClock`: each test moves the clock, and everything that was
due happens then, in order.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from poem_titles import UNTITLED, title, titles
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.testing import MemoryPoetrySource

T = TypeVar("T")

SONNET = b"Sonnet for a Clock\nTime moves when I say so,\nnot one tick before.\n"


def result_of(d: Deferred[T]) -> T:
    """What C{d} has fired with; raises what it failed with; fails if it has not fired."""
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> MemoryReactorClock:
    return MemoryReactorClock()


def test_the_title_is_the_first_line(clock: MemoryReactorClock) -> None:
    found = Deferred.fromCoroutine(title(PoetryClient(clock), MemoryPoetrySource(clock, SONNET)))
    clock.advance(0)
    assert result_of(found) == "Sonnet for a Clock"


def test_a_slow_poem_arrives_as_the_clock_moves(clock: MemoryReactorClock) -> None:
    slow = MemoryPoetrySource(clock, SONNET, delay=1.0, num_bytes=10)
    found = Deferred.fromCoroutine(title(PoetryClient(clock), slow))
    clock.advance(0)
    assert not found.called
    clock.pump([1.0] * 6)  # 66 bytes: 10 at once, then 10 a second
    assert result_of(found) == "Sonnet for a Clock"


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        ({"fault": "reset"}, "incomplete"),
        ({"fault": "bad-utf8"}, "decode"),
        ({"connect_error": ConnectionRefusedError()}, "connect-failed"),
    ],
)
def test_failures_are_reported_by_kind(
    clock: MemoryReactorClock, server: dict[str, Any], kind: str
) -> None:
    sources = [MemoryPoetrySource(clock, SONNET, **server), MemoryPoetrySource(clock, b"")]
    found = Deferred.fromCoroutine(titles(PoetryClient(clock), sources))
    clock.advance(0)
    assert result_of(found) == [f"(unavailable: {kind})", UNTITLED]


def test_a_poem_over_the_cap_is_refused(clock: MemoryReactorClock) -> None:
    endless = MemoryPoetrySource(clock, SONNET, fault="endless")
    found = Deferred.fromCoroutine(title(PoetryClient(clock, max_bytes=4096), endless))
    clock.advance(0)
    with pytest.raises(PoetryError) as caught:
        result_of(found)
    assert caught.value.kind == "too-large"
