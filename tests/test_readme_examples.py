"""
Every code block in README.md and docs/*.md runs as written, or says why not.

A page is run the way a reader would run it: its blocks in order, from one
folder, with servers left running in other terminals.  An HTML comment just
before each block, invisible on the rendered page, says how:

    <!-- run: sh -->          bash, stopping at the first failing command; exit 0
    <!-- run: python -->      this Python; exit 0
    <!-- run: background -->  a server, started as in another terminal and left
                              running until the end of the page, then stopped
    <!-- not run: REASON -->  shown only, for the reason given
    <!-- help: COMMAND -->    the generated --help that tests/test_readme.py checks

A run block may add C{; fails: SOURCE...}: the sources whose failure it shows
on purpose.  Every other source in it must succeed, and those must fail.

Before running, the test does what a reader does when the examples' ports are
taken: each of the well-known ports the pages use (8080, 10000 to 10009)
becomes a free loopback port, the same one throughout a page, and C{/tmp/}
becomes a fresh temporary folder, which is also the folder the blocks run
in.  Every run is bounded in time, and the test network guard is inherited,
so an example can only ever reach loopback.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = {"get", "serve", "demo", "proxy"}
#: How long one block may run, and how long a background server may take to listen.
BLOCK_TIMEOUT = 60.0
READY_TIMEOUT = 20.0

FENCE = re.compile(r"^```(?P<language>\S*)\s*$")
MARKER = re.compile(
    r"<!-- (?:"
    r"run: (?P<run>sh|python|background)(?:; fails: (?P<fails>[^>]+?))?"
    r"|not run: (?P<reason>[^>]*?)"
    r"|help: (?P<command>\w+)"
    r") -->"
)
LANGUAGE = {"sh": "sh", "background": "sh", "python": "python"}
#: Ports the pages use, which a reader would change if they were taken.
WELL_KNOWN_PORTS = {8080, *range(10000, 10010)}
NUMBER = re.compile(r"(?<![\w.])(\d{4,5})(?![\w.])")
#: Source strings as the examples write them (after substitution).
SOURCE = re.compile(r"(?:tcp:|unix:|https?://|localhost:)[^\s'\"\],)]*[^\s'\"\],):]")


@dataclass
class Block:
    """One fenced code block of a page, with the marker before it."""

    page: Path
    line: int  # of the opening fence, counting from 1
    language: str
    text: str
    marker: re.Match[str] | None

    def __str__(self) -> str:
        return f"{page_id(self.page)}:{self.line}"

    @property
    def run(self) -> str | None:
        return self.marker["run"] if self.marker else None


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of C{page}, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        assert end < len(lines), f"{page_id(page)}:{index + 1}: the block never ends"
        marker = MARKER.fullmatch(lines[index - 1]) if index else None
        text = "".join(line + "\n" for line in lines[index + 1 : end])
        found.append(Block(page, index + 1, opening["language"], text, marker))
        index = end + 1
    return found


def page_id(page: Path) -> str:
    """The page's path in the checkout (or its own path, outside it)."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_block_says_how_it_runs(page: Path) -> None:
    for block in blocks(page):
        assert block.marker, f"{block}: no <!-- run: ... --> or <!-- not run: REASON --> before it"
        if block.run:
            assert block.language == LANGUAGE[block.run], (
                f"{block}: {block.run} in a ```{block.language}"
            )
        elif block.marker["command"]:
            assert block.marker["command"] in COMMANDS, block
        else:
            assert block.marker["reason"].strip(), f"{block}: not run, but no reason given"


def test_the_pages_have_runnable_examples() -> None:
    # The quick start's own commands are the exception: CI runs them.
    runnable = {page_id(page) for page in PAGES if any(b.run for b in blocks(page))}
    assert {"README.md", "docs/faults.md"} <= runnable, runnable


def _ephemeral_ports_start() -> int:
    """The first port of the range the kernel hands out for C{bind(0)} and outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as limits:
            return int(limits.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct loopback ports that nothing listens on right now.

    Chosen at random below the ephemeral range: a port released after
    C{bind(0)} chose it is soon handed out again, to an outgoing connection
    or a listener of a parallel test run, and the page's server then finds
    it in use.  Nothing but an explicit choice takes a port below that range.
    """
    start = _ephemeral_ports_start()
    if start - 10_000 < count * 100:  # no room below the range: the kernel's choice
        sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        try:
            return [s.getsockname()[1] for s in sockets]
        finally:
            for s in sockets:
                s.close()
    chosen: list[int] = []
    for port in random.sample(range(10_000, start), count * 100):
        try:
            with socket.create_server(("127.0.0.1", port)):
                pass
        except OSError:  # in use
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"no {count} free ports among {count * 100} tried")


@dataclass
class Reader:
    """Runs one page's blocks in order, as a reader would, and cleans up after."""

    folder: Path
    logs: Path
    ports: dict[str, str]
    servers: list[tuple[Block, subprocess.Popen[bytes]]] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        """The text with the reader's own ports and folder in it."""
        text = NUMBER.sub(lambda m: self.ports.get(m[1], m[1]), text)
        return text.replace("/tmp/", f"{self.folder}/")

    def env(self) -> dict[str, str]:
        # The commands of this checkout's environment first, as after activating it.
        bin_dir = os.path.dirname(sys.executable)
        return subprocess_env(PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))

    def run(self, block: Block) -> None:
        code = self.substitute(block.text)
        if block.run == "background":
            self.start(block, code)
            return
        argv = (
            [sys.executable, "-c", code]
            if block.run == "python"
            else ["bash", "-e", "-o", "pipefail", "-c", code]
        )
        try:
            done = subprocess.run(
                argv,
                cwd=self.folder,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=BLOCK_TIMEOUT,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{block} did not finish within {BLOCK_TIMEOUT:g} s") from None
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        assert done.returncode == 0, f"{block} exited {done.returncode}:\n{output}"
        assert "Traceback" not in output, f"{block}:\n{output}"
        fails = self.substitute(block.marker["fails"] or "").split() if block.marker else []
        sources = set(SOURCE.findall(code))
        assert set(fails) <= sources, f"{block}: fails: names a source it does not use"
        assert failed_sources(output, sources) == set(fails), f"{block}:\n{output}"

    def start(self, block: Block, command: str) -> None:
        """Start a server, as in another terminal, and wait until it listens."""
        # The server keeps its own copy of the descriptor.
        with open(self.logs / f"line-{block.line}.log", "wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", "exec " + command.strip()],
                cwd=self.folder,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append((block, process))
        ports = [int(p) for p in NUMBER.findall(command) if p in self.ports.values()]
        sockets = [Path(p) for p in re.findall(r"unix:(\S+\.sock)", command)]
        deadline = time.monotonic() + READY_TIMEOUT
        while not (all(map(listening, ports)) and all(p.exists() for p in sockets)):
            if process.poll() is not None:
                raise AssertionError(f"{block} exited {process.returncode}:\n{self.log(block)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{block} not listening within {READY_TIMEOUT:g} s")
            time.sleep(0.05)

    def log(self, block: Block) -> str:
        return (self.logs / f"line-{block.line}.log").read_text("utf-8", "replace")

    def stop(self) -> None:
        """Stop every server, as Ctrl-C in its terminal would; each must still be running."""
        died = []
        for block, process in reversed(self.servers):
            if process.poll() is not None:
                died.append(f"{block} exited {process.returncode} early:\n{self.log(block)}")
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(BLOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(BLOCK_TIMEOUT)
        self.servers.clear()
        assert not died, "\n".join(died)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def failed_sources(output: str, sources: set[str]) -> set[str]:
    """The sources that C{output} reports as failed: as text, or as JSON Lines."""
    failed = set()
    for line in output.splitlines():
        try:
            record = json.loads(line) if line.startswith("{") else None
        except ValueError:  # a poem's line that only looks like JSON
            record = None
        if isinstance(record, dict):
            if record.get("ok") is False:
                failed.add(record["source"])
            continue
        text = line.removeprefix("poetry-endpoints: ")
        failed.update(s for s in sources if text.startswith(f"{s}: "))
    return failed


@pytest.fixture
def reader() -> Iterator[Reader]:
    # Short paths: a Unix socket's path has a length limit of about 100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="poetry-docs-"))
    logs = Path(tempfile.mkdtemp(prefix="poetry-docs-logs-"))
    numbers = sorted(str(port) for port in WELL_KNOWN_PORTS)
    ports = dict(zip(numbers, map(str, free_ports(len(numbers))), strict=True))
    reading = Reader(folder, logs, ports)
    try:
        yield reading
    finally:
        try:
            reading.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(logs, ignore_errors=True)


RUNNABLE = [page for page in PAGES if any(block.run for block in blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_the_examples_run_as_written(page: Path, reader: Reader) -> None:
    for block in blocks(page):
        if block.run:
            reader.run(block)
    reader.stop()


def test_a_broken_example_fails(reader: Reader, tmp_path: Path) -> None:
    # The runner can fail: a refused port, a missing file, an error printed as if it were fine.
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- run: sh -->\n```sh\npoetry-endpoints get tcp:127.0.0.1:10000\n```\n"
        "<!-- run: sh -->\n```sh\ncat no-such-file.txt\n```\n"
        "<!-- run: python -->\n```python\nprint('unix:/tmp/p.sock: could not connect')\n```\n"
        "<!-- run: sh; fails: tcp:127.0.0.1:10000 -->\n"
        "```sh\nprintf 'tcp:127.0.0.1:10000\\n'\n```\n",
        encoding="utf-8",
    )
    broken = blocks(page)
    assert len(broken) == 4
    for block in broken:
        with pytest.raises(AssertionError):
            reader.run(block)
