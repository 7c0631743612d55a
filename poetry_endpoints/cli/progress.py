"""
Live per-source progress on stderr: bytes, rate and state.

rich draws the rows (its table layout, its bars, its colours and its
terminal detection), but not through ``rich.progress.Progress`` and
``rich.live.Live``: those redraw every task on every refresh, which costs
O(sources), and restarting a stopped ``Live`` moves the cursor up by the
height it had before, over whatever was printed in between.  Here:

- The rows live in a L{Board} that keeps them grouped by state, so picking the
  rows to show costs O(rows shown) whatever the number of sources; beyond a
  screenful the rest collapse into one line of counts.
- A L{_Region} owns the lines at the bottom of the terminal and nothing else:
  it redraws them in place, and it wipes them (leaving the cursor where they
  began) before anything else is written, so poems and failure lines, on
  stdout or stderr, land above the display and stay.
- The reactor drives it: a `LoopingCall` redraws it five times a second at
  most, its clock is the reactor's, and every update comes from a callback on
  the reactor thread; no thread of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from twisted.internet.task import LoopingCall

from .output import one_line

if TYPE_CHECKING:
    # rich is imported where a display is drawn, not here: most runs (output
    # not to a terminal, -q, --json) never draw one and need not load it.
    from rich.console import Console, RenderableType
    from rich.progress_bar import ProgressBar
    from rich.text import Text

#: Five frames a second: a frame of twenty rows costs rich about 15 ms to lay out.
REFRESH_SECONDS = 0.2
#: Narrower than this (a split pane, say), rows cannot say anything useful: none are drawn.
MIN_WIDTH = 30
#: At most this many rows, summary included, and never more than half the screen.
MAX_ROWS = 20
#: Below this width the rate column is left out, and below the next the elapsed time.
WIDE = 80
WIDER = 120

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def binary_size(size: int) -> str:
    """C{size} in bytes as people read it, in powers of 1024 (as ``--max-bytes`` takes them)."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            # 1023.96 KiB would round to "1024.0 KiB": show it as the next unit.
            if round(value, 1) >= 1024 and unit != _UNITS[-1]:
                continue
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _pair(completed: int, total: int) -> str:
    """``12.5/48.0 KiB``: both sizes in the total's unit."""
    if total < 1024:
        return f"{completed}/{total} bytes"
    number, unit = binary_size(total).split(" ")
    scale = 1024 ** (_UNITS.index(unit) + 1)
    return f"{completed / scale:.1f}/{number} {unit}"


def _elapsed(seconds: float) -> str:
    whole = int(max(seconds, 0))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Tracker(Protocol):
    """The progress of one source; called with the bytes received so far."""

    def __call__(self, size: int) -> None:
        """C{size} bytes have arrived so far."""

    def expect(self, total: int) -> None:
        """The source has said how many bytes its poem has (an HTTP ``Content-Length``)."""

    def succeeded(self, size: int) -> None:
        """The whole poem, C{size} bytes, has arrived."""

    def failed(self, kind: str, reason: str) -> None:
        """The source failed with this kind of error, for this reason."""


class Display(Protocol):
    """Shows the progress of many sources at once."""

    def track(self, name: str) -> Tracker:
        """Start showing the source C{name}."""

    def start(self) -> None:
        """Begin drawing."""

    def stop(self) -> None:
        """Stop drawing and leave the terminal as it was."""

    def suspended(self) -> Any:
        """A context manager during which other output may be written to the terminal."""


class _Silent:
    def __call__(self, size: int) -> None:
        pass

    def expect(self, total: int) -> None:
        pass

    def succeeded(self, size: int) -> None:
        pass

    def failed(self, kind: str, reason: str) -> None:
        pass


class NoDisplay:
    """Shows nothing: stderr is not a terminal, or ``--quiet``."""

    def track(self, name: str) -> Tracker:
        return _Silent()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @contextmanager
    def suspended(self) -> Iterator[None]:
        yield


WAITING = "waiting"
RECEIVING = "receiving"
DONE = "done"
FAILED = "failed"


class Row:
    """One source's line: what it has received, and how it ended. Also its L{Tracker}."""

    def __init__(self, board: Board, index: int, name: str, now: float) -> None:
        self.board = board
        self.index = index
        self.name = one_line(name)
        self.state = WAITING
        self.completed = 0
        self.total: int | None = None
        self.started = now
        self.first_byte: float | None = None
        self.finished: float | None = None
        self.reason = ""

    def __call__(self, size: int) -> None:
        if self.state in (DONE, FAILED):
            return
        self.completed = size
        if self.first_byte is None:
            self.first_byte = self.board.clock()
        self.board.move(self, RECEIVING)

    def expect(self, total: int) -> None:
        self.total = total

    def succeeded(self, size: int) -> None:
        self.completed = size
        self.finished = self.board.clock()
        self.board.move(self, DONE)

    def failed(self, kind: str, reason: str) -> None:
        self.finished = self.board.clock()
        self.reason = one_line(reason or kind)
        self.board.move(self, FAILED)

    def rate(self, now: float) -> float | None:
        """Bytes per second since the first byte (until the end, once finished)."""
        if self.first_byte is None:
            return None
        seconds = (self.finished if self.finished is not None else now) - self.first_byte
        if seconds < 0.05:
            return None
        return self.completed / seconds


class Board:
    """
    Every source's L{Row}, also grouped by state in insertion-ordered dicts, so
    that moving a row and picking the ones worth showing never walk them all.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.rows: list[Row] = []
        self.by_state: dict[str, dict[int, Row]] = {
            state: {} for state in (WAITING, RECEIVING, DONE, FAILED)
        }

    def add(self, name: str) -> Row:
        """A new row for the source C{name}, waiting."""
        row = Row(self, len(self.rows), name, self.clock())
        self.rows.append(row)
        self.by_state[WAITING][row.index] = row
        return row

    def move(self, row: Row, state: str) -> None:
        """Put C{row} in C{state}."""
        if row.state == state:
            return
        del self.by_state[row.state][row.index]
        self.by_state[state][row.index] = row
        row.state = state

    def visible(self, limit: int) -> tuple[list[Row], int]:
        """
        At most C{limit} lines' worth: every row if they fit, otherwise
        C{limit - 1} rows (receiving first, then the latest failures, then
        the next waiting, then the latest done), in argument order, and how
        many were left out (for a line of counts).
        """
        limit = max(limit, 2)
        if len(self.rows) <= limit:
            return list(self.rows), 0
        room = limit - 1
        chosen: list[Row] = []
        groups = (
            iter(self.by_state[RECEIVING].values()),
            reversed(self.by_state[FAILED].values()),
            iter(self.by_state[WAITING].values()),
            reversed(self.by_state[DONE].values()),
        )
        for group in groups:
            chosen.extend(islice(group, room - len(chosen)))
            if len(chosen) >= room:
                break
        chosen.sort(key=lambda row: row.index)
        return chosen, len(self.rows) - len(chosen)

    def counts(self) -> str:
        """``12 receiving, 900 waiting, 80 done, 8 failed`` (zeros left out)."""
        parts = [
            f"{len(self.by_state[state])} {state}"
            for state in (RECEIVING, WAITING, DONE, FAILED)
            if self.by_state[state]
        ]
        return ", ".join(parts)


def render(board: Board, now: float, width: int, height: int) -> RenderableType:
    """
    The display for C{width} columns and a screen C{height} lines high: a row
    per source shown, no line wider than C{width}, at most half the screen.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows, hidden = board.visible(min(MAX_ROWS, height // 2))
    wide, wider = width >= WIDE, width >= WIDER
    bar_width = 15 if wide else 10
    # The cells first, so that the columns can be sized from what they hold:
    # the numbers are never cut, and the name and the state share the rest.
    numbers: list[list[str]] = []
    for row in rows:
        cells = [_pair(row.completed, row.total) if row.total else _size(row)]
        if wide:
            rate = row.rate(now)
            unknown = "?" if row.state == RECEIVING else ""
            cells.append(unknown if rate is None else f"{binary_size(int(rate))}/s")
        if wider:
            cells.append(_elapsed((row.finished or now) - row.started))
        numbers.append(cells)
    number_widths = [
        max((len(cells[i]) for cells in numbers), default=0) for i in range(1 + wide + wider)
    ]
    columns = 2 + len(number_widths) + 1
    left = width - bar_width - sum(number_widths) - (columns - 1)
    longest_name = max((Text(row.name).cell_len for row in rows), default=0)
    states = [_state(row) for row in rows]
    longest_state = max((state.cell_len for state in states), default=0)
    # A long name takes what the states leave, but at least a quarter: the
    # state (a failure's reason) matters more than the end of a long name.
    name_width = min(longest_name, max(left - longest_state, left // 4, min(8, left // 2)), 40)
    state_width = max(left - name_width, 1)

    table = Table.grid(padding=(0, 1))
    table.add_column(width=name_width, no_wrap=True, overflow="ellipsis")
    table.add_column(width=bar_width, no_wrap=True)
    for number_width in number_widths:
        table.add_column(width=number_width, no_wrap=True, justify="right")
    table.add_column(width=state_width, no_wrap=True, overflow="ellipsis")
    for row, cells, state in zip(rows, numbers, states, strict=True):
        table.add_row(
            Text(row.name),
            _bar(row, bar_width, now),
            *(Text(cell) for cell in cells),
            state,
            style="red" if row.state == FAILED else None,
        )
    if hidden:
        line = Text(f"+{hidden} more (of {len(board.rows)}: {board.counts()})", style="dim")
        line.truncate(width, overflow="ellipsis")
        return Group(table, line)
    return table


def _size(row: Row) -> str:
    return "" if row.state == WAITING else binary_size(row.completed)


#: rich's default bar colours are pinks close to red, and red here means failed.
_COMING = "cyan"
_FINISHED = "green"


def _bar(row: Row, width: int, now: float) -> ProgressBar:
    from rich.progress_bar import ProgressBar

    failed = row.state == FAILED
    if row.total:
        completed = row.total if row.state == DONE else min(row.completed, row.total)
        return ProgressBar(
            total=row.total,
            completed=completed,
            width=width,
            complete_style="red" if failed else _COMING,
            finished_style=_FINISHED,
        )
    if row.state == RECEIVING:  # size unknown: a pulse says bytes are coming
        return ProgressBar(total=None, width=width, pulse_style=_COMING, animation_time=now)
    if row.state == DONE:
        return ProgressBar(total=1, completed=1, width=width, finished_style=_FINISHED)
    return ProgressBar(total=1, completed=0, width=width, style="red" if failed else "bar.back")


def _state(row: Row) -> Text:
    from rich.text import Text

    if row.state == FAILED:
        return Text(f"failed: {row.reason}", style="bold red")
    if row.state == DONE:
        return Text(DONE, style="green")
    if row.state == WAITING:
        return Text(WAITING, style="dim")
    return Text(RECEIVING)


class _Region:
    """
    The lines at the bottom of a terminal that the display owns.

    Between draws the cursor rests at the end of the last line, so that
    going back to the first costs a carriage return and C{height - 1} moves
    up, and nothing printed elsewhere is ever inside that span: whatever else
    is written first calls L{clear}, which leaves the cursor where the display
    began and forgets its height.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.height = 0
        self._last = ""
        #: Characters written, for the tests' and the benchmarks' sake.
        self.written = 0

    def _home(self) -> str:
        if not self.height:
            return ""
        return "\r" + "\x1b[A" * (self.height - 1)

    def draw(self, lines: list[str]) -> None:
        """Show C{lines}, each narrower than the terminal, in place of the last ones."""
        if not lines:
            self.clear()
            return
        frame = "\n".join(lines)
        if self.height and frame == self._last:
            return
        # Erase each line's leftovers from the frame before, then anything below.
        text = self._home() + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J"
        self._write(text)
        self.height = len(lines)
        self._last = frame

    def clear(self) -> None:
        """Wipe the display; the cursor is left at the start of its first line."""
        if self.height:
            self._write(self._home() + "\x1b[J")
            self.height = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self.written += len(text)


class RichDisplay:
    """
    A row per source on C{stream} (a terminal), redrawn every
    L{REFRESH_SECONDS} by the reactor.  The display vanishes when stopped;
    the summary is printed by the caller afterwards.
    """

    def __init__(self, reactor: Any, stream: TextIO, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(file=stream)
        self.board = Board(reactor.seconds)
        self.region = _Region(stream)
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = reactor
        self._drawing = False

    def track(self, name: str) -> Tracker:
        return self.board.add(name)

    def start(self) -> None:
        if not self._drawing:
            self._drawing = True
            self._loop.start(REFRESH_SECONDS, now=True)

    def stop(self) -> None:
        if self._drawing:
            self._drawing = False
            self._loop.stop()
            # The rows as they ended, once (as rich's Live does), then nothing.
            self._quietly(self._draw)
            self._quietly(self.region.clear)

    def refresh(self) -> None:
        """Draw the display as it is now."""
        if self._drawing:
            self._quietly(self._draw)

    def frame(self) -> list[str]:
        """The display's lines, styled, each narrower than the terminal."""
        width, height = self.console.size
        # One column spare: a line that fills the last column leaves some
        # terminals waiting to wrap, and the next line would start one too low.
        width -= 1
        if width < MIN_WIDTH:
            return []
        renderable = render(self.board, self.board.clock(), width, height)
        with self.console.capture() as capture:
            self.console.print(renderable, width=width, crop=True, overflow="ellipsis")
        return capture.get().rstrip("\n").split("\n")

    def _draw(self) -> None:
        self.region.draw(self.frame())

    def _quietly(self, action: Any) -> None:
        # The terminal went away (hung up, closed): the display stops, the run goes on.
        try:
            action()
        except OSError:
            self._drawing = False
            if self._loop.running:
                self._loop.stop()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        # Wipe the display and let the caller write where it began; the next
        # refresh draws it again below whatever was written.  Not drawn again
        # here: a burst of poems then costs one wipe, not one redraw each.
        if self._drawing:
            self._quietly(self.region.clear)
        yield
