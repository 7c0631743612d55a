"""
The benchmark suite runs end to end in its quickest mode.

Not a timed test: it checks that one command starts the server, runs every
client in its own process and writes the JSON with every measurement, not
how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parent.parent
LARGE_CLIENTS = {"poetry_endpoints", "asyncio", "classic", "floor"}
MANY_VARIANTS = {"endpoints tcp:", "endpoints HOST:PORT", "endpoints localhost:PORT", "asyncio"}
STREAM_CLIENTS = {"get -o FILE", "library stream", "floor + write", "floor + write + fsync"}
STREAMING = {"get -o FILE", "library stream"}


def quick_run(output: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One run of the benchmark suite in its quickest mode, which must succeed."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=240,
        env=subprocess_env(),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_quick_runs_write_every_number_and_the_second_compares_with_the_first(
    tmp_path: Path,
) -> None:
    # One test for both checks: each run of the suite costs seconds.
    output = tmp_path / "results" / "latest.json"
    done = quick_run(output, tmp_path)
    check_every_number(json.loads(output.read_text()), done.stdout)

    done = quick_run(output, tmp_path)
    previous = json.loads((output.parent / "previous.json").read_text())
    assert set(previous["large"]) == LARGE_CLIENTS
    # Each target's row ends with the first run's value, not a dash.
    for target in previous["targets"]:
        (row,) = [line for line in done.stdout.splitlines() if target["name"] in line]
        assert not row.rstrip().endswith("-"), row


def check_every_number(doc: dict[str, Any], stdout: str) -> None:
    """Every client and target of one run is in its JSON and its table, verdicts consistent."""
    assert set(doc["large"]) == LARGE_CLIENTS
    for name, row in doc["large"].items():
        assert row["mb_per_s"] > 0, name
        assert row["median_wall_s"] > 0, name
        assert row["baseline_rss_bytes"] > 0, name
        assert row["median_peak_rss_bytes"] > 0, name

    sizes = {str(size) for size in doc["config"]["growth"]}
    assert set(doc["growth"]) == LARGE_CLIENTS
    for name, row in doc["growth"].items():
        assert set(row["median_wall_s"]) >= sizes, name
        assert all(wall > 0 for wall in row["median_wall_s"].values()), name
        assert isinstance(row["exponent"], float), name

    assert set(doc["many"]) == MANY_VARIANTS
    for name, row in doc["many"].items():
        assert row["median_wall_s"] > 0, name
        assert row["median_cpu_s"] > 0, name

    # Streaming: every client wrote the whole poem (each checks its file's size) and
    # was timed; the memory run covers the streaming clients, not the floor.
    assert set(doc["stream"]) == STREAM_CLIENTS
    for name, row in doc["stream"].items():
        assert row["mb_per_s"] > 0, name
        assert row["median_peak_rss_bytes"] > 0, name
        assert row["baseline_rss_bytes"] > 0, name
    assert doc["stream"]["floor + write"]["x_floor"] == 1.0
    assert set(doc["memory"]) == STREAMING
    for name, row in doc["memory"].items():
        assert row["peak_rss_bytes"] > 0, name
        assert row["wall_s"] > 0, name
    # The first byte came out of head before the server's pause ended.
    first = doc["first_byte"]
    assert len(first["latencies_ms"]) == 1
    assert 0 < first["median_ms"] < first["pause_s"] * 1000

    names = {t["name"] for t in doc["targets"]}
    assert len(names) == len(doc["targets"]) == 12
    assert not any("socket floor" in name for name in names)  # the withdrawn target
    assert all(isinstance(t["value"], float) for t in doc["targets"])
    # The table names every client and every target, with its mark.
    for name in LARGE_CLIENTS | MANY_VARIANTS | STREAM_CLIENTS:
        assert name in stdout
    for target in doc["targets"]:
        assert target["name"] in stdout
    # Each target's verdict follows from its value and limit, and its row shows that verdict.
    rows = stdout.splitlines()
    for target in doc["targets"]:
        value, limit = target["value"], target["limit"]
        passed = value >= limit if target["at_least"] else value <= limit
        assert target["ok"] is passed, target
        (row,) = [line for line in rows if target["name"] in line]
        assert row.split()[0] == ("PASS" if passed else "FAIL"), row


def test_a_client_reports_its_own_peak_not_its_parents(tmp_path: Path) -> None:
    # ru_maxrss survives fork and exec: a client started by a parent that once
    # held 256 MiB would report at least that.  The client's own peak (VmHWM)
    # after importing a few modules is a few tens of MiB.
    held = b"x" * (256 * 1024 * 1024)  # written, so resident
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "clients" / "floor.py"), "baseline"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    del held
    assert done.returncode == 0, done.stderr
    peak = json.loads(done.stdout)["maxrss"]
    assert 0 < peak < 64 * 1024 * 1024, peak
