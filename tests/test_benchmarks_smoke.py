"""
The benchmark suite runs end to end in its quickest mode.

Not a timed test: it checks that one command starts the server, runs every
client in its own process and writes the JSON with every measurement, not
how fast anything was.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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


@functools.cache
def runner() -> ModuleType:
    """benchmarks/run.py as a module of this process, for its results files and its table."""
    folder = str(ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)  # run.py imports first_byte from beside it
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def target_rows(stdout: str, doc: dict[str, Any]) -> dict[str, str]:
    """Each target's row of the table, by the target's name."""
    rows = {}
    for target in doc["targets"]:
        (row,) = [line for line in stdout.splitlines() if target["name"] in line]
        rows[target["name"]] = row
    return rows


def test_a_quick_run_writes_every_number_and_the_next_compares_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One measuring run (each costs seconds); the next run's bookkeeping is
    # run.py's own, called here on results derived from the first.
    output = tmp_path / "results" / "latest.json"
    done = quick_run(output, tmp_path)
    first_text = output.read_text()
    first = json.loads(first_text)
    check_every_number(first, done.stdout)
    # Nothing to compare with yet: every target's row ends with a dash.
    for row in target_rows(done.stdout, first).values():
        assert row.rstrip().endswith("-"), row
    assert not (output.parent / "previous.json").exists()

    run = runner()
    second = json.loads(first_text)
    for target in second["targets"]:
        target["value"] += 1.0
    # What a second run does with its results: the first run's file becomes previous.json.
    assert run.save(second, output) == first
    previous = json.loads((output.parent / "previous.json").read_text())
    assert previous == first
    assert set(previous["large"]) == LARGE_CLIENTS
    assert json.loads(output.read_text()) == second
    # And its table shows each target's new value with the first run's beside it
    # (--show prints the same table from the files, measuring nothing).
    capsys.readouterr()
    assert run.main(["--show", "--output", str(output)]) == 0
    shown = capsys.readouterr().out
    rows = target_rows(shown, second)
    for old, new in zip(first["targets"], second["targets"], strict=True):
        cells = rows[new["name"]].split()
        assert cells[-1] == f"{old['value']:.2f}", rows[new["name"]]
        assert f"{new['value']:.2f}" in cells, rows[new["name"]]
    for name in LARGE_CLIENTS | MANY_VARIANTS | STREAM_CLIENTS:
        assert name in shown


def test_show_without_results_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runner().main(["--show", "--output", str(tmp_path / "none.json")]) == 2
    assert "no results to show" in capsys.readouterr().err


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
