"""
The progress display as a person sees it: what is on the screen, not which bytes were sent.

The CLI runs in a pseudo-terminal that is both its stdout and its stderr, as
in a user's terminal, and what it wrote is replayed on a terminal emulator
(pyte) of the same size, with a scrollback; the tests assert on the final
screen and, for the live rows, on the screen after each redraw.  The display
itself is also driven by a fake clock and replayed the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyte
import pytest
from loopback_servers import LoopbackServer, refused_port
from terminal import ScreenRun, run_on_screen
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from wcwidth import wcwidth

from conftest import subprocess_env
from poetry_endpoints import PoetryClient
from poetry_endpoints.cli.progress import MAX_ROWS, REFRESH_SECONDS, RichDisplay, binary_size
from poetry_endpoints.servers.poetry import PoemFile, bundled_poems
from poetry_endpoints.servers.web import listening_url, make_site

reactor: Any = _reactor

WAIT = 30.0
PROG = "poetry-endpoints"
GET = [sys.executable, "-m", "poetry_endpoints", "get"]

FIRST = """\
The first poem

Ten bytes, a pause, ten bytes again:
the server sips its coffee slowly.
The client waits and blocks no one,
and the last line is the one that used to vanish.
"""

SECOND = """\
The second poem

One, two, three, four, five:
the old display kept these five lines
and erased the sixth,
the seventh,
and this eighth line too.
"""

LONG = "".join(f"line {n:02d} of a poem longer than the screen\n" for n in range(1, 46))


def colourful_env() -> dict[str, str]:
    """The tests' environment, with colours: a failed row's red is part of what is shown."""
    env = subprocess_env()
    env.pop("NO_COLOR", None)
    return env


def wrapped(line: str, columns: int) -> list[str]:
    """C{line} as a terminal C{columns} wide shows it: cut into screen lines."""
    pieces, piece, used = [], "", 0
    for char in line:
        width = max(wcwidth(char), 0)
        if used + width > columns:
            pieces.append(piece)
            piece, used = "", 0
        piece += char
        used += width
    pieces.append(piece)
    return [p.rstrip() for p in pieces]


def transcript_lines(lines: list[str], columns: int) -> list[str]:
    return [screen_line for line in lines for screen_line in wrapped(line, columns)]


def assert_transcript(run: ScreenRun, expected: list[str], summary: str) -> None:
    """
    Everything shown or scrolled back to is C{expected} (logical lines, cut
    to the screen's width), then a summary matching C{summary}, then nothing.
    """
    shown = run.lines()
    wanted = transcript_lines(expected, run.screen.columns)
    assert shown[: len(wanted)] == wanted
    rest = run.raw_lines()[len(wanted) : len(shown)]
    assert re.fullmatch(summary, "".join(rest).rstrip()), rest


def logical_lines(run: ScreenRun) -> list[str]:
    """The lines shown, those the terminal cut in two (they fill the width) put together."""
    columns = run.screen.columns
    raw = run.raw_lines()[: len(run.lines())]
    joined, current = [], ""
    for line in raw:
        current += line
        if len(line.rstrip()) < columns:
            joined.append(current.rstrip())
            current = ""
    if current:
        joined.append(current.rstrip())
    return joined


@pytest.fixture(scope="module")
def piped_refusal() -> tuple[str, str]:
    """
    How a piped stderr reports a refused source, from one real run: the
    failure line, and the source it names.  The line for any other refused
    port differs only in the port (L{failure_reason}).
    """
    source = f"tcp:127.0.0.1:{refused_port()}"
    piped = subprocess.run(
        [*GET, "-q", source],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=WAIT,
        check=False,
    )
    assert piped.returncode == 1, piped.stderr
    return piped.stderr.decode().rstrip("\n"), source


def failure_reason(source: str, piped_refusal: tuple[str, str]) -> tuple[str, str]:
    """The failure line for C{source} as a piped stderr gets it, and its reason."""
    line, refused = piped_refusal
    match = re.fullmatch(rf"{PROG}: {re.escape(refused)}: (.+) \[connect-failed\]", line)
    assert match, line
    return f"{PROG}: {source}: {match.group(1)} [connect-failed]", match.group(1)


def after_each_redraw(raw: bytes, columns: int, rows: int) -> Iterator[pyte.Screen]:
    """The screen after each redraw of the display (each ends by erasing below it)."""
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    start = 0
    while (end := raw.find(b"\x1b[J", start)) != -1:
        stream.feed(raw[start : end + 3])
        start = end + 3
        yield screen


def red_rows(screen: pyte.Screen) -> list[str]:
    """The lines of C{screen} whose every visible character is red."""
    found = []
    for y in range(screen.lines):
        cells = [screen.buffer[y][x] for x in range(screen.columns)]
        visible = [cell for cell in cells if cell.data.strip()]
        if visible and all(cell.fg == "red" for cell in visible):
            found.append("".join(cell.data for cell in cells).rstrip())
    return found


class SlowServer:
    """
    A slow poetry server in a thread, as ``serve --delay`` is (but no process
    to start): C{num_bytes} of the poem, a pause of C{delay}, and so on, then
    a clean close; one thread per connection.
    """

    def __init__(self, poem: bytes, *, delay: float = 0.02, num_bytes: int = 10) -> None:
        self.poem, self.delay, self.num_bytes = poem, delay, num_bytes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.source = f"tcp:127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                for start in range(0, len(self.poem), self.num_bytes):
                    if start and self._stop.wait(self.delay):
                        return
                    connection.sendall(self.poem[start : start + self.num_bytes])
            except OSError:
                pass

    def __enter__(self) -> SlowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._listener.close()
        for thread in self._threads:
            thread.join(WAIT)


@pytest.mark.parametrize(("columns", "rows"), [(100, 40), (60, 20)])
def test_get_on_a_terminal_keeps_every_poem_line_the_failure_and_the_summary(
    piped_refusal: tuple[str, str], columns: int, rows: int
) -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    failure, reason = failure_reason(refused, piped_refusal)
    with SlowServer(FIRST.encode()) as first, SlowServer(SECOND.encode()) as second:
        one, two = first.source, second.source
        run = run_on_screen(
            [*GET, one, two, refused], columns=columns, rows=rows, env=colourful_env(), timeout=WAIT
        )
    assert run.returncode == 1
    expected = [
        f"==> {one} <==",
        *FIRST.splitlines(),
        "",
        f"==> {two} <==",
        *SECOND.splitlines(),
        failure,
    ]
    assert_transcript(
        run, expected, rf"{PROG}: 2 of 3 poems delivered \(\d+ bytes\), 1 failed, in [\d.]+ s"
    )
    # While the poems came, the refused source's row turned red and gave the reason
    # (cut with an ellipsis where the row has no room for all of it).
    shown = [
        row for screen in after_each_redraw(run.raw, columns, rows) for row in red_rows(screen)
    ]
    assert shown, "no red row was ever drawn"
    state = f"failed: {reason}"
    cut = state if columns >= 100 else state[: len("failed: could not")]
    assert any(cut in row for row in shown), shown
    assert all(len(row) < columns for row in shown)


def test_a_poem_longer_than_the_screen_scrolls_back_whole(piped_refusal: tuple[str, str]) -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    failure, _ = failure_reason(refused, piped_refusal)
    with SlowServer(LONG.encode(), num_bytes=100) as server:
        source = server.source
        run = run_on_screen(
            [*GET, source, refused], columns=60, rows=20, env=colourful_env(), timeout=WAIT
        )
    assert run.returncode == 1
    assert len(run.scrolled()) > 20
    expected = [f"==> {source} <==", *LONG.splitlines(), failure]
    assert_transcript(
        run, expected, rf"{PROG}: 1 of 2 poems delivered \([\d.]+ KiB\), 1 failed, in [\d.]+ s"
    )


def test_demo_on_a_terminal_keeps_every_poem_whole() -> None:
    run = run_on_screen(
        [sys.executable, "-m", "poetry_endpoints", "demo"],
        columns=100,
        rows=40,
        env=colourful_env(),
        timeout=WAIT,
    )
    assert run.returncode == 0
    shown = run.lines()
    raw = run.raw_lines()[: len(shown)]
    headers = [i for i, line in enumerate(shown) if re.fullmatch(r"==> \S+ <==", line)]
    assert len(headers) == len(bundled_poems())
    assert "".join(raw[: headers[0]]).startswith(f"{PROG} demo: fetching 5 poems at once from ")
    blocks = []
    for start, end in zip(headers, [*headers[1:], None], strict=True):
        block = shown[start + 1 : end]
        if end is None:  # the last poem ends where the summary begins
            summary = "".join(raw[start + 1 :][len(block) - 1 :]).rstrip()
            assert re.fullmatch(rf"{PROG}: 5 poems \([\d.]+ KiB\) in [\d.]+ s", summary)
            block = block[:-1]
        else:
            assert block[-1] == ""  # the empty line between poems
            block = block[:-1]
        blocks.append(block)
    poems = [poem.data.decode().splitlines() for poem in bundled_poems()]
    assert sorted(blocks) == sorted(poems)


def _timed_get(sources: list[str], *, quiet: bool) -> tuple[float, ScreenRun]:
    started = time.monotonic()
    run = run_on_screen(
        [*GET, *(["-q"] if quiet else []), *sources],
        columns=100,
        rows=40,
        env=subprocess_env(),
        timeout=WAIT,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started, run


def test_a_thousand_sources_on_a_terminal_cost_little_more_than_quiet() -> None:
    with LoopbackServer(b"a short poem\n") as server:
        sources = [server.source] * 1000
        quiet_time, quiet = _timed_get(sources, quiet=True)
        shown_time, shown = _timed_get(sources, quiet=False)
    assert quiet.returncode == shown.returncode == 0
    # Every poem came (no false timeout while the display drew), and the display left nothing.
    [summary] = shown.lines()
    assert re.fullmatch(rf"{PROG}: 1000 poems \(12\.7 KiB\) in [\d.]+ s", summary)
    # Rendering costs the rows shown, not the sources: a generous bound that the
    # old display (minutes, tens of megabytes) is far beyond.
    assert shown_time < 3 * quiet_time + 3.0, (shown_time, quiet_time)
    assert len(shown.raw) < 128 * 1024  # about 16 KiB here; the old display wrote megabytes


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _display(columns: int, rows: int) -> tuple[Clock, _Terminal, RichDisplay]:
    from rich.console import Console

    clock = Clock()
    stream = _Terminal()
    console = Console(
        file=stream, width=columns, height=rows, force_terminal=True, color_system="standard"
    )
    return clock, stream, RichDisplay(clock, stream, console=console)


def _screen(text: str, columns: int, rows: int) -> pyte.Screen:
    screen = pyte.Screen(columns, rows)
    screen.set_mode(pyte.modes.LNM)  # a tty turns "\n" into "\r\n"
    pyte.Stream(screen).feed(text)
    return screen


def _lines(screen: pyte.Screen) -> list[str]:
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_rows_fit_60_columns_and_a_failed_row_is_red_with_its_reason() -> None:
    clock, stream, display = _display(60, 20)
    long_name = "tcp:a-very-long-host-name-that-cannot-fit.example:10000"
    receiving = display.track(long_name)
    failed = display.track("tcp:127.0.0.1:1")
    display.start()
    receiving(5000)
    failed.failed("connect-failed", "could not connect: connection refused")
    clock.advance(1)
    screen = _screen(stream.getvalue(), 60, 20)
    lines = _lines(screen)
    assert len(lines) == 2  # one line per row: nothing wrapped
    assert all(len(line) < 60 for line in lines)
    assert lines[0].startswith("tcp:a-ve") and "…" in lines[0] and "4.9 KiB" in lines[0]
    assert red_rows(screen) == [lines[1]]
    assert "failed: could not connect:" in lines[1]
    display.stop()
    assert clock.getDelayedCalls() == []


def test_a_known_size_makes_the_bar_determinate() -> None:
    clock, stream, display = _display(100, 40)
    row = display.track("http://127.0.0.1:8080/poems/cafe.txt")
    display.start()
    row.expect(4096)
    row(1024)
    clock.advance(1)
    screen = _screen(stream.getvalue(), 100, 40)
    [line] = _lines(screen)
    assert "1.0/4.0 KiB" in line
    bar = [screen.buffer[0][x] for x in range(100) if screen.buffer[0][x].data in "━╸╺"]
    # A quarter of the bar (3.75 cells: 3 and a half) in the colour of what has
    # come, the rest in the bar's background colour.
    colours = [cell.fg for cell in bar]
    assert colours == ["cyan"] * 4 + [colours[-1]] * 11 and colours[-1] != "cyan"
    display.stop()


def test_many_rows_collapse_into_a_line_of_counts() -> None:
    _, stream, display = _display(100, 40)
    rows = [display.track(f"tcp:127.0.0.1:{10000 + i}") for i in range(1000)]
    for row in rows[:100]:
        row.succeeded(10)
    rows[100].failed("timeout", "no data for 60 s")
    for row in rows[101:111]:
        row(5)
    display.start()
    lines = _lines(_screen(stream.getvalue(), 100, 40))
    assert len(lines) == MAX_ROWS
    assert lines[-1] == "+981 more (of 1000: 10 receiving, 889 waiting, 100 done, 1 failed)"
    # The receiving rows and the failure come first, in argument order.
    assert [line.split()[0] for line in lines[:11]] == [
        f"tcp:127.0.0.1:{10000 + i}" for i in range(100, 111)
    ]
    display.stop()


def test_what_is_written_while_suspended_stays_above_the_display() -> None:
    clock, stream, display = _display(60, 20)
    rows = [display.track(f"source {i}") for i in range(3)]
    display.start()
    rows[0](100)
    for n in range(3):
        with display.suspended():
            stream.write(f"poem line {n}\n")
        clock.advance(REFRESH_SECONDS)
    with display.suspended():
        stream.write("poetry-endpoints: source 2: refused [connect-failed]\n")
    clock.advance(REFRESH_SECONDS)
    lines = _lines(_screen(stream.getvalue(), 60, 20))
    assert lines[:4] == [
        "poem line 0",
        "poem line 1",
        "poem line 2",
        "poetry-endpoints: source 2: refused [connect-failed]",
    ]
    assert [line.split()[:2] for line in lines[4:]] == [["source", str(i)] for i in range(3)]
    display.stop()
    assert _lines(_screen(stream.getvalue(), 60, 20)) == lines[:4]


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1.0 MiB"),
        (16 * 1024**2, "16.0 MiB"),
        (5 * 1024**3, "5.0 GiB"),
    ],
)
def test_sizes_are_in_powers_of_1024_like_max_bytes(size: int, shown: str) -> None:
    assert binary_size(size) == shown


class _Recorder:
    """A progress callback that can also take the expected size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.expected: list[int] = []

    def __call__(self, size: int) -> None:
        self.sizes.append(size)

    def expect(self, total: int) -> None:
        self.expected.append(total)


class ExpectedSizeTests(TestCase):
    """An HTTP response's Content-Length reaches a progress callback that can use it."""

    async def test_content_length_is_expected(self) -> None:
        poem = PoemFile("sized.txt", b"a poem of a known size\n" * 10)
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            make_site([poem])
        )
        self.addCleanup(port.stopListening)
        client = PoetryClient(reactor)
        self.addCleanup(client.close)
        recorder = _Recorder()
        url = f"{listening_url(port, tls=False)}poems/sized.txt"
        got = await client.get(url, progress=recorder)
        assert got.data == poem.data
        assert recorder.expected == [len(poem.data)]
        assert recorder.sizes[-1] == len(poem.data)


def test_a_terminal_too_narrow_for_rows_gets_none() -> None:
    clock, stream, display = _display(25, 20)
    display.track("tcp:127.0.0.1:10000")(10)
    display.start()
    clock.advance(0.5)
    display.stop()
    assert stream.getvalue() == ""


def test_json_lines_on_a_terminal_stay_above_the_display(piped_refusal: tuple[str, str]) -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    failure, _ = failure_reason(refused, piped_refusal)
    with SlowServer(FIRST.encode()) as server:
        source = server.source
        # The refused source comes first, so its record is printed while the poem is still coming.
        run = run_on_screen(
            [*GET, "--json", refused, source],
            columns=100,
            rows=40,
            env=colourful_env(),
            timeout=WAIT,
        )
    assert run.returncode == 1
    record, line, poem, summary = logical_lines(run)
    assert json.loads(record) == {
        "source": refused,
        "ok": False,
        "kind": "connect-failed",
        "message": failure.removeprefix(f"{PROG}: ").removesuffix(" [connect-failed]"),
    }
    assert line == failure
    assert json.loads(poem)["poem"] == FIRST
    assert re.fullmatch(
        rf"{PROG}: 1 of 2 poems delivered \(\d+ bytes\), 1 failed, in [\d.]+ s", summary
    )


def test_control_characters_in_names_and_reasons_cannot_drive_the_terminal() -> None:
    clock, stream, display = _display(100, 40)
    display.track("tcp:evil\n\x1b[2J:1")(3)
    display.track("tcp:127.0.0.1:2").failed("incomplete", "bad \x1b[31mred\x1b]0;title\x07 end")
    display.start()
    clock.advance(REFRESH_SECONDS)
    lines = _lines(_screen(stream.getvalue(), 100, 40))
    assert len(lines) == 2
    assert lines[0].startswith("tcp:evil\\n\\x1b[2J")
    assert "failed: bad \\x1b[31mred\\x1b]0;title\\x07 end" in lines[1]
    display.stop()
