"""
``poetry-endpoints demo`` as a real subprocess: no arguments, no stdin, no
terminal; and once in process, for what its run ends with.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from inprocess import run_cli
from terminal import run_on_terminal

from conftest import subprocess_env
from poetry_endpoints.cli import demo
from poetry_endpoints.servers.poetry import bundled_poems

WAIT = 30.0  # the demo promises to be over within 30 seconds


def test_demo_prints_every_bundled_poem_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poetry_endpoints", "demo"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    for poem in bundled_poems():
        assert poem.data.decode("utf-8") in out, poem.name
    headers = re.findall(r"^==> (\S+) <==$", out, re.MULTILINE)
    assert len(headers) == len(bundled_poems())
    assert {h.split(":")[0] for h in headers} == {"tcp", "unix", "http"}
    assert all(h.startswith("http://127.0.0.1:") for h in headers if h.startswith("http:"))
    assert all(h.startswith("tcp:127.0.0.1:") for h in headers if h.startswith("tcp:"))
    # The Unix socket's temporary directory is gone.
    unix_path = next(h for h in headers if h.startswith("unix:")).removeprefix("unix:")
    assert not os.path.exists(os.path.dirname(unix_path))
    assert b"Traceback" not in result.stderr


def test_demo_on_a_terminal_shows_progress() -> None:
    run = run_on_terminal(
        [sys.executable, "-m", "poetry_endpoints", "demo"],
        terminal="stderr",
        env=subprocess_env(COLUMNS="120"),
        timeout=WAIT,
    )
    shown = run.shown
    assert run.returncode == 0
    assert b"receiving" in shown and b"bytes/s" in shown
    assert re.search(rb"poetry-endpoints: 5 poems \([0-9.]+ KiB\) in [0-9.]+ s", shown)
    assert len(re.findall(rb"^==> ", run.piped, re.MULTILINE)) == len(bundled_poems())


def test_demo_leaves_no_connection_or_timer_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, where run_cli sees what the run was ending with: the web
    site's kept-alive connection (and its pool's timer) closed, not left to
    the process's exit.  Faster servers than the demo's: only the end matters."""
    monkeypatch.setattr(demo, "DELAY", 0.001)
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    for poem in bundled_poems():
        assert poem.data.decode("utf-8") in out, poem.name
