"""
Fetch poems with plain Deferred callbacks.

    python examples/deferred_style.py [SOURCE ...]

With no SOURCE it starts a poetry server on a free loopback port first, so
the example runs anywhere.  Each source's Deferred fires on its own; the
callbacks print a poem or the error that names its source.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import react

from poetry_endpoints import Poem, PoetryClient, PoetryError
from poetry_endpoints.server import PoetryServerFactory, bundled_poems


def show(poem: Poem) -> None:
    print(f"--- {poem.source} ({len(poem.data)} bytes, {poem.elapsed:.2f} s)")
    print(poem.text.rstrip("\n"))


def report(failure: object) -> None:
    error = getattr(failure, "value", failure)
    if isinstance(error, PoetryError):
        print(f"failed: {error} [{error.kind}]", file=sys.stderr)
    else:
        print(f"unexpected: {error!r}", file=sys.stderr)


def fetch(reactor: Any, sources: list[str]) -> Deferred[Any]:
    client = PoetryClient(reactor, timeout=10)
    downloads = [client.get(source).addCallbacks(show, report) for source in sources]
    return DeferredList(downloads)


def main(reactor: Any, *sources: str) -> Deferred[object]:
    if sources:
        return fetch(reactor, list(sources))
    factory = PoetryServerFactory(bundled_poems()[:2], reactor, delay=0.01, num_bytes=40)
    listening: Deferred[IListeningPort] = serverFromString(
        reactor, "tcp:0:interface=127.0.0.1"
    ).listen(factory)

    def listening_on(port: IListeningPort) -> Deferred[object]:
        source = f"tcp:127.0.0.1:{port.getHost().port}"  # type: ignore[attr-defined]
        done = fetch(reactor, [source, source])
        return done.addBoth(lambda result: port.stopListening())

    return listening.addCallback(listening_on)


if __name__ == "__main__":
    react(main, sys.argv[1:])
