"""
The classic client, as the Twisted tutorial describes it.

A ``ClientFactory`` builds a protocol that grows the poem with
``poem += data`` and hands it to the factory on ``connectionLost``; the
factory calls back.  Every read copies the whole poem so far, which makes the
time quadratic in the poem's size: this client exists to show that.
"""

from __future__ import annotations

from collections.abc import Callable

from _common import HOST, Stopwatch, parse_args, report
from twisted.internet import reactor
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure


class PoetryProtocol(Protocol):
    poem = b""

    def dataReceived(self, data: bytes) -> None:
        self.poem += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.poem_finished(self.poem)  # type: ignore[union-attr]


class PoetryClientFactory(ClientFactory):
    protocol = PoetryProtocol

    def __init__(self, callback: Callable[[str], None], errback: Callable[[str], None]) -> None:
        self.callback = callback
        self.errback = errback

    def poem_finished(self, poem: bytes) -> None:
        self.callback(poem.decode("utf-8"))

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.errback(reason.getErrorMessage())


def main() -> None:
    job = parse_args()
    watch = Stopwatch()
    sizes: list[int] = []
    errors: list[str] = []

    def got_poem(poem: str) -> None:
        watch.stop()
        sizes.append(len(poem))
        reactor.stop()  # type: ignore[attr-defined]

    def failed(why: str) -> None:
        errors.append(why)
        reactor.stop()  # type: ignore[attr-defined]

    def start() -> None:
        watch.start()
        reactor.connectTCP(  # type: ignore[attr-defined]
            HOST, job.port, PoetryClientFactory(got_poem, failed)
        )

    if job.mode != "baseline":
        reactor.callWhenRunning(start)  # type: ignore[attr-defined]
        reactor.run()  # type: ignore[attr-defined]
    if errors:
        raise SystemExit(f"classic client failed: {errors[0]}")
    report(job, watch, sizes)


if __name__ == "__main__":
    main()
