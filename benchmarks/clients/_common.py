"""
What every benchmark client shares: its command line and its one-line report.

A client runs in a fresh process, does one job (``large``: one poem;
``many``: COUNT poems, CONCURRENCY at once; ``baseline``: nothing, after the
same imports) and prints one JSON line on stdout::

    {"wall": s, "cpu": s, "bytes": n, "poems": n, "maxrss": bytes}

``wall`` and ``cpu`` cover the job only (not interpreter start-up or imports);
``maxrss`` is this process's own peak resident set size (``VmHWM`` from
``/proc/self/status``).  Not ``ru_maxrss``: across fork and exec it keeps the
parent's peak when that is higher, so a small child of a big runner (or of
pytest) would report the parent's figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass
class Job:
    mode: str
    port: int
    size: int
    count: int
    concurrency: int
    form: str
    #: The folder a streaming client writes its file into.
    folder: str


def parse_args(forms: tuple[str, ...] = ("tcp",)) -> Job:
    """The job this process was started for."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("baseline", "large", "many"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", type=int, default=0, help="bytes per poem")
    parser.add_argument("--count", type=int, default=1, help="poems (many)")
    parser.add_argument("--concurrency", type=int, default=1, help="at once (many)")
    parser.add_argument("--form", choices=forms, default=forms[0], help="source string form")
    parser.add_argument("--dir", default=".", help="folder for the file (streaming clients)")
    ns = parser.parse_args()
    return Job(ns.mode, ns.port, ns.size, ns.count, ns.concurrency, ns.form, ns.dir)


class Stopwatch:
    """Wall-clock and CPU time from C{start} to C{stop}."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def peak_rss() -> int:
    """This process's own peak resident set size in bytes (Linux: C{VmHWM})."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise SystemExit("no VmHWM in /proc/self/status: peak memory cannot be measured")


def report(job: Job, watch: Stopwatch, sizes: list[int]) -> None:
    """Check every poem arrived whole, then print the report line."""
    if job.mode != "baseline":
        expected = 1 if job.mode == "large" else job.count
        if len(sizes) != expected or any(size != job.size for size in sizes):
            sys.exit(f"wrong poems: expected {expected} x {job.size} bytes, got {sizes[:5]}...")
    line = {
        "wall": watch.wall,
        "cpu": watch.cpu,
        "bytes": sum(sizes),
        "poems": len(sizes),
        "maxrss": peak_rss(),
    }
    print(json.dumps(line), flush=True)


def run_sync(job: Job, fetch_one: Callable[[], int]) -> None:
    """Run a blocking client: C{fetch_one} returns the size of one poem."""
    watch = Stopwatch()
    sizes: list[int] = []
    if job.mode != "baseline":
        watch.start()
        sizes = [fetch_one() for _ in range(job.count if job.mode == "many" else 1)]
        watch.stop()
    report(job, watch, sizes)
