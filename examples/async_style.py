"""
Fetch poems with ``async def`` and ``await``, run by ``twisted.internet.task.react``.

    python examples/async_style.py [SOURCE ...]

With no SOURCE it starts a poetry server on a free loopback port first.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react

from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.server import PoetryServerFactory, bundled_poems


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
        factory = PoetryServerFactory(bundled_poems()[2:4], reactor, delay=0.01, num_bytes=40)
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        try:
            here = f"127.0.0.1:{port.getHost().port}"
            failed = await fetch(reactor, [here, here])
        finally:
            await port.stopListening()
    if failed:
        raise SystemExit(1)


def run(reactor: Any, *sources: str) -> Deferred[None]:
    return ensureDeferred(main(reactor, list(sources)))


if __name__ == "__main__":
    react(run, sys.argv[1:])
