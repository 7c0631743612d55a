"""
``poetry-endpoints demo``: the whole product in one command.

Starts slow poetry servers in this process, on a free loopback TCP port and
on a Unix socket in a temporary directory, and the poems' web site on
another loopback port, then fetches from all of them at
once with the same machinery as ``get`` (progress included), prints the
poems, and takes everything down again.  It needs no arguments, no stdin and
no terminal.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort

from ..addresses import source_for
from ..client import PoetryClient
from ..servers.poetry import PoemFile, PoetryServerFactory, bundled_poems
from . import runner
from .fetch import Fetch, Presentation, close_idle
from .output import PROG

#: Six bytes every 30 ms: the longest bundled poem (~300 bytes) takes about 1.5 s,
#: long enough to watch the progress rows fill (they are redrawn five times a second).
DELAY = 0.03
NUM_BYTES = 6
#: Generous next to DELAY; a demo that stalls should fail, not hang.
TIMEOUT = 20.0


@dataclass
class Listener:
    """One running demo server: the sources that reach it, and how to stop it."""

    kind: str
    sources: list[str]
    port: IListeningPort


ListenerStarter = Callable[[Any, Sequence[PoemFile], Path, int], Awaitable[Listener]]


async def start_tcp(reactor: Any, poems: Sequence[PoemFile], workdir: Path, count: int) -> Listener:
    """A slow poetry server on a free loopback TCP port."""
    factory = PoetryServerFactory(poems, reactor, delay=DELAY, num_bytes=NUM_BYTES)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    return Listener("tcp", [source_for(port.getHost())] * count, port)


async def start_unix(
    reactor: Any, poems: Sequence[PoemFile], workdir: Path, count: int
) -> Listener:
    """A slow poetry server on a Unix socket in C{workdir}."""
    factory = PoetryServerFactory(poems, reactor, delay=DELAY, num_bytes=NUM_BYTES)
    # The endpoint itself, not a description: a temporary directory's path
    # may hold a colon or a backslash, which a description would need escaped.
    endpoint = UNIXServerEndpoint(reactor, str(workdir / "poetry.sock"))
    port = await endpoint.listen(factory)
    return Listener("unix", [source_for(port.getHost())] * count, port)


async def start_http(
    reactor: Any, poems: Sequence[PoemFile], workdir: Path, count: int
) -> Listener:
    """The poems' web site (as C{serve --http} runs it) on a free loopback port."""
    # Here, not at the top: every command line loads this module, and only
    # the demo needs twisted.web's server.
    from ..servers.web import listening_url, make_site

    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(make_site(poems))
    root = listening_url(port, tls=False)
    return Listener("http", [f"{root}poems/{quote(poem.name)}" for poem in poems], port)


#: The kinds of server the demo starts.
LISTENERS: list[ListenerStarter] = [start_tcp, start_unix, start_http]


def add_parser(commands: Any) -> None:
    """Register the ``demo`` subcommand (it takes no arguments)."""
    commands.add_parser(
        "demo",
        help="watch slow loopback servers deliver every bundled poem at once",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
    )


def _share(poems: Sequence[PoemFile], parts: int) -> list[list[PoemFile]]:
    """Deal C{poems} out to C{parts} servers, every server getting at least one."""
    return [list(poems[i::parts]) or list(poems[:1]) for i in range(parts)]


async def demo(reactor: Any, interruption: runner.Interruption) -> int:
    """Start the servers, fetch every poem from them, stop them; return the exit status."""
    workdir = Path(tempfile.mkdtemp(prefix="poetry-demo-"))
    listeners: list[Listener] = []
    try:
        for starter, share in zip(LISTENERS, _share(bundled_poems(), len(LISTENERS)), strict=True):
            listeners.append(await starter(reactor, share, workdir, len(share)))
        sources = [source for listener in listeners for source in listener.sources]
        where = ", ".join(dict.fromkeys(sources))
        sys.stderr.write(f"{PROG} demo: fetching {len(sources)} poems at once from {where}\n")
        sys.stderr.flush()
        client = PoetryClient(reactor, timeout=TIMEOUT)
        parsed = [client.parse(source) for source in sources]
        presentation = Presentation(headers=True)
        try:
            return await Fetch(reactor, client, parsed, presentation, interruption).run()
        finally:
            # The web site's connection is kept alive, as get's are: closed
            # here, not left with its pool's timer to the process's exit.
            await close_idle(client)
    finally:
        for listener in listeners:
            stopped = listener.port.stopListening()
            if stopped is not None:
                await stopped
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, *, reactor: Any = None) -> int:
    """Run the demo on C{reactor} (by default, the installed one)."""
    return runner.run(demo, reactor=reactor)
