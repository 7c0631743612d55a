"""
The claims of the README and docs/ that can drift are checked against the real thing.

- The command-line reference (docs/cli.md) is the real ``--help`` output:
  regenerate it with ``python tests/test_readme.py --update`` after changing
  an option.
- The README's quick start is exactly two commands, and ``.ci/run`` runs the second.
- Every test a page points at (``tests/FILE.py::NAME``) exists, and the list of
  what a hostile server cannot do (docs/threats.md) names one for each promise.
- The project states its contract in its own words: it cites no outside spec.

(Every code block of these pages runs in tests/test_readme_examples.py.)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "cli.md"
THREATS = ROOT / "docs" / "threats.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
COMMANDS = ("get", "serve", "demo", "proxy")
BLOCK = re.compile(r"<!-- help: (?P<command>\w+) -->\n```text\n(?P<text>.*?)```\n", re.DOTALL)


def help_text(command: str) -> str:
    """
    What ``poetry-endpoints COMMAND --help`` prints on a 100-column terminal:
    the command line's own entry point, run in this process (a process per
    command would cost more than the check).
    """
    from poetry_endpoints.cli import main

    saved = {name: os.environ.get(name) for name in ("COLUMNS", "LINES")}
    os.environ.update(COLUMNS="100", LINES="50")  # argparse reads the width from here
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main([command, "--help"])
    except SystemExit as e:
        assert e.code in (0, None), f"{command} --help exited {e.code}"
    else:
        raise AssertionError(f"{command} --help did not exit")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return out.getvalue()


def help_blocks(page: Path) -> dict[str, str]:
    return {m["command"]: m["text"] for m in BLOCK.finditer(page.read_text(encoding="utf-8"))}


def test_cli_reference_matches_the_real_help() -> None:
    blocks = help_blocks(CLI_REFERENCE)
    assert sorted(blocks) == sorted(COMMANDS)
    for command in COMMANDS:
        assert blocks[command] == help_text(command), (
            f"docs/cli.md's `{command} --help` drifted: run python tests/test_readme.py --update"
        )
    # One reference, not two that drift apart.
    others = [page for page in PAGES if page != CLI_REFERENCE and help_blocks(page)]
    assert others == []


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


def test_every_test_the_pages_point_at_exists() -> None:
    references = [
        (page, reference)
        for page in PAGES
        for reference in re.findall(r"tests/(\w+\.py)::(\w+)", page.read_text(encoding="utf-8"))
    ]
    assert references, "no page points at a test"
    for page, (filename, name) in references:
        source = (ROOT / "tests" / filename).read_text(encoding="utf-8")
        assert re.search(rf"def {name}\b", source), (
            f"{page.relative_to(ROOT)}: tests/{filename}::{name} is not there"
        )


def test_every_promise_against_a_hostile_server_names_a_test() -> None:
    text = THREATS.read_text(encoding="utf-8")
    cannot = text.split("**It cannot:**", 1)[1].split("**It can:**", 1)[0]
    promises = re.split(r"\n- ", cannot)[1:]
    assert len(promises) >= 10, "the list of promises is missing"
    for promise in promises:
        assert re.search(r"tests/\w+\.py::\w+", promise), promise


def test_the_project_cites_no_outside_spec() -> None:
    # The contract is stated in the project's own words; a reader has no such file.
    word = re.compile(r"\b" + "SP" + r"EC\b")
    folders = ["poetry_endpoints", "tests", "benchmarks", "examples", "twisted", "docs", ".ci"]
    files = [README, *(f for d in folders for f in (ROOT / d).rglob("*") if f.is_file())]
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if path.suffix in {".py", ".md", ".txt", ".ini", ".toml", ""}
        and "__pycache__" not in path.parts
        for number, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        )
        if word.search(line)
    ]
    assert cited == []


def update() -> None:
    """Rewrite docs/cli.md's help blocks from the real ``--help`` output."""
    text = CLI_REFERENCE.read_text(encoding="utf-8")

    def replace(match: re.Match[str]) -> str:
        command = match["command"]
        return f"<!-- help: {command} -->\n```text\n{help_text(command)}```\n"

    CLI_REFERENCE.write_text(BLOCK.sub(replace, text), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit("usage: python tests/test_readme.py --update")
