"""
The library's streaming path: ``PoetryClient.stream(source, sink)`` into a file.

The sink is the C{write} method of a file opened in C{--dir} before the clock
starts, so the measured work is connecting, reading and writing each piece as
it arrives; memory must not grow with the poem.
"""

from __future__ import annotations

import os

from _common import HOST, Job, Stopwatch, parse_args, report
from twisted.internet import reactor

from poetry_endpoints import PoetryClient


def main() -> None:
    job = parse_args()
    watch = Stopwatch()
    sizes: list[int] = []
    errors: list[str] = []
    path = os.path.join(job.folder, f"stream-{os.getpid()}.txt")

    def start(job: Job) -> None:
        client = PoetryClient(reactor, max_bytes=None)
        file = open(path, "wb")  # closed when the stream ends

        def finished(result: object) -> object:
            watch.stop()
            file.close()
            return result

        watch.start()
        d = client.stream(f"tcp:{HOST}:{job.port}", file.write)
        d.addBoth(finished)
        d.addCallback(lambda _: sizes.append(os.stat(path).st_size))
        d.addErrback(lambda failure: errors.append(failure.getTraceback()))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    try:
        if job.mode != "baseline":
            reactor.callWhenRunning(start, job)  # type: ignore[attr-defined]
            reactor.run()  # type: ignore[attr-defined]
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if errors:
        raise SystemExit(f"PoetryClient.stream failed: {errors[0]}")
    report(job, watch, sizes)


if __name__ == "__main__":
    main()
