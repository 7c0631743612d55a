"""
The README's claims that can drift are checked against the real thing.

- Its command-line reference is the real ``--help`` output: regenerate it
  with ``python tests/test_readme.py --update`` after changing an option.
- Its quick start is exactly two commands, and ``.ci/run`` runs the second.
- Every test it points at (``tests/FILE.py::NAME``) exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMANDS = ("get", "serve", "demo", "proxy")
BLOCK = re.compile(r"<!-- help: (?P<command>\w+) -->\n```text\n(?P<text>.*?)```\n", re.DOTALL)


def help_text(command: str) -> str:
    """What ``poetry-endpoints COMMAND --help`` prints on a 100-column terminal."""
    env = dict(os.environ, COLUMNS="100", LINES="50")
    result = subprocess.run(
        [sys.executable, "-m", "poetry_endpoints", command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return result.stdout


def readme_help_blocks() -> dict[str, str]:
    return {m["command"]: m["text"] for m in BLOCK.finditer(README.read_text(encoding="utf-8"))}


def test_cli_reference_matches_the_real_help() -> None:
    blocks = readme_help_blocks()
    assert sorted(blocks) == sorted(COMMANDS)
    for command in COMMANDS:
        assert blocks[command] == help_text(command), (
            f"README's `{command} --help` drifted: run python tests/test_readme.py --update"
        )


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, re.DOTALL)
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("poetry-endpoints demo") and "\n" not in demo
    assert "[test]" in tests and "pytest" in tests and "\n" not in tests
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r'grep -m1 -E "(.*?)" README.md', ci)
    assert pattern is not None
    assert re.search(pattern.group(1), tests)
    first_match = next(line for line in text.splitlines() if re.search(pattern.group(1), line))
    assert first_match == tests


def test_every_test_the_readme_points_at_exists() -> None:
    text = README.read_text(encoding="utf-8")
    references = re.findall(r"tests/(\w+\.py)::(\w+)", text)
    assert references, "the README points at no test"
    for filename, name in references:
        source = (ROOT / "tests" / filename).read_text(encoding="utf-8")
        assert re.search(rf"def {name}\b", source), f"tests/{filename}::{name} is not there"


def update() -> None:
    """Rewrite the README's help blocks from the real ``--help`` output."""
    text = README.read_text(encoding="utf-8")

    def replace(match: re.Match[str]) -> str:
        command = match["command"]
        return f"<!-- help: {command} -->\n```text\n{help_text(command)}```\n"

    README.write_text(BLOCK.sub(replace, text), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit("usage: python tests/test_readme.py --update")
