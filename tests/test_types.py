"""
The library's types bite in user code: mypy --strict accepts the asyncio
example and the usual ways of passing a reactor, and refuses a client built
on something that is not a reactor.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

GOOD = """\
from twisted.internet import reactor
from twisted.internet.testing import MemoryReactorClock

from poetry_endpoints import PoetryClient, get_poetry

PoetryClient(reactor, timeout=5.0, concurrency=10)
get_poetry(MemoryReactorClock(), "tcp:127.0.0.1:10000")
"""

BAD = """\
from twisted.internet.task import Clock

from poetry_endpoints import PoetryClient, get_poetry

PoetryClient("not a reactor")
get_poetry(Clock(), "tcp:127.0.0.1:10000")
"""


def test_user_programs_type_check_and_a_wrong_reactor_does_not(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    # The checkout's own cache, which `mypy --strict poetry_endpoints` keeps with the
    # same settings: analysing Twisted from scratch costs seconds, reading it back a
    # fraction of one.  mypy checks each cached module against its source's hash, so
    # the programs end with a line naming their folder: a program of an earlier run,
    # same text elsewhere, would have its errors replayed under the old path.
    for program, text in ((good, GOOD), (bad, BAD)):
        program.write_text(f"{text}# checked in {tmp_path}\n")
    options = ["--strict", "--config-file", str(ROOT / "pyproject.toml")]
    options += ["--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", "--no-pretty"]
    files = [str(ROOT / "examples" / "asyncio_embedding.py"), str(good), str(bad)]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *options, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert errors == [
        f'{bad}:5: error: Argument 1 to "PoetryClient" has incompatible type "str"; '
        'expected "PoetryReactor"  [arg-type]',
        f'{bad}:6: error: Argument 1 to "get_poetry" has incompatible type "Clock"; '
        'expected "PoetryReactor"  [arg-type]',
    ], result.stdout
