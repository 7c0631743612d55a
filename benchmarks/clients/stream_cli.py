"""
The command line's streaming path: ``poetry-endpoints get -o FILE SOURCE``.

Runs the command's own entry point (``poetry_endpoints.cli.main``) in this
process, after its imports, so that the clock covers the command's work
(parsing its arguments, connecting, streaming to FILE under a temporary name,
the rename) and not interpreter start-up, as for every other client.  FILE is
in C{--dir}, next to the floor's file.
"""

from __future__ import annotations

import os

from _common import HOST, Stopwatch, parse_args, report
from twisted.internet import reactor  # noqa: F401 (imported before the clock, as the command does)

import poetry_endpoints.cli.get  # noqa: F401 (the subcommand's imports, before the clock)
from poetry_endpoints.cli import main as command


def main() -> None:
    job = parse_args()
    watch = Stopwatch()
    sizes: list[int] = []
    path = os.path.join(job.folder, f"get-{os.getpid()}.txt")
    argv = ["get", "-q", "--max-bytes", str(max(job.size, 1)), "-o", path, f"tcp:{HOST}:{job.port}"]
    try:
        if job.mode != "baseline":
            watch.start()
            try:
                command(argv)
            except SystemExit as e:
                status = e.code
            else:
                status = 0
            watch.stop()
            if status != 0:
                raise SystemExit(f"poetry-endpoints {' '.join(argv)} exited {status}")
            sizes.append(os.stat(path).st_size)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    report(job, watch, sizes)


if __name__ == "__main__":
    main()
