"""
Twisted inside an asyncio program, for every source kind.

An asyncio-first program owns its loop (``asyncio.run(main())``).  Twisted
code, this library included, needs more than Twisted's asyncio reactor
sitting on that loop: the reactor must be I{running}, or its thread pool
(which looks up host names, so ``localhost:PORT`` and ``http://`` sources)
never starts and ``callWhenRunning`` never calls; and it must be stopped
before the loop closes, or the pool's threads keep the process alive after
``main()`` returns.  `twisted_reactor` does both::

    import asyncio
    from poetry_endpoints import PoetryClient
    from poetry_endpoints.aio import as_future, twisted_reactor

    async def main() -> None:
        async with twisted_reactor() as reactor:
            client = PoetryClient(reactor, timeout=10)
            poem = await as_future(client.get("localhost:10000"))
            print(poem.text)

    asyncio.run(main())

Signals stay asyncio's: the reactor installs no handler.  Ctrl-C makes
``asyncio.run`` cancel ``main()``, which stops the reactor on its way out
of the C{async with}; SIGTERM keeps its default action and ends the process
at once, as it does for any asyncio program.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.internet.main import installReactor

__all__ = ["as_future", "twisted_reactor"]

_T = TypeVar("_T")


class _LoopOwnedReactor(AsyncioSelectorReactor):
    """
    Twisted's asyncio reactor on a loop that asyncio runs, not the reactor.

    Stopping it runs the shutdown triggers (connections closed, thread pool
    joined) and leaves the loop running: the loop belongs to the program.
    """

    def crash(self) -> None:
        # AsyncioSelectorReactor.crash also stops the asyncio loop, which
        # would end asyncio.run(main()) with "Event loop stopped before
        # Future completed" while main() is still stopping the reactor.
        super(AsyncioSelectorReactor, self).crash()


@asynccontextmanager
async def twisted_reactor() -> AsyncIterator[AsyncioSelectorReactor]:
    """
    Install Twisted's asyncio reactor on the running loop, run it, stop it.

    Yields the reactor once it is running.  On the way out (normally, on an
    exception, or when the task is cancelled) the reactor is stopped: its
    shutdown triggers run, its connections are closed and its thread pool's
    threads are joined, so the program can end as soon as C{main()} returns.
    The asyncio loop keeps running throughout.

    A process has one reactor, started once: this must be entered at most
    once, before anything imports C{twisted.internet.reactor}.

    @raise RuntimeError: a reactor is already installed (or was, by an
        earlier use).
    """
    loop = asyncio.get_running_loop()
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor as installed

        if isinstance(installed, _LoopOwnedReactor):
            raise RuntimeError(
                "twisted_reactor() was already entered in this process, "
                "and a Twisted reactor cannot be started twice"
            )
        raise RuntimeError(
            f"a Twisted reactor is already installed ({type(installed).__name__}): "
            "twisted_reactor() installs its own, once per process, before anything "
            "imports twisted.internet.reactor"
        )
    reactor = _LoopOwnedReactor(loop)
    installReactor(reactor)

    stopped: Deferred[None] = Deferred()
    reactor.addSystemEventTrigger("after", "shutdown", stopped.callback, None)
    running: Deferred[None] = Deferred()
    reactor.callWhenRunning(running.callback, None)
    # No signal handlers: Twisted's would stop the reactor behind the
    # program's back, and asyncio already answers Ctrl-C.
    reactor.startRunning(installSignalHandlers=False)
    try:
        await running.asFuture(loop)
        yield reactor
    finally:
        if not stopped.called:
            core: IReactorCore = reactor
            try:
                core.stop()
            except ReactorNotRunning:
                pass  # the program stopped it; the shutdown is under way
        await stopped.asFuture(loop)


def as_future(deferred: Deferred[_T]) -> asyncio.Future[_T]:
    """
    C{deferred} as a Future of the running loop, to C{await} or C{gather}.

    Cancelling the Future cancels the Deferred (and so, for a download,
    aborts its connection).
    """
    return deferred.asFuture(asyncio.get_running_loop())
