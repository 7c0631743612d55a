"""
Testing code that uses poetry_endpoints with trial, the way Twisted tests itself.

    python -m twisted.trial test_user_trial      # from examples/
    pytest examples/test_user_trial.py           # pytest runs trial test cases too

Two kinds of test: against a real poetry server on loopback, started and
stopped by `poetry_server` in the running reactor; and in memory with
`MemoryPoetrySource` on a fake clock, where time only moves when the test
moves it, so timeouts take no time at all.
"""

from __future__ import annotations

from typing import Any

from poem_titles import UNTITLED, title, titles
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.testing import MemoryPoetrySource, poetry_server

reactor: Any = _reactor

ODE = b"\n  Ode to a Socket  \nYou listen, and I connect;\nwe part cleanly.\n"


class TitlesOverLoopback(TestCase):
    """The user's code against a real server on a free port."""

    async def test_the_title_is_the_first_non_blank_line(self) -> None:
        server = await poetry_server(reactor, ODE)
        self.addCleanup(server.stop)  # stops listening, ends open connections
        self.assertEqual(await title(PoetryClient(reactor), server.source), "Ode to a Socket")

    async def test_a_slow_server_is_waited_for(self) -> None:
        server = await poetry_server(reactor, ODE, delay=0.01, num_bytes=8)
        self.addCleanup(server.stop)
        self.assertEqual(await title(PoetryClient(reactor), server.source), "Ode to a Socket")

    async def test_a_server_that_resets_is_reported_not_titled(self) -> None:
        good = await poetry_server(reactor, ODE)
        self.addCleanup(good.stop)
        bad = await poetry_server(reactor, ODE, fault="reset")
        self.addCleanup(bad.stop)
        found = await titles(PoetryClient(reactor), [bad.source, good.source])
        self.assertEqual(found, ["(unavailable: incomplete)", "Ode to a Socket"])


class TitlesInMemory(SynchronousTestCase):
    """The user's code in memory: no socket, no reactor, a clock the test turns."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.client = PoetryClient(self.clock, idle_timeout=30)

    def test_an_empty_poem_is_untitled(self) -> None:
        found = Deferred.fromCoroutine(title(self.client, MemoryPoetrySource(self.clock, b"")))
        self.clock.advance(0)  # connect, send, close
        self.assertEqual(self.successResultOf(found), UNTITLED)

    def test_a_silent_server_times_out_after_the_idle_limit(self) -> None:
        silent = MemoryPoetrySource(self.clock, ODE, fault="stall")
        found = Deferred.fromCoroutine(title(self.client, silent))
        self.clock.advance(0)
        self.clock.advance(29)
        self.assertNoResult(found)
        self.clock.advance(1)
        self.assertEqual(self.failureResultOf(found, PoetryError).value.kind, "timeout")
