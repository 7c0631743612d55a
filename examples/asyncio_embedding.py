"""
Use the client from an asyncio program, under Twisted's asyncio reactor.

    python examples/asyncio_embedding.py [SOURCE ...]

The asyncio event loop is the only loop: Twisted's AsyncioSelectorReactor
runs on it, and a Deferred becomes an awaitable asyncio Future with
``Deferred.asFuture(loop)``.  With no SOURCE a poetry server is started on a
free loopback port first.
"""

from __future__ import annotations

import asyncio
import sys


async def fetch_all(sources: list[str]) -> int:
    # Imported here: the reactor must be installed before anything imports it.
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    from poetry_endpoints import PoetryClient, PoetryError
    from poetry_endpoints.server import PoetryServerFactory, bundled_poems

    loop = asyncio.get_running_loop()
    port = None
    if not sources:
        factory = PoetryServerFactory(bundled_poems()[4:], reactor, delay=0.01, num_bytes=40)
        listening = serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        port = await listening.asFuture(loop)
        sources = [f"tcp:127.0.0.1:{port.getHost().port}"]
    client = PoetryClient(reactor, timeout=10)
    failed = 0
    # Plain asyncio from here: gather Futures made from the client's Deferreds.
    results = await asyncio.gather(
        *(client.get(source).asFuture(loop) for source in sources), return_exceptions=True
    )
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, PoetryError):
            failed += 1
            print(f"failed: {result} [{result.kind}]", file=sys.stderr)
        elif isinstance(result, BaseException):
            raise result
        else:
            print(f"--- {source}")
            print(result.text.rstrip("\n"))
    if port is not None:
        await port.stopListening().asFuture(loop)
    return failed


def main(sources: list[str]) -> int:
    loop = asyncio.new_event_loop()
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    try:
        return loop.run_until_complete(fetch_all(sources))
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
