"""
A stand-in for the proxy's L{PoetryClient}: a fake clock, and fetches the
test answers by hand, so the proxy's fan-out can be driven step by step.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from poetry_endpoints.streaming import Streamed


class FakeClient:
    """
    Just enough of a PoetryClient: C{reactor} a L{Clock}, C{stream} a fetch
    the test ends by hand (each one's Deferred in C{fetches}, its sink in
    C{sinks}); C{cancelled} counts the fetches cancelled.
    """

    def __init__(self) -> None:
        self.reactor = Clock()
        self.fetches: list[Deferred[Streamed]] = []
        self.sinks: list[Any] = []
        self.cancelled = 0

    def parse(self, source: str) -> Any:
        return _Named(source)

    def stream(self, source: Any, sink: Any) -> Deferred[Streamed]:
        def cancel(d: Deferred[Streamed]) -> None:
            self.cancelled += 1

        fetch: Deferred[Streamed] = Deferred(cancel)
        self.fetches.append(fetch)
        self.sinks.append(sink)
        return fetch

    def answer(self, index: int, data: bytes) -> None:
        """Stream C{data} through fetch C{index}, then end it cleanly."""
        self.sinks[index].write(data)
        self.fetches[index].callback(Streamed("up", len(data), 0.0))


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name
