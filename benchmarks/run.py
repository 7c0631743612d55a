"""
Benchmark poetry_endpoints against an asyncio client, the classic ClientFactory
client and a blocking-socket floor, in one run; and its streaming paths (the
library's ``stream`` and ``get -o FILE``) against a floor that also writes the
file, with a 1 GiB run for memory, the time to first byte through
``get -o - SRC | head -c 20``, and the command's start-up (``--version``,
one small ``get``) against the floor of importing Twisted's reactor.

    python benchmarks/run.py            # the full run (about a minute or two)
    python benchmarks/run.py --quick    # tiny sizes, one round: a smoke test

A loopback server runs in its own process; every measurement is a fresh client
process, clients interleaved within each round, several rounds, medians
reported.  Prints a table with ratios and the targets, writes JSON
(benchmarks/results/latest.json by default) and compares with the previous
file if there is one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import first_byte

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENTS = HERE / "clients"
MiB = 1024 * 1024

#: Client name -> script.  The order is the order of the table.
LARGE_CLIENTS = {
    "poetry_endpoints": "endpoints.py",
    "asyncio": "asyncio_streams.py",
    "classic": "classic.py",
    "floor": "floor.py",
}
#: Streaming client name -> (script, extra arguments); the floors last.  The
#: targets compare with the floor that writes; the one that also fsyncs (as
#: the library's atomic file writer does) is shown for information.
STREAM_CLIENTS = {
    "get -o FILE": ("stream_cli.py", []),
    "library stream": ("stream_lib.py", []),
    "floor + write": ("floor_file.py", []),
    "floor + write + fsync": ("floor_file.py", ["--form", "fsync"]),
}
STREAM_FLOOR = "floor + write"
#: Clients that hold the whole poem by design: no big-poem memory run.
STREAM_FLOORS = {STREAM_FLOOR, "floor + write + fsync"}
#: The command whose first byte is timed; the source is appended.
FIRST_BYTE_COMMAND = ["-m", "poetry_endpoints", "get", "-q", "-o", "-"]
#: Start-up row -> the command after ``python``; "{source}" is the small poem's source.
#: The floor is what any Twisted command pays before it does anything.
STARTUP_FLOOR = "floor: import the reactor"
STARTUP_COMMANDS = {
    STARTUP_FLOOR: ["-c", "from twisted.internet import reactor"],
    "poetry-endpoints --version": ["-m", "poetry_endpoints", "--version"],
    "poetry-endpoints get -q SRC (4 KiB)": ["-m", "poetry_endpoints", "get", "-q", "{source}"],
}
#: "many" variant -> (script, extra arguments).
MANY_VARIANTS = {
    "endpoints tcp:": ("endpoints.py", ["--form", "tcp"]),
    "endpoints HOST:PORT": ("endpoints.py", ["--form", "shorthand"]),
    "endpoints localhost:PORT": ("endpoints.py", ["--form", "name"]),
    "asyncio": ("asyncio_streams.py", []),
}


@dataclass
class Config:
    """What one run measures."""

    large: int = 64 * MiB
    growth: list[int] = field(default_factory=lambda: [1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB])
    rounds: int = 5
    many_count: int = 2000
    many_size: int = 4096
    many_concurrency: int = 200
    many_rounds: int = 5
    #: One poem streamed into a file (timed, with the floor), and one for memory only.
    stream: int = 64 * MiB
    memory: int = 1024 * MiB
    #: First byte through ``get -o - | head -c 20``: runs, and the server's pause after it.
    first_byte_rounds: int = 5
    first_byte_pause: float = 0.5
    #: Start-up: each command this many times, a fresh process each, interleaved.
    startup_rounds: int = 10
    #: The classic client skips a size whose projected time (quadratic) exceeds this.
    classic_bound: float = 8.0
    #: Longest any one client process may take before the run is abandoned.
    child_timeout: float = 120.0


QUICK = Config(
    large=1 * MiB,
    growth=[64 * 1024, 256 * 1024, 1 * MiB],
    rounds=1,
    many_count=40,
    many_size=4096,
    many_concurrency=10,
    many_rounds=1,
    stream=1 * MiB,
    memory=4 * MiB,
    first_byte_rounds=1,
    first_byte_pause=0.3,
    startup_rounds=1,
    child_timeout=60.0,
)


class BenchmarkError(Exception):
    """A client or the server misbehaved; the run's numbers cannot be trusted."""


# -- processes ---------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The runner's environment, with the repository importable by clients."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONHASHSEED"] = "0"
    return env


@contextmanager
def poetry_server(sizes: Sequence[int]) -> Iterator[dict[int, int]]:
    """Start the server process for C{sizes}; yield size -> port; always stop it."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), *map(str, sizes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert server.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(server.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                raise BenchmarkError("the benchmark server did not start within 30 s")
        line = server.stdout.readline()
        if not line:
            raise BenchmarkError("the benchmark server exited before listening")
        yield {int(size): port for size, port in json.loads(line).items()}
    finally:
        if server.stdin is not None:
            server.stdin.close()  # the server exits at EOF on stdin
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def run_client(script: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one client in a fresh process; return its report line."""
    command = [sys.executable, str(CLIENTS / script), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=child_env()
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{script} {' '.join(args)} took over {timeout:g} s") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchmarkError(
            f"{script} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def rotated(items: Sequence[str], by: int) -> list[str]:
    """C{items} started at a different one each round, so no client always goes first."""
    by %= len(items)
    return [*items[by:], *items[:by]]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- measurements -------------------------------------------------------------


def measure_baselines(config: Config) -> dict[str, int]:
    """Peak RSS of each client process that imports its modules and does nothing."""
    scripts = {**LARGE_CLIENTS, **{name: script for name, (script, _) in STREAM_CLIENTS.items()}}
    peaks: dict[str, list[int]] = {name: [] for name in scripts}
    for round_ in range(max(1, min(config.rounds, 3))):
        for name in rotated(list(scripts), round_):
            report = run_client(scripts[name], ["baseline"], config.child_timeout)
            peaks[name].append(report["maxrss"])
    return {name: int(statistics.median(values)) for name, values in peaks.items()}


Runs = dict[str, dict[int, list[dict[str, Any]]]]
"""Client -> size -> the reports of its rounds."""


def measure_sizes(config: Config, ports: dict[int, int]) -> tuple[Runs, dict[str, str]]:
    """
    Every client on every size, rounds interleaved.

    @return: the runs, and a note for each client that stopped early (the
        classic client, once its quadratic time would exceed the bound).
    """
    runs: Runs = {name: {} for name in LARGE_CLIENTS}
    sizes = sorted(set(config.growth) | {config.large})
    skipped: dict[str, str] = {}
    for size in sizes:
        previous = [s for s in sizes if s < size and runs["classic"].get(s)]
        if previous and "classic" not in skipped:
            last = previous[-1]
            projected = median_of(runs["classic"][last], "wall") * (size / last) ** 2
            if projected > config.classic_bound:
                skipped["classic"] = (
                    f"skipped from {size // MiB} MiB on: projected {projected:.0f} s "
                    f"(quadratic from {last // MiB} MiB), over the {config.classic_bound:g} s bound"
                )
        names = [name for name in LARGE_CLIENTS if name not in skipped]
        say(f"  size {human(size)}: {', '.join(names)} x {config.rounds}")
        for round_ in range(config.rounds):
            for name in rotated(names, round_):
                args = ["large", "--port", str(ports[size]), "--size", str(size)]
                report = run_client(LARGE_CLIENTS[name], args, config.child_timeout)
                runs[name].setdefault(size, []).append(report)
    return runs, skipped


def measure_streaming(
    config: Config, ports: dict[int, int], folder: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """
    The streaming clients and their floor on one poem into a file in C{folder},
    interleaved over the rounds; then each streaming client once on the big
    poem, for its memory.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in STREAM_CLIENTS}
    say(f"  stream {human(config.stream)}: {', '.join(STREAM_CLIENTS)} x {config.rounds}")
    for round_ in range(config.rounds):
        for name in rotated(list(STREAM_CLIENTS), round_):
            args = ["large", "--port", str(ports[config.stream]), "--size", str(config.stream)]
            script, extra = STREAM_CLIENTS[name]
            args += ["--dir", folder, *extra]
            runs[name].append(run_client(script, args, config.child_timeout))
    memory: dict[str, dict[str, Any]] = {}
    for name, (script, _) in STREAM_CLIENTS.items():
        if name in STREAM_FLOORS:
            continue  # they hold the whole poem by design
        say(f"  stream {human(config.memory)} (memory): {name}")
        args = ["large", "--port", str(ports[config.memory]), "--size", str(config.memory)]
        args += ["--dir", folder]
        memory[name] = run_client(script, args, config.child_timeout)
    return runs, memory


def measure_first_byte(config: Config) -> list[first_byte.FirstByte]:
    """Time to first byte through ``get -o - | head -c 20``, C{first_byte_rounds} times."""
    say(f"  first byte: get -o - | head -c {first_byte.HEAD_BYTES} x {config.first_byte_rounds}")
    results = []
    for _ in range(config.first_byte_rounds):
        try:
            result = first_byte.measure(
                [sys.executable, *FIRST_BYTE_COMMAND], child_env(), config.first_byte_pause
            )
        except first_byte.FirstByteError as e:
            raise BenchmarkError(f"first byte: {e}") from None
        if result.output != first_byte.HEAD[: first_byte.HEAD_BYTES]:
            raise BenchmarkError(f"first byte: head printed {result.output!r}")
        results.append(result)
    return results


def measure_startup(config: Config, port: int, size: int) -> dict[str, list[dict[str, float]]]:
    """
    Wall and CPU time of whole command processes, start-up included: the
    floor (importing the reactor), ``--version``, and a ``get`` of one
    C{size}-byte poem from the server's C{port}; C{startup_rounds} each,
    interleaved.  CPU is the child's own (user + system, from
    C{RUSAGE_CHILDREN} around the run).
    """
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in STARTUP_COMMANDS}
    say(f"  startup: {', '.join(STARTUP_COMMANDS)} x {config.startup_rounds}")
    source = f"tcp:127.0.0.1:{port}"
    for round_ in range(config.startup_rounds):
        for name in rotated(list(STARTUP_COMMANDS), round_):
            command = [sys.executable, *(a.format(source=source) for a in STARTUP_COMMANDS[name])]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    stdin=subprocess.DEVNULL,
                    timeout=config.child_timeout,
                    env=child_env(),
                )
            except subprocess.TimeoutExpired:
                raise BenchmarkError(
                    f"startup: {name} took over {config.child_timeout:g} s"
                ) from None
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise BenchmarkError(
                    f"startup: {name} exited {done.returncode}: {done.stderr[-2000:]!r}"
                )
            if "get" in name and len(done.stdout) < size:
                raise BenchmarkError(f"startup: {name} printed {len(done.stdout)} bytes")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs[name].append({"wall": wall, "cpu": cpu})
    return runs


def measure_many(config: Config, port: int) -> dict[str, list[dict[str, Any]]]:
    """The many-small-poems job for each variant, interleaved over the rounds."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in MANY_VARIANTS}
    say(
        f"  many: {config.many_count} x {human(config.many_size)}, "
        f"{config.many_concurrency} at once, x {config.many_rounds}"
    )
    for round_ in range(config.many_rounds):
        for name in rotated(list(MANY_VARIANTS), round_):
            script, extra = MANY_VARIANTS[name]
            args = [
                "many",
                "--port",
                str(port),
                "--size",
                str(config.many_size),
                "--count",
                str(config.many_count),
                "--concurrency",
                str(config.many_concurrency),
                *extra,
            ]
            runs[name].append(run_client(script, args, config.child_timeout))
    return runs


# -- analysis ------------------------------------------------------------------


def median_of(reports: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(report[key] for report in reports))


def exponent(points: dict[int, float]) -> float | None:
    """Least-squares slope of log(time) against log(size): 1 is linear, 2 quadratic."""
    if len(points) < 2:
        return None
    xs = [math.log(size) for size in points]
    ys = [math.log(max(t, 1e-9)) for t in points.values()]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass
class Target:
    name: str
    value: float | None
    limit: float
    at_least: bool

    @property
    def ok(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def analyse(
    config: Config,
    baselines: dict[str, int],
    sizes: Runs,
    skipped: dict[str, str],
    many: dict[str, list[dict[str, Any]]],
    streaming: dict[str, list[dict[str, Any]]],
    memory: dict[str, dict[str, Any]],
    firsts: list[first_byte.FirstByte],
    startup_runs: dict[str, list[dict[str, float]]],
) -> dict[str, Any]:
    """Medians, ratios and targets, as the JSON document."""
    large: dict[str, Any] = {}
    growth: dict[str, Any] = {}
    for name in LARGE_CLIENTS:
        by_size: dict[int, list[dict[str, Any]]] = sizes[name]
        walls = {size: median_of(reports, "wall") for size, reports in sorted(by_size.items())}
        growth[name] = {
            "median_wall_s": {str(size): wall for size, wall in walls.items()},
            "exponent": exponent(walls),
            "note": skipped.get(name),
        }
        reports = by_size.get(config.large)
        if not reports:
            large[name] = {"note": skipped.get(name)}
            continue
        wall = median_of(reports, "wall")
        rss = median_of(reports, "maxrss") - baselines[name]
        large[name] = {
            "median_wall_s": wall,
            "median_cpu_s": median_of(reports, "cpu"),
            "mb_per_s": config.large / wall / 1e6,
            "baseline_rss_bytes": baselines[name],
            "median_peak_rss_bytes": median_of(reports, "maxrss"),
            "rss_above_baseline_bytes": rss,
            "rss_per_poem_byte": rss / config.large,
            "walls_s": [r["wall"] for r in reports],
        }
    many_summary = {
        name: {
            "median_wall_s": median_of(reports, "wall"),
            "median_cpu_s": median_of(reports, "cpu"),
            "walls_s": [r["wall"] for r in reports],
            "cpus_s": [r["cpu"] for r in reports],
        }
        for name, reports in many.items()
    }

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    stream: dict[str, Any] = {}
    for name, reports in streaming.items():
        wall = median_of(reports, "wall")
        stream[name] = {
            "median_wall_s": wall,
            "median_cpu_s": median_of(reports, "cpu"),
            "mb_per_s": config.stream / wall / 1e6,
            "baseline_rss_bytes": baselines[name],
            "median_peak_rss_bytes": median_of(reports, "maxrss"),
            "rss_above_baseline_bytes": median_of(reports, "maxrss") - baselines[name],
            "walls_s": [r["wall"] for r in reports],
        }
    floor_mbs = stream[STREAM_FLOOR]["mb_per_s"]
    for row in stream.values():
        row["x_floor"] = ratio(row["mb_per_s"], floor_mbs)
    big = {
        name: {
            "wall_s": report["wall"],
            "mb_per_s": config.memory / report["wall"] / 1e6,
            "peak_rss_bytes": report["maxrss"],
            "rss_above_baseline_bytes": report["maxrss"] - baselines[name],
        }
        for name, report in memory.items()
    }
    latencies = [r.latency_ns / 1e6 for r in firsts]
    first = {
        "command": " ".join(["poetry-endpoints", *FIRST_BYTE_COMMAND[2:], "SRC"])
        + f" | head -c {first_byte.HEAD_BYTES}",
        "pause_s": config.first_byte_pause,
        "latencies_ms": latencies,
        "median_ms": statistics.median(latencies),
        "max_ms": max(latencies),
    }

    startup: dict[str, Any] = {
        name: {
            "median_wall_s": median_of(reports, "wall"),
            "median_cpu_s": median_of(reports, "cpu"),
            "walls_s": [r["wall"] for r in reports],
            "cpus_s": [r["cpu"] for r in reports],
        }
        for name, reports in startup_runs.items()
    }
    floor_cpu = startup[STARTUP_FLOOR]["median_cpu_s"]
    for row in startup.values():
        row["cpu_above_floor_s"] = row["median_cpu_s"] - floor_cpu
        row["cpu_x_floor"] = ratio(row["median_cpu_s"], floor_cpu)

    ours = large["poetry_endpoints"]
    many_tcp = many_summary["endpoints tcp:"]["median_wall_s"]
    targets = [
        Target(
            "large: throughput vs asyncio",
            ratio(ours["mb_per_s"], large["asyncio"]["mb_per_s"]),
            1.2,
            True,
        ),
        Target("large: peak RSS above baseline / poem size", ours["rss_per_poem_byte"], 2.5, False),
        Target(
            "growth: exponent of time vs size", growth["poetry_endpoints"]["exponent"], 1.1, False
        ),
        Target(
            "many: tcp: speed vs asyncio",
            ratio(many_summary["asyncio"]["median_wall_s"], many_tcp),
            1.0,
            True,
        ),
        Target(
            "many: HOST:PORT time / tcp: time",
            ratio(many_summary["endpoints HOST:PORT"]["median_wall_s"], many_tcp),
            1.3,
            False,
        ),
    ]
    for name in STREAM_CLIENTS:
        if name in STREAM_FLOORS:
            continue
        targets += [
            Target(
                f"stream: {name} throughput vs floor + write", stream[name]["x_floor"], 0.5, True
            ),
            Target(
                f"stream: {name} RSS above baseline, MiB, {human(config.stream)}",
                stream[name]["rss_above_baseline_bytes"] / MiB,
                16,
                False,
            ),
            Target(
                f"stream: {name} RSS above baseline, MiB, {human(config.memory)}",
                big[name]["rss_above_baseline_bytes"] / MiB,
                16,
                False,
            ),
        ]
    targets.append(
        Target(
            "first byte out of get -o - | head: ms after the server's",
            first["median_ms"],
            100,
            False,
        )
    )
    return {
        "format": 1,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "config": asdict(config),
        "large": large,
        "growth": growth,
        "many": many_summary,
        "stream": stream,
        "memory": big,
        "first_byte": first,
        "startup": {
            "rows": startup,
            # Set in the environment, every child compiles the project from
            # source on every start: the rows then include that.
            "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        },
        "targets": [{**asdict(t), "ok": t.ok} for t in targets],
    }


# -- output ---------------------------------------------------------------------


def human(size: int) -> str:
    if size >= 1024 * MiB and size % (1024 * MiB) == 0:
        return f"{size // (1024 * MiB)} GiB"
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render(doc: dict[str, Any], previous: dict[str, Any] | None) -> str:
    config = doc["config"]
    large, growth, many = doc["large"], doc["growth"], doc["many"]
    asyncio_mbs = large["asyncio"].get("mb_per_s")
    out = [f"large: one {human(config['large'])} poem, median of {config['rounds']} runs"]
    rows = [["client", "MB/s", "x asyncio", "wall s", "cpu s", "RSS-base MiB", "x poem"]]
    for name, row in large.items():
        if "mb_per_s" not in row:
            rows.append([name, "skipped", "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                fmt(row["mb_per_s"], ".0f"),
                fmt(row["mb_per_s"] / asyncio_mbs if asyncio_mbs else None, ".2f"),
                fmt(row["median_wall_s"], ".3f"),
                fmt(row["median_cpu_s"], ".3f"),
                fmt(row["rss_above_baseline_bytes"] / MiB, ".0f"),
                fmt(row["rss_per_poem_byte"], ".2f"),
            ]
        )
    out += [table(rows), ""]

    sizes = [human(s) for s in sorted(set(config["growth"]) | {config["large"]})]
    out.append("growth: median wall seconds per size; exponent of a log-log fit (1 = linear)")
    rows = [["client", *sizes, "exponent"]]
    for name, row in growth.items():
        walls = row["median_wall_s"]
        cells = [
            fmt(walls.get(str(s)), ".3f") for s in sorted(set(config["growth"]) | {config["large"]})
        ]
        rows.append([name, *cells, fmt(row["exponent"], ".2f")])
    out.append(table(rows))
    out += [f"  {name}: {row['note']}" for name, row in growth.items() if row["note"]]
    out.append("")

    out.append(
        f"many: {config['many_count']} poems x {human(config['many_size'])}, "
        f"{config['many_concurrency']} at once, median of {config['many_rounds']} runs"
    )
    base = many["asyncio"]["median_wall_s"]
    rows = [["client", "wall s", "cpu s", "speed x asyncio"]]
    for name, row in many.items():
        rows.append(
            [
                name,
                fmt(row["median_wall_s"], ".3f"),
                fmt(row["median_cpu_s"], ".3f"),
                fmt(base / row["median_wall_s"], ".2f"),
            ]
        )
    out += [table(rows), ""]

    stream, big = doc["stream"], doc["memory"]
    out.append(
        f"stream: one {human(config['stream'])} poem into a file (same folder for all), "
        f"median of {config['rounds']} runs; {human(config['memory'])}: one run, memory"
    )
    big_label = human(config["memory"])
    rows = [
        [
            "client",
            "MB/s",
            "x floor",
            "wall s",
            "cpu s",
            "RSS-base MiB",
            f"{big_label}: RSS-base MiB",
            f"{big_label}: MB/s",
        ]
    ]
    for name, row in stream.items():
        memory_row = big.get(name, {})
        rows.append(
            [
                name,
                fmt(row["mb_per_s"], ".0f"),
                fmt(row["x_floor"], ".2f"),
                fmt(row["median_wall_s"], ".3f"),
                fmt(row["median_cpu_s"], ".3f"),
                fmt(row["rss_above_baseline_bytes"] / MiB, ".1f"),
                fmt(memory_row.get("rss_above_baseline_bytes", 0) / MiB, ".1f")
                if memory_row
                else "(holds the poem)",
                fmt(memory_row.get("mb_per_s"), ".0f"),
            ]
        )
    out += [table(rows), ""]
    first = doc["first_byte"]
    out.append(
        f"first byte: {first['command']}, ms from the server's first byte to head's, "
        f"median of {len(first['latencies_ms'])} (server pauses {first['pause_s']:g} s after it)"
    )
    out.append(
        f"  median {first['median_ms']:.1f} ms, max {first['max_ms']:.1f} ms: "
        + ", ".join(f"{ms:.1f}" for ms in first["latencies_ms"])
    )
    out.append("")

    startup = doc["startup"]
    out.append(
        f"startup: whole command processes, start-up included, median of "
        f"{config['startup_rounds']} runs"
        + (
            " (PYTHONDONTWRITEBYTECODE set: sources compiled every run)"
            if startup["pythondontwritebytecode"]
            else ""
        )
    )
    rows = [["command", "wall s", "cpu s", "cpu above floor ms", "cpu x floor"]]
    for name, row in startup["rows"].items():
        rows.append(
            [
                name,
                fmt(row["median_wall_s"], ".3f"),
                fmt(row["median_cpu_s"], ".3f"),
                fmt(row["cpu_above_floor_s"] * 1000, ".0f"),
                fmt(row["cpu_x_floor"], ".2f"),
            ]
        )
    out += [table(rows), ""]

    out.append("targets (ratios from this run)")
    old = {t["name"]: t["value"] for t in previous.get("targets", [])} if previous else {}
    rows = [["", "target", "value", "limit", "previous run"]]
    for t in doc["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[t["ok"]]
        rows.append(
            [
                mark,
                t["name"],
                fmt(t["value"], ".2f"),
                (">= " if t["at_least"] else "<= ") + format(t["limit"], "g"),
                fmt(old.get(t["name"]), ".2f"),
            ]
        )
    out.append(table(rows))
    return "\n".join(out)


# -- main -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 5)")
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results" / "latest.json",
        help="where to write the JSON (the old file becomes previous.json beside it)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    if args.rounds:
        config.rounds = config.many_rounds = max(1, args.rounds)

    started = time.perf_counter()
    previous: dict[str, Any] | None = None
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text())
        except (OSError, ValueError):
            previous = None
    try:
        sizes = sorted(
            set(config.growth) | {config.large, config.many_size, config.stream, config.memory}
        )
        with (
            poetry_server(sizes) as ports,
            tempfile.TemporaryDirectory(prefix="poetry-bench-") as folder,
        ):
            say("baselines (imports only)")
            baselines = measure_baselines(config)
            say("large and growth")
            by_size, skipped = measure_sizes(config, ports)
            say("many")
            many = measure_many(config, ports[config.many_size])
            say("stream")
            streaming, memory = measure_streaming(config, ports, folder)
            say("first byte")
            firsts = measure_first_byte(config)
            say("startup")
            startup_runs = measure_startup(config, ports[config.many_size], config.many_size)
    except BenchmarkError as e:
        say(f"benchmark failed: {e}")
        return 2
    doc = analyse(
        config, baselines, by_size, skipped, many, streaming, memory, firsts, startup_runs
    )
    doc["elapsed_s"] = time.perf_counter() - started

    print(render(doc, previous))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.output.exists():
        shutil.copyfile(args.output, args.output.with_name("previous.json"))
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.output} in {doc['elapsed_s']:.0f} s")
    missed = [t for t in doc["targets"] if t["ok"] is False]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
