"""
Fetch poems with ``async def`` and ``await``, run by ``twisted.internet.task.react``.

    python examples/async_style.py [SOURCE ...]

With no SOURCE it starts a poetry server on a free loopback port first.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react

from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.testing import poetry_server

#: Two of the poems the package ships.
POEMS = [
    (files("poetry_endpoints") / "poems" / name).read_bytes()
    for name in ("haiku.txt", "loopback.txt")
]


async def fetch(reactor: Any, sources: list[str]) -> int:
    client = PoetryClient(reactor, timeout=10, retries=1)
    failed = 0
    for result in await client.get_many(sources):
        if isinstance(result, PoetryError):
            failed += 1
            print(f"failed: {result} [{result.kind}]", file=sys.stderr)
        else:
            print(f"--- {result.source}")
            print(result.text.rstrip("\n"))
    return failed


async def main(reactor: Any, sources: list[str]) -> None:
    if sources:
        failed = await fetch(reactor, sources)
    else:
        # A slow poetry server on a free loopback port, serving the two poems in turn.
        server = await poetry_server(reactor, POEMS, delay=0.01, num_bytes=40)
        try:
            failed = await fetch(reactor, [server.source, server.source])
        finally:
            await server.stop()
    if failed:
        raise SystemExit(1)


def run(reactor: Any, *sources: str) -> Deferred[None]:
    return ensureDeferred(main(reactor, list(sources)))


if __name__ == "__main__":
    react(run, sys.argv[1:])
