"""
The client under test: ``poetry_endpoints.PoetryClient`` on the default reactor.

``--form tcp`` uses ``tcp:127.0.0.1:PORT`` sources; ``--form shorthand`` uses
``127.0.0.1:PORT`` (an IP literal: no resolver); ``--form name`` uses
``localhost:PORT`` (HostnameEndpoint and the resolver, one lookup shared by
the run).  Parsing the source strings is part of the measured work.
"""

from __future__ import annotations

from _common import HOST, Job, Stopwatch, parse_args, report
from twisted.internet import reactor
from twisted.python.failure import Failure

from poetry_endpoints import Poem, PoetryClient, PoetryError


def main() -> None:
    job = parse_args(("tcp", "shorthand", "name"))
    watch = Stopwatch()
    sizes: list[int] = []
    errors: list[str] = []
    source = {
        "tcp": f"tcp:{HOST}:{job.port}",
        "shorthand": f"{HOST}:{job.port}",
        "name": f"localhost:{job.port}",
    }[job.form]

    def done(results: list[Poem | PoetryError]) -> None:
        watch.stop()
        for result in results:
            if isinstance(result, Poem):
                sizes.append(len(result.text))
            else:
                errors.append(str(result))

    def failed(failure: Failure) -> None:
        errors.append(failure.getTraceback())

    def start(job: Job) -> None:
        client = PoetryClient(reactor, max_bytes=None, concurrency=max(job.concurrency, 1))
        watch.start()
        if job.mode == "large":
            d = client.get(source).addCallback(lambda poem: [poem])
        else:
            d = client.get_many([source] * job.count)
        d.addCallback(done).addErrback(failed)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    if job.mode != "baseline":
        reactor.callWhenRunning(start, job)  # type: ignore[attr-defined]
        reactor.run()  # type: ignore[attr-defined]
    if errors:
        raise SystemExit(f"poetry_endpoints failed: {errors[0]}")
    report(job, watch, sizes)


if __name__ == "__main__":
    main()
