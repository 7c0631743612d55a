"""
Use the client from an asyncio program: ``asyncio.run`` owns the loop.

    python examples/asyncio_embedding.py [SOURCE ...]

``twisted_reactor()`` runs Twisted's asyncio reactor on the program's loop
for as long as the ``async with`` lasts, so every kind of source works (host
names and ``http://`` included, which need the reactor's thread pool), and
stops it on the way out, so the program ends as soon as ``main`` returns.
``as_future`` makes a Deferred an asyncio Future.  With no SOURCE a poetry
server is started on a free loopback port first.
"""

from __future__ import annotations

import asyncio
import sys

from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import serverFromString

from poetry_endpoints import Poem, PoetryClient, PoetryError, PoetryReactor
from poetry_endpoints.aio import as_future, twisted_reactor
from poetry_endpoints.servers.poetry import PoetryServerFactory, bundled_poems


async def fetch(reactor: PoetryReactor, sources: list[str]) -> list[Poem | BaseException]:
    """Each source's poem, or what it failed with, in order."""
    client = PoetryClient(reactor, timeout=10)
    try:
        # Plain asyncio from here: gather Futures made from the client's Deferreds.
        return await asyncio.gather(
            *(as_future(client.get(source)) for source in sources), return_exceptions=True
        )
    finally:
        await as_future(client.close())


async def fetch_all(sources: list[str]) -> int:
    """Print each source's poem, or why it failed; return how many failed."""
    async with twisted_reactor() as reactor:
        if sources:
            results = await fetch(reactor, sources)
        else:
            factory = PoetryServerFactory(bundled_poems()[4:], reactor, delay=0.01, num_bytes=40)
            listening = serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
            port = await as_future(listening)
            try:
                address = port.getHost()
                assert isinstance(address, IPv4Address)
                sources = [f"tcp:127.0.0.1:{address.port}"]
                results = await fetch(reactor, sources)
            finally:
                await as_future(maybeDeferred(port.stopListening))
    failed = 0
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, PoetryError):
            failed += 1
            print(f"failed: {result} [{result.kind}]", file=sys.stderr)
        elif isinstance(result, BaseException):
            raise result
        else:
            print(f"--- {source}")
            print(result.text.rstrip("\n"))
    return failed


def main(sources: list[str]) -> int:
    return asyncio.run(fetch_all(sources))


if __name__ == "__main__":
    try:
        sys.exit(1 if main(sys.argv[1:]) else 0)
    except KeyboardInterrupt:  # Ctrl-C: asyncio.run cancelled fetch_all, which stopped the reactor
        sys.exit(130)
