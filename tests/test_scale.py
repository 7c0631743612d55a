"""
Scale without breaking (issue 5): ten thousand sources in one run, every poem
delivered, no descriptor left behind.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from conftest import unix_socket_path
from poetry_endpoints import Poem, PoetryClient
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory

reactor: Any = _reactor

SOURCES = 10_000
CAP = 1024


def open_descriptors() -> dict[str, str]:
    """This process's open descriptors and what each refers to."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, now closed
            pass
    return found


class TenThousandSourcesTests(TestCase):
    """Many sources with the default concurrency (100) against loopback servers."""

    timeout = 180

    async def test_every_poem_arrives_and_descriptors_return_to_before(self) -> None:
        poems = [PoemFile(f"p{i}", f"poem {i}: {'ab' * i}\n".encode()) for i in range(7)]
        factory = PoetryServerFactory(poems, reactor)
        # Two listeners, TCP and Unix, so both transports' clean-up is counted.
        tcp = await serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=1024").listen(
            factory
        )
        socket_path = unix_socket_path(self)
        unix = await serverFromString(reactor, f"unix:{socket_path}:backlog=1024").listen(factory)
        # Every tenth source sends more than the cap and is aborted, every
        # 25th is refused: the failure paths must release descriptors too.
        big = PoetryServerFactory([PoemFile("big", b"x" * (CAP * 4))], reactor)
        oversized = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(big)
        # Bound, never listening, kept until the end: refused, and no other
        # process (a parallel test run) can take the port meanwhile.
        refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(refusing.close)
        refusing.bind(("127.0.0.1", 0))
        refused_port = refusing.getsockname()[1]

        def source(i: int) -> str:
            if i % 10 == 0:
                return f"127.0.0.1:{oversized.getHost().port}"
            if i % 25 == 0:
                return f"tcp:127.0.0.1:{refused_port}"
            return f"tcp:127.0.0.1:{tcp.getHost().port}" if i % 2 else f"unix:{socket_path}"

        sources = [source(i) for i in range(SOURCES)]
        # Measured with the servers listening and the reactor running, since
        # both open descriptors of their own that they keep (wakers, and the
        # /dev/null that Twisted's listening ports reserve for EMFILE).
        await deferLater(reactor, 0, lambda: None)
        before = open_descriptors()
        try:
            client = PoetryClient(reactor, timeout=60, max_bytes=CAP)
            results = await client.get_many(sources)
            # Let the reactor finish closing the server side of each connection.
            await deferLater(reactor, 0.1, lambda: None)
            after = open_descriptors()
        finally:
            await tcp.stopListening()
            await unix.stopListening()
            await oversized.stopListening()

        self.assertEqual(len(results), SOURCES)
        served = {poem.data for poem in poems}
        for i, result in enumerate(results):
            if i % 10 == 0:
                self.assertEqual(getattr(result, "kind", None), "too-large", result)
            elif i % 25 == 0:
                self.assertEqual(getattr(result, "kind", None), "connect-failed", result)
            else:
                self.assertIsInstance(result, Poem)
                assert isinstance(result, Poem)
                self.assertIn(result.data, served)
        self.assertEqual(after, before)
