"""
A Twisted service whose upstream is an endpoint string in its configuration.

    python examples/service_from_config.py CONFIG.ini [--once]

CONFIG.ini::

    [poetry]
    source = unix:/run/poetry.sock     ; any source: tcp:, tls:, HOST:PORT, https://...
    interval = 60                      ; seconds between fetches
    timeout = 10

The service fetches the poem every ``interval`` seconds and logs its size,
or the error that names the source.  Changing where poems come from is a
configuration change, not a code change: that is what endpoint strings buy.
With ``--once`` it fetches one poem, prints it and stops.
"""

from __future__ import annotations

import configparser
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, react
from twisted.logger import Logger

from poetry_endpoints import Poem, PoetryClient, PoetryError


class PoemWatcher(Service):
    """Fetches one source's poem periodically while the service runs."""

    log = Logger()

    def __init__(self, reactor: Any, source: str, interval: float, timeout: float) -> None:
        self.client = PoetryClient(reactor, timeout=timeout)
        self.source = self.client.parse(source)  # a bad source fails at start-up, not later
        self.interval = interval
        self.latest: Poem | None = None
        self._loop = LoopingCall(self.fetch)
        self._loop.clock = reactor

    def fetch(self) -> Deferred[None]:
        return self.client.get(self.source).addCallbacks(self._got, self._failed)

    def _got(self, poem: Poem) -> None:
        self.latest = poem
        self.log.info("{source}: {size} bytes", source=poem.source, size=len(poem.data))

    def _failed(self, failure: Any) -> None:
        failure.trap(PoetryError)
        self.log.warn("{error} [{kind}]", error=failure.value, kind=failure.value.kind)

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return None


def make_service(reactor: Any, config_path: str) -> MultiService:
    """Build the application's services from its configuration file."""
    config = configparser.ConfigParser()
    if not config.read(config_path):
        raise SystemExit(f"cannot read {config_path}")
    section = config["poetry"]
    top = MultiService()
    PoemWatcher(
        reactor,
        section["source"],
        section.getfloat("interval", 60.0),
        section.getfloat("timeout", 10.0),
    ).setServiceParent(top)
    return top


async def once(reactor: Any, config_path: str) -> None:
    service = make_service(reactor, config_path)
    watcher = next(iter(service))
    assert isinstance(watcher, PoemWatcher)
    try:
        poem = await watcher.client.get(watcher.source)
    except PoetryError as error:
        print(f"failed: {error} [{error.kind}]", file=sys.stderr)
        raise SystemExit(1) from None
    print(poem.text, end="" if poem.text.endswith("\n") else "\n")


def main(reactor: Any, config_path: str, *flags: str) -> Deferred[None]:
    if "--once" in flags:
        return Deferred.fromCoroutine(once(reactor, config_path))
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    service = make_service(reactor, config_path)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return Deferred()  # runs until interrupted


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    react(main, sys.argv[1:])
