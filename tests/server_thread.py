"""
``serve`` and ``proxy`` as server fixtures: their services on a reactor of
their own, in a thread of the pytest process.

A test whose subject is a client (``get``, the proxy) needs a real server
to talk to, not a check of the server command itself; starting ``serve`` as
a process for that costs about 0.4 s.  `ServerThread` builds the very
services the command runs (`cli.serve.server_config` from the same argv,
then `servers.service.build_server`) and reports the sources the command
would print in its ``listening on SOURCE`` lines; what they log from
their thread is kept as the command writes it on stderr.  The checks of the
commands themselves (their printed lines, exit statuses, signals) are in
test_cli_serve.py and test_proxy.py.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any, cast

from inprocess import _close
from twisted.application.service import MultiService
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

WAIT = 15.0


class ServerThread:
    """A reactor running in a thread, serving what L{serve} and L{proxy} start on it."""

    def __init__(self) -> None:
        self.reactor: Any = EPollReactor()
        self._services: list[MultiService] = []
        self._closed = False
        from poetry_endpoints.cli.serve import server_observer

        self._log = io.StringIO()
        as_on_stderr = server_observer(self._log)

        def from_this_thread(event: LogEvent) -> None:
            if threading.current_thread() is self._thread:
                as_on_stderr(event)

        self._observer = cast(ILogObserver, from_this_thread)
        globalLogPublisher.addObserver(self._observer)
        self._thread = threading.Thread(
            target=self.reactor.run,
            kwargs={"installSignalHandlers": False},
            name="server thread",
            daemon=True,
        )
        self._thread.start()

    def _start(self, build: Callable[[Any], MultiService]) -> list[str]:
        async def start() -> list[str]:
            from poetry_endpoints.servers.service import when_listening

            service = build(self.reactor)
            self._services.append(service)
            service.startService()
            sources: list[str] = await when_listening(service)
            return sources

        from twisted.internet.defer import Deferred

        sources: list[str] = blockingCallFromThread(
            self.reactor, lambda: Deferred.fromCoroutine(start())
        )
        return sources

    def serve(self, *args: str) -> list[str]:
        """Start what ``poetry-endpoints serve ARGS`` serves; its listeners' sources."""
        from poetry_endpoints.cli import build_parser
        from poetry_endpoints.cli.serve import server_config
        from poetry_endpoints.servers.service import build_server

        config = server_config(build_parser().parse_args(["serve", *args]))
        return self._start(lambda reactor: build_server(reactor, config))

    def proxy(self, *args: str) -> list[str]:
        """Start what ``poetry-endpoints proxy ARGS`` serves; its listeners' sources."""
        from poetry_endpoints.cli import build_parser
        from poetry_endpoints.cli.proxy import proxy_config
        from poetry_endpoints.servers.service import build_proxy

        config = proxy_config(build_parser().parse_args(["proxy", *args]))
        return self._start(lambda reactor: build_proxy(reactor, config))

    @property
    def stderr(self) -> str:
        """What the services logged, as ``serve`` writes it on stderr."""
        return self._log.getvalue()

    def close(self) -> None:
        """Stop every service, then the reactor; wait for the thread.  Once."""
        if self._closed:
            return
        self._closed = True

        async def stop() -> list[str]:
            for service in reversed(self._services):
                stopped = service.stopService()
                if stopped is not None:
                    await stopped
            return ["stopped"]

        from twisted.internet.defer import Deferred

        if self._thread.is_alive():
            try:
                stopped: list[str] = blockingCallFromThread(
                    self.reactor, lambda: Deferred.fromCoroutine(stop())
                )
                assert stopped == ["stopped"]
            finally:
                self.reactor.callFromThread(self.reactor.stop)
                self._thread.join(WAIT)
        globalLogPublisher.removeObserver(self._observer)
        assert not self._thread.is_alive(), "the server thread's reactor did not stop"
        _close(self.reactor)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
