"""
Where poems go: text or JSON Lines on stdout, or one file each in a directory.

Also the two defences of the terminal: control characters made visible, and
file names that cannot escape the output directory.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import stat
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import PoetryError, one_line
from ..files import PoemFile
from ..poem import Poem

__all__ = [
    "PROG",
    "ClosedStream",
    "DirectoryOutput",
    "FileOutput",
    "JSONOutput",
    "Output",
    "RawOutput",
    "TextOutput",
    "WriteError",
    "describe_os_error",
    "escape_for_terminal",
    "failure_line",
    "file_names",
    "json_line",
    "one_line",
    "safe_file_name",
    "write_all",
]

# C0 controls but newline and tab, DEL and C1 controls: what a poem shown on a
# terminal may not contain.  Poems are multi-line text; one-line messages use
# the library's stricter one_line.
_CONTROLS_BUT_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100

#: The command's name, at the start of every line it writes to stderr.
PROG = "poetry-endpoints"


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escape_for_terminal(text: str) -> str:
    """C{text} with every control character but newline and tab shown as ``\\xNN``."""
    return _CONTROLS_BUT_LAYOUT.sub(_visible, text)


def failure_line(error: PoetryError, prog: str = PROG) -> str:
    """
    The line reporting a failed source: ``PROG: SOURCE: REASON [KIND]``.

    Always one line and free of control characters, whatever a server sent.
    """
    return one_line(f"{prog}: {error} [{error.kind}]")


def json_line(record: dict[str, object]) -> bytes:
    """
    One JSON Lines record, UTF-8, of printable characters only.

    A record whose text is all printable keeps its non-ASCII characters as
    they are, for people reading it.  Any other record is written in ASCII,
    everything else as ``\\u`` escapes, which every JSON parser turns back
    into the same text: controls, U+2028 and U+2029 (which C{str.splitlines}
    and JavaScript treat as line ends), bidi overrides, and the lone
    surrogates by which Python passes the bytes of a command-line argument
    that are not valid UTF-8 (Python's C{json.loads} gives back the argument
    exactly).
    """
    text = json.dumps(record, ensure_ascii=False)
    if not text.isprintable():
        # Escaping only the unprintable characters would take a Python-level
        # pass over the whole poem; json's ASCII mode does it all in C.  It
        # leaves DEL alone, the one ASCII character left to escape.
        text = json.dumps(record).replace("\x7f", "\\u007f")
    return (text + "\n").encode()


def poem_record(poem: Poem) -> dict[str, object]:
    """The JSON Lines object for a delivered poem: the documented fields, no more."""
    return {
        "source": poem.source,
        "ok": True,
        "poem": poem.text,
        "bytes": len(poem.data),
        "elapsed": round(poem.elapsed, 6),
    }


def failure_record(error: PoetryError) -> dict[str, object]:
    """The JSON Lines object for a failed source: the documented fields, no more."""
    return {"source": error.source, "ok": False, "kind": error.kind, "message": str(error)}


def safe_file_name(source: str) -> str:
    """
    A file name made from C{source}: only ``A-Z a-z 0-9 . _ -``, no leading
    dot or dash, at most 100 characters before ``.txt``.
    """
    stem = _UNSAFE_NAME_CHARS.sub("_", source).lstrip("._-")
    stem = stem[:_MAX_NAME].rstrip("._-") or "poem"
    return f"{stem}.txt"


def file_names(sources: Sequence[str]) -> list[str]:
    """
    One safe file name per source, unique even where sources repeat or differ
    only in unsafe characters or case (``NAME-2.txt``, ``NAME-3.txt``...).
    """
    taken: set[str] = set()
    names = []
    for source in sources:
        name = safe_file_name(source)
        stem = name.removesuffix(".txt")
        turn = 1
        while name.casefold() in taken:
            turn += 1
            name = f"{stem}-{turn}.txt"
        taken.add(name.casefold())
        names.append(name)
    return names


def describe_os_error(error: OSError) -> str:
    """C{error} for a message: ``no space left on device (ENOSPC)``."""
    reason = error.strerror or str(error) or type(error).__name__
    reason = reason[:1].lower() + reason[1:]
    name = errno.errorcode.get(error.errno) if error.errno is not None else None
    return f"{reason} ({name})" if name else reason


class WriteError(OSError):
    """
    Writing to a stream failed after C{written} of C{total} bytes.

    Its C{errno} and C{strerror} are those of the failed write.
    """

    def __init__(self, error: OSError, written: int, total: int) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.error = error
        self.written = written
        self.total = total

    def describe(self) -> str:
        """The reason, and how much was written if that was neither nothing nor everything."""
        reason = describe_os_error(self.error)
        if self.written:
            reason += f" after {self.written} of {self.total} bytes"
        return reason


def write_all(stream: BinaryIO, *parts: bytes) -> None:
    """
    Write every byte of C{parts} to C{stream}, now, or raise.

    A stream with a file descriptor is written to directly, each byte once:
    a buffered stream whose write failed would keep the bytes and try them
    again before the next poem and once more at exit, so that a full disk
    cut poems at a buffer's boundary and ended the process with a message
    of Python's own.

    @raise BrokenPipeError: the reader has gone (which callers stop on).
    @raise WriteError: any other failure, with the bytes written before it.
    """
    total = sum(len(part) for part in parts)
    written = 0
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        fd = None
    try:
        if fd is None:
            for part in parts:
                stream.write(part)
                written += len(part)
            stream.flush()
            return
        stream.flush()  # whatever it holds goes first (nothing, normally)
        for part in parts:
            view = memoryview(part)
            while view:
                count = os.write(fd, view)
                written += count
                view = view[count:]
    except BrokenPipeError:
        raise
    except OSError as e:
        raise WriteError(e, written, total) from e


class ClosedStream:
    """Stands for a standard stream that was closed when the process started."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, data: bytes) -> int:
        raise OSError(errno.EBADF, f"{self.name} is closed")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise ValueError(f"{self.name} is closed")

    def isatty(self) -> bool:
        return False


class Output(Protocol):
    """Receives each source's outcome, in the order they are to be shown."""

    def poem(self, index: int, poem: Poem) -> None:
        """
        Deliver the poem of source number C{index}.

        @raise BrokenPipeError: stdout's reader has gone.
        @raise OSError: the poem could not be written (L{WriteError} for stdout).
        """

    def failure(self, index: int, error: PoetryError) -> None:
        """
        Record that source number C{index} failed (stderr is not its business).

        @raise OSError: as for L{poem}.
        """


class TextOutput:
    """
    Poems on stdout, each ending with a newline.

    On a terminal the decoded text is written with controls made visible;
    anywhere else the bytes go through exactly as received.  With
    C{headers}, each poem is preceded by a ``==> SOURCE <==`` line, and
    poems after the first by an empty line.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        terminal: bool,
        encoding: str = "utf-8",
        headers: bool = False,
    ) -> None:
        self.stream = stream
        self.terminal = terminal
        self.encoding = encoding
        self.headers = headers
        self._shown = 0

    def poem(self, index: int, poem: Poem) -> None:
        header = b""
        if self.headers:
            blank = "\n" if self._shown else ""
            header = f"{blank}==> {one_line(poem.source)} <==\n".encode(self.encoding, "replace")
        self._shown += 1
        if self.terminal:
            text = escape_for_terminal(poem.text)
            data = text.encode(self.encoding, "replace")
        else:
            data = poem.data
        ending = b"" if data.endswith(b"\n") else b"\n"
        write_all(self.stream, header, data, ending)

    def failure(self, index: int, error: PoetryError) -> None:
        pass


class JSONOutput:
    """One JSON Lines object per source on stdout."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def poem(self, index: int, poem: Poem) -> None:
        write_all(self.stream, json_line(poem_record(poem)))

    def failure(self, index: int, error: PoetryError) -> None:
        write_all(self.stream, json_line(failure_record(error)))


class _AtomicFiles:
    """
    Poems written to files with the library's L{PoemFile}: under a temporary
    dot-name in the target's folder, renamed into place once complete, so a
    reader never sees a partial poem and a failure leaves nothing behind.
    A symlink at either name is never followed.

    The command line streams poems to their files (L{write_poem}); L{poem}
    is for a poem already whole in memory.
    """

    def target(self, index: int) -> Path:
        """Where the poem of source number C{index} goes."""
        raise NotImplementedError

    def poem(self, index: int, poem: Poem) -> None:
        target = self.target(index)
        # Already decoded (with the client's codec and error handler).
        poem_file = PoemFile(target, source=poem.source, check=False)
        try:
            poem_file.write(poem.data)
        except BaseException:
            poem_file.discard()
            raise
        poem_file.commit()

    def failure(self, index: int, error: PoetryError) -> None:
        pass


class DirectoryOutput(_AtomicFiles):
    """One file per poem in C{directory}, named by L{file_names}."""

    def __init__(self, directory: Path, sources: Sequence[str]) -> None:
        self.directory = directory
        self.names = file_names(sources)

    @staticmethod
    def prepare(directory: str) -> Path:
        """Create C{directory} if needed; raises C{OSError} if it cannot be used."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{directory}: not writable")
        return path

    def target(self, index: int) -> Path:
        """Where the poem of source number C{index} goes."""
        return self.directory / self.names[index]


class FileOutput(_AtomicFiles):
    """The one poem of the run in the file C{path} (``get -o FILE``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def prepare(name: str) -> Path:
        """
        Check that a poem can be written to C{name}; raises C{OSError} if not.

        Its folder must exist and be writable; C{name} itself must not be a
        folder (a symlink there is fine: it is replaced, not followed).
        """
        path = Path(name)
        with suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        folder = path.parent
        if not folder.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"no folder {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, f"folder {folder} is not writable")
        return path

    def target(self, index: int) -> Path:
        """Where the poem goes, whatever its index."""
        return self.path


class RawOutput:
    """
    ``get -o -``: the one poem's bytes to stdout as they arrive, like curl.

    Called with each chunk as it arrives, and writes it at once: no
    buffering, so the first byte reaches a pipe as soon as it arrives.
    Anywhere but a terminal the bytes go through exactly as received.  On a
    terminal each chunk is decoded as it comes (undecodable bytes replaced)
    and its controls made visible, as for whole poems, so a hostile server
    cannot drive the terminal.  C{written} counts the bytes of the poem
    already written, for the message if the poem fails later.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        terminal: bool,
        encoding: str = "utf-8",
        poem_encoding: str | None = None,
    ) -> None:
        self.stream = stream
        self.terminal = terminal
        self.encoding = encoding
        self.written = 0
        self._decoder = codecs.getincrementaldecoder(poem_encoding or "utf-8")("replace")

    def __call__(self, data: bytes) -> None:
        """Write C{data}, the next bytes of the poem (see L{write_all} for errors)."""
        if self.terminal:
            self._show(self._decoder.decode(data))
            self.written += len(data)
            return
        try:
            write_all(self.stream, data)
        except WriteError as e:
            self.written += e.written
            raise
        self.written += len(data)

    def finish(self) -> None:
        """The poem is whole: show what the terminal's decoder still holds."""
        if self.terminal:
            self._show(self._decoder.decode(b"", True))

    def _show(self, text: str) -> None:
        if text:
            write_all(self.stream, escape_for_terminal(text).encode(self.encoding, "replace"))

    def poem(self, index: int, poem: Poem) -> None:
        self(poem.data)
        self.finish()

    def failure(self, index: int, error: PoetryError) -> None:
        pass
