"""
Fetch poems with plain Deferred callbacks.

    python examples/deferred_style.py [SOURCE ...]

With no SOURCE it starts a poetry server on a free loopback port first, so
the example runs anywhere.  Each source's Deferred fires on its own; the
callbacks print a poem or the error that names its source.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import react

from poetry_endpoints import Poem, PoetryClient, PoetryError
from poetry_endpoints.testing import PoetryServer, poetry_server

#: Two of the poems the package ships.
POEMS = [
    (files("poetry_endpoints") / "poems" / name).read_bytes()
    for name in ("cafe.txt", "endpoints.txt")
]


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
    # A slow poetry server on a free loopback port, serving the two poems in turn.
    starting = poetry_server(reactor, POEMS, delay=0.01, num_bytes=40)

    def listening(server: PoetryServer) -> Deferred[object]:
        done = fetch(reactor, [server.source, server.source])
        return done.addBoth(lambda result: server.stop())

    return starting.addCallback(listening)


if __name__ == "__main__":
    react(main, sys.argv[1:])
