"""
Live per-source progress on stderr: bytes, rate and state.

Built on ``rich.progress`` rather than tqdm: one rich display holds a row
per source (tqdm wants one bar object, and one cursor trick, per line), it
tolerates an unknown total, and it can run with ``auto_refresh=False`` so that
it starts no thread of its own.  Here the reactor drives it: a
`LoopingCall` redraws it, its clock is the reactor's, and every update comes
from a callback on the reactor thread, so no second thread ever touches it
or any Twisted object.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from twisted.internet.task import LoopingCall

from .output import one_line

REFRESH_SECONDS = 0.1


class Tracker(Protocol):
    """The progress of one source."""

    def received(self, size: int) -> None:
        """C{size} bytes have arrived so far."""

    def succeeded(self, size: int) -> None:
        """The whole poem, C{size} bytes, has arrived."""

    def failed(self, kind: str) -> None:
        """The source failed with this kind of error."""


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
    def received(self, size: int) -> None:
        pass

    def succeeded(self, size: int) -> None:
        pass

    def failed(self, kind: str) -> None:
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


class _BytesColumn(ProgressColumn):
    """Bytes received so far (the total is not known in advance)."""

    def render(self, task: Task) -> Text:
        return Text(filesize.decimal(int(task.completed)), style="progress.download")


class _RateColumn(ProgressColumn):
    """Bytes per second: recent while receiving, the average once finished."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if task.finished_time:
            speed = task.completed / task.finished_time
        if speed is None:
            return Text("?", style="progress.data.speed")
        return Text(f"{filesize.decimal(int(speed))}/s", style="progress.data.speed")


class _RichTracker:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task

    def received(self, size: int) -> None:
        self.progress.update(self.task, completed=size, state="receiving")

    def succeeded(self, size: int) -> None:
        # A total makes rich treat the row as finished: full bar, final speed.
        self.progress.update(self.task, total=max(size, 1), completed=max(size, 1), state="done")

    def failed(self, kind: str) -> None:
        self.progress.update(self.task, state=f"failed: {kind}")
        self.progress.stop_task(self.task)


class RichDisplay:
    """
    A row per source on C{stream} (a terminal), redrawn every
    L{REFRESH_SECONDS} by the reactor.  The display vanishes when stopped;
    failure lines and the summary are printed by the caller afterwards.
    """

    def __init__(self, reactor: Any, stream: TextIO) -> None:
        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=20),
            _BytesColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[state]}", markup=False),
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            get_time=reactor.seconds,
        )
        self._loop = LoopingCall(self.progress.refresh)
        self._loop.clock = reactor
        self._drawing = False

    def track(self, name: str) -> Tracker:
        task = self.progress.add_task(one_line(name), total=None, state="waiting")
        return _RichTracker(self.progress, task)

    def start(self) -> None:
        if not self._drawing:
            self._drawing = True
            self.progress.start()
            self._loop.start(REFRESH_SECONDS, now=True)

    def stop(self) -> None:
        if self._drawing:
            self._drawing = False
            self._loop.stop()
            self.progress.stop()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        if not self._drawing:
            yield
            return
        # Wipe the display, let the caller write, then draw it again below.
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()
