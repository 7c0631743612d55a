"""
A small piece of code built on the library, as a user would write it: the
title (first non-blank line) of each poem.  `test_user_trial.py` and
`test_user_pytest.py` beside it show how to test such code with
`poetry_endpoints.testing`.

    python examples/poem_titles.py SOURCE [SOURCE ...]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from poetry_endpoints import PoetryClient, PoetryError

UNTITLED = "(untitled)"


async def title(client: PoetryClient, source: Any) -> str:
    """The first non-blank line of the poem at C{source}; raises `PoetryError`."""
    poem = await client.get(source)
    for line in poem.text.splitlines():
        if line.strip():
            return line.strip()
    return UNTITLED


async def titles(client: PoetryClient, sources: Sequence[Any]) -> list[str]:
    """The title of each source, in order; a failed one is ``(unavailable: KIND)``."""
    results = []
    for source in sources:
        try:
            results.append(await title(client, source))
        except PoetryError as error:
            results.append(f"(unavailable: {error.kind})")
    return results


async def main(reactor: Any, sources: list[str]) -> None:
    for source, name in zip(
        sources, await titles(PoetryClient(reactor, timeout=10), sources), strict=True
    ):
        print(f"{source}: {name}")


if __name__ == "__main__":
    react(
        lambda reactor, *sources: Deferred.fromCoroutine(main(reactor, list(sources))), sys.argv[1:]
    )
