"""
The machinery shared by ``get`` and ``demo``: download many sources at once,
show their progress, and hand each outcome to an `Output` in argument order
or as it completes, reporting each failure as one line on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from ..client import PoetryClient, cancel_all
from ..errors import PoetryError
from ..files import remove_temporaries, write_poem
from ..poem import Poem
from ..sources import Source
from ..streaming import Streamed
from . import status
from .output import (
    PROG,
    ClosedStream,
    DirectoryOutput,
    FileOutput,
    JSONOutput,
    Output,
    RawOutput,
    TextOutput,
    WriteError,
    describe_os_error,
    failure_line,
    one_line,
)
from .progress import Display, NoDisplay, RichDisplay, Tracker, binary_size
from .runner import Interruption
from .verbose import VerboseObserver

Outcome = Poem | PoetryError


@dataclass(frozen=True)
class Presentation:
    """How outcomes are shown: the output options of ``get``."""

    json: bool = False
    output_dir: Path | None = None
    #: ``-o FILE``: the one poem to this file.
    output_file: Path | None = None
    #: ``-o -``: the one poem's raw bytes to stdout as they arrive.
    raw_stdout: bool = False
    #: ``-v``: a line on stderr for each attempt, retry, redirect and failure.
    verbose: bool = False
    as_completed: bool = False
    quiet: bool = False
    #: Put a ``==> SOURCE <==`` line before each poem, as ``head`` does for files.
    headers: bool = False


@dataclass
class Streams:
    """Where the command writes; the process's own streams unless a test says otherwise."""

    stdout: BinaryIO = field(default_factory=lambda: _standard_output())
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def stdout_is_terminal(self) -> bool:
        """Whether poems go to a terminal (and so are escaped)."""
        return self.stdout.isatty()

    def stderr_is_terminal(self) -> bool:
        """Whether progress and the summary may be shown."""
        return self.stderr.isatty()


def _standard_output() -> BinaryIO:
    # Python sets sys.stdout to None when file descriptor 1 was closed at
    # start (`get S >&-`); that is a write error for each poem, not a crash.
    if sys.stdout is None:
        return ClosedStream("stdout")  # type: ignore[return-value]
    return sys.stdout.buffer


def make_output(
    presentation: Presentation,
    sources: Sequence[str],
    streams: Streams,
    poem_encoding: str | None = None,
) -> Output:
    """The `Output` for C{presentation}; C{poem_encoding} is the one given to the client."""
    if presentation.output_dir is not None:
        return DirectoryOutput(presentation.output_dir, sources)
    if presentation.output_file is not None:
        return FileOutput(presentation.output_file)
    if presentation.json:
        return JSONOutput(streams.stdout)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    terminal = streams.stdout_is_terminal()
    if presentation.raw_stdout:
        return RawOutput(
            streams.stdout, terminal=terminal, encoding=encoding, poem_encoding=poem_encoding
        )
    return TextOutput(
        streams.stdout,
        terminal=terminal,
        encoding=encoding,
        # On a screen, poems running into each other need a line saying whose is whose.
        headers=presentation.headers or (terminal and len(sources) > 1),
    )


def make_display(reactor: Any, presentation: Presentation, streams: Streams) -> Display:
    """Live progress if stderr is a terminal and not C{quiet}; otherwise nothing."""
    if presentation.quiet or not streams.stderr_is_terminal():
        return NoDisplay()
    if presentation.raw_stdout and streams.stdout_is_terminal():
        # The poem is drawn on the same screen as it arrives, chunk by chunk.
        return NoDisplay()
    display = RichDisplay(reactor, streams.stderr)
    if not display.console.is_interactive:  # TERM=dumb cannot redraw in place
        return NoDisplay()
    return display


class Fetch:
    """One run of many downloads, from start to exit status."""

    def __init__(
        self,
        reactor: Any,
        client: PoetryClient,
        sources: Sequence[Source],
        presentation: Presentation,
        interruption: Interruption,
        streams: Streams | None = None,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.sources = list(sources)
        self.presentation = presentation
        self.interruption = interruption
        self.streams = streams or Streams()
        names = [s.name for s in self.sources]
        # Only -o - decodes as it goes (for a terminal); the others get whole poems or files.
        poem_encoding = client.encoding if presentation.raw_stdout else None
        self.output = make_output(presentation, names, self.streams, poem_encoding)
        self.display = make_display(reactor, presentation, self.streams)
        # Files are independent of each other, so they are written as soon as they can be.
        self.in_order = not (presentation.as_completed or presentation.output_dir is not None)
        self._pending: dict[int, Outcome | None] = {}
        self._next = 0
        self._downloads: list[Deferred[Any]] = []
        # In argument order a finished poem waits in memory for the ones
        # before it, so a stalled source could hold back any number of them.
        # A source starts only while what may be in memory stays within
        # concurrency x max-bytes: max-bytes for each download in flight
        # (what it may grow to), plus the size of each poem waiting to be
        # shown.  Small poems therefore never hold the downloads up; large
        # ones do, at the bound.  With no cap, each counts as one.
        self._in_flight = 0
        self._waiting_bytes = 0
        self._budget = client.concurrency * (client.max_bytes or 1)
        self._room: Deferred[None] | None = None
        self._stdout_closed = False
        self.delivered = 0
        self.failed = 0
        self.bytes = 0

    async def run(self) -> int:
        """Download everything, show it, and return the exit status (0 or 1)."""
        if isinstance(self.output, (DirectoryOutput, FileOutput)):
            self.interruption.on_forced_exit(remove_temporaries)
        self.interruption.on_interrupt(self._cancel_all)
        started = self.reactor.seconds()
        verbose = None
        if self.presentation.verbose:
            verbose = VerboseObserver(self.reactor.seconds, started, self._complain)
            globalLogPublisher.addObserver(verbose)
        try:
            trackers = [self.display.track(source.name) for source in self.sources]
            # Started once every row exists, so that its first frame shows them all.
            self.display.start()
            for index, source in enumerate(self.sources):
                if self.in_order and not await self._wait_for_room():
                    break
                tracker = trackers[index]
                self._in_flight += 1
                download: Deferred[Any]
                if isinstance(self.output, RawOutput):
                    download = self.client.stream(source, self.output, progress=tracker)
                    download.addCallbacks(
                        self._streamed,
                        self._stream_failed,
                        callbackArgs=(self.output, tracker),
                        errbackArgs=(self.output, tracker),
                    )
                elif isinstance(self.output, (DirectoryOutput, FileOutput)):
                    download = write_poem(
                        self.client,
                        source,
                        self.output.target(index),
                        progress=tracker,
                    )
                    download.addCallbacks(
                        self._written,
                        self._not_written,
                        callbackArgs=(index, tracker),
                        errbackArgs=(index, tracker),
                    )
                else:
                    download = self.client.get(source, progress=tracker)
                    download.addCallbacks(
                        self._succeeded,
                        self._failed,
                        callbackArgs=(index, tracker),
                        errbackArgs=(index, tracker),
                    )
                self._downloads.append(download)
            await DeferredList(self._downloads, consumeErrors=True)
        finally:
            if verbose is not None:
                globalLogPublisher.removeObserver(verbose)
            self.display.stop()
        self._summarise(self.reactor.seconds() - started)
        if self.failed or self.delivered < len(self.sources):
            return status.FAILED
        return status.OK

    async def _wait_for_room(self) -> bool:
        """Wait until another source may start; False if none should any more."""
        while not self._room_for_one_more() and not self._stopped():
            self._room = Deferred()
            try:
                await self._room
            except CancelledError:  # interrupted: the run's Deferred is being cancelled
                return False
            finally:
                self._room = None
        return not self._stopped()

    def _room_for_one_more(self) -> bool:
        cap = self.client.max_bytes or 1
        return (self._in_flight + 1) * cap + self._waiting_bytes <= self._budget

    def _cost(self, outcome: Outcome | None) -> int:
        """What C{outcome} holds in memory while it waits, in the budget's units."""
        if self.client.max_bytes is None:
            return 1
        return len(outcome.data) if isinstance(outcome, Poem) else 0

    def _stopped(self) -> bool:
        return self.interruption.interrupted or self._stdout_closed

    def _make_room(self) -> None:
        if self._room is not None and not self._room.called:
            self._room.callback(None)

    def _cancel_all(self) -> None:
        cancel_all(self._downloads)
        self._make_room()

    def _succeeded(self, poem: Poem, index: int, tracker: Tracker) -> None:
        tracker.succeeded(len(poem.data))
        self._arrived(index, poem)

    def _written(self, summary: Streamed, index: int, tracker: Tracker) -> None:
        self._in_flight -= 1
        tracker.succeeded(summary.bytes)
        if self.interruption.interrupted:
            return
        self.delivered += 1
        self.bytes += summary.bytes

    def _not_written(self, failure: Failure, index: int, tracker: Tracker) -> None:
        self._in_flight -= 1
        if self.interruption.interrupted:
            return
        source = self.sources[index].name
        if failure.check(PoetryError):
            error: PoetryError = failure.value  # type: ignore[assignment]
            tracker.failed(error.kind, error.reason)
            self.failed += 1
            self._complain(failure_line(error, PROG))
        elif failure.check(OSError):
            tracker.failed("write-failed", str(failure.value))
            self.failed += 1
            where = self._destination(index)
            self._write_failed(source, f"the poem to {where}", failure.value)  # type: ignore[arg-type]
        else:
            self._bug(failure)

    def _streamed(self, summary: Streamed, output: RawOutput, tracker: Tracker) -> None:
        self._in_flight -= 1
        if self._stopped():
            return
        try:
            output.finish()
        except BrokenPipeError:
            self._close_stdout()
            return
        except OSError as e:
            self._stream_write_failed(summary.source, output, e)
            return
        tracker.succeeded(summary.bytes)
        self.delivered += 1
        self.bytes += summary.bytes

    def _stream_failed(self, failure: Failure, output: RawOutput, tracker: Tracker) -> None:
        self._in_flight -= 1
        if self._stopped():
            return
        if failure.check(BrokenPipeError):  # the reader went away (`-o - | head -c 20`)
            self._close_stdout()
            return
        if failure.check(OSError):
            self._stream_write_failed(self.sources[0].name, output, failure.value)  # type: ignore[arg-type]
            return
        if not failure.check(PoetryError):
            self._bug(failure)
            return
        error: PoetryError = failure.value  # type: ignore[assignment]
        tracker.failed(error.kind, error.reason)
        self.failed += 1
        if output.written:
            # Unlike every other mode, part of this poem is already out.
            line = (
                f"{PROG}: {error}, after {output.written:,} bytes were written "
                f"to stdout [{error.kind}]"
            )
            self._complain(one_line(line))
        else:
            self._complain(failure_line(error, PROG))

    def _stream_write_failed(self, source: str, output: RawOutput, error: OSError) -> None:
        self.failed += 1
        reason = describe_os_error(error)
        line = (
            f"{PROG}: {source}: could not write the poem to stdout: {reason}, "
            f"after {output.written:,} bytes were written [write-failed]"
        )
        self._complain(one_line(line))

    def _failed(self, failure: Failure, index: int, tracker: Tracker) -> None:
        if not failure.check(PoetryError):
            self._bug(failure)
            self._arrived(index, None)
            return
        error: PoetryError = failure.value  # type: ignore[assignment]
        tracker.failed(error.kind, error.reason)
        self._arrived(index, error)

    def _arrived(self, index: int, outcome: Outcome | None) -> None:
        self._in_flight -= 1
        if self.interruption.interrupted or self._stdout_closed:
            return
        if not self.in_order:
            self._show(index, outcome)
            return
        self._pending[index] = outcome
        self._waiting_bytes += self._cost(outcome)
        while self._next in self._pending and not self._stdout_closed:
            outcome = self._pending.pop(self._next)
            self._waiting_bytes -= self._cost(outcome)
            self._show(self._next, outcome)
            self._next += 1
        # Only now, with the shown poems let go: the next source may start
        # at once, and even finish, calling this method again.
        self._make_room()

    def _show(self, index: int, outcome: Outcome | None) -> None:
        if outcome is None:
            return  # already reported with its traceback
        try:
            if isinstance(outcome, Poem):
                self._deliver(index, outcome)
            else:
                self._report_failure(index, outcome)
        except BrokenPipeError:
            self._close_stdout()

    def _deliver(self, index: int, poem: Poem) -> None:
        try:
            if self.streams.stdout_is_terminal():
                with self.display.suspended():
                    self.output.poem(index, poem)
            else:
                self.output.poem(index, poem)
        except BrokenPipeError:
            raise
        except OSError as e:
            self.failed += 1
            self._write_failed(poem.source, f"the poem to {self._destination(index)}", e)
            return
        self.delivered += 1
        self.bytes += len(poem.data)

    def _report_failure(self, index: int, error: PoetryError) -> None:
        self.failed += 1
        unwritten: OSError | None = None
        try:
            with self.display.suspended():  # a JSON record may go to the same terminal
                self.output.failure(index, error)
        except BrokenPipeError:
            raise
        except OSError as e:
            unwritten = e  # the failure itself is still reported, first
        self._complain(failure_line(error, PROG))
        if unwritten is not None:
            where = self._destination(index)
            self._write_failed(error.source, f"its JSON record to {where}", unwritten)

    def _bug(self, failure: Failure) -> None:
        # Anything but a PoetryError or a write error is a bug, not a failed
        # source: its traceback is what helps.
        with self.display.suspended():
            failure.printTraceback(file=self.streams.stderr)
        self.failed += 1

    def _destination(self, index: int) -> str:
        if isinstance(self.output, (DirectoryOutput, FileOutput)):
            return str(self.output.target(index))
        return "stdout"

    def _write_failed(self, source: str, what: str, error: OSError) -> None:
        # One line per write that failed, naming the source, what could not
        # be written and why (ENOSPC, EIO, EFBIG...), with how much of it was.
        if isinstance(error, WriteError):
            reason = error.describe()
        else:
            reason = describe_os_error(error)
        line = f"{PROG}: {source}: could not write {what}: {reason} [write-failed]"
        self._complain(one_line(line))

    def _complain(self, line: str) -> None:
        with self.display.suspended():
            self.streams.stderr.write(line + "\n")
            self.streams.stderr.flush()

    def _close_stdout(self) -> None:
        # The reader went away (`get ... | head`): stop quietly, and point
        # stdout at /dev/null so that flushing it at exit cannot fail again.
        self._stdout_closed = True
        self._cancel_all()
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.streams.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def _summarise(self, elapsed: float) -> None:
        if self.presentation.quiet or not self.streams.stderr_is_terminal():
            return
        total = len(self.sources)
        size = binary_size(self.bytes)
        if self.interruption.interrupted:
            line = f"interrupted: {self.delivered} of {total} poems delivered ({size})"
        elif self.delivered == total:
            line = f"{total} poem{'s' * (total != 1)} ({size}) in {elapsed:.1f} s"
        else:
            line = (
                f"{self.delivered} of {total} poems delivered ({size}), "
                f"{total - self.delivered} failed, in {elapsed:.1f} s"
            )
        where = self.presentation.output_dir or self.presentation.output_file
        if where is not None and self.delivered:
            line += f", written to {where}"
        self.streams.stderr.write(one_line(f"{PROG}: {line}") + "\n")
        self.streams.stderr.flush()


async def close_idle(client: PoetryClient) -> None:
    """
    Close the idle HTTP connections C{client}'s pool keeps, rather than
    leave them (and the pool's 240 s timer) to the process's exit.  The
    library bounds the close (L{PoetryClient.close}: those a TLS server
    leaves unanswered are aborted, and gone when it fires); a failure to
    close, or an interruption meanwhile, has no one to tell at the end.
    """
    try:
        await client.close()
    except Exception:
        pass
