"""
Writing a poem to a file atomically, as it streams.

`write_poem` downloads a poem straight into a file: the bytes go to a
temporary file in the same folder as they arrive, and only a whole poem is
renamed onto the final name, so a reader never sees half a poem and a
failure leaves nothing behind.  `PoemFile` is that file, for a caller that
streams on its own terms (the command line's ``-o`` and ``--output-dir``).

The temporary file is ``.NAME.XXXXXXXX.part`` next to the final name,
created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a symbolic link planted at
that name is never followed, nor an existing file overwritten.  The rename
is `os.replace`, which replaces a symbolic link planted at the final name
rather than writing through it.  Writing is blocking I/O on the reactor
thread, in large buffered pieces; the data is flushed to disk (``fsync``)
before the rename.
"""

from __future__ import annotations

import codecs
import os
import secrets
import weakref
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from .decoding import check_choice, poem_decoding, shown_name
from .errors import PoetryError
from .protocol import ProgressCallback
from .streaming import Streamed

#: Bytes gathered in memory before each write to the file.
WRITE_BUFFER = 1024 * 1024
#: The decode check decodes at most this much at a time.
DECODE_SLICE = 64 * 1024
#: Temporary names tried before giving up (each is random).
_TEMPORARY_TRIES = 100
#: Every `PoemFile` whose temporary file exists, for `remove_temporaries`.
_open_files: weakref.WeakSet[PoemFile] = weakref.WeakSet()


class PoemFile:
    """
    A poem being written to C{path}, under a temporary name until L{commit}.

    Call it (or its C{write}) with each piece of the poem: it is a sink for
    `PoetryClient.stream`.  Then L{commit} to put the whole poem in place,
    or L{discard} to remove the temporary file; after either, it is closed.

    A poem is kept only if it decodes, checked as the bytes arrive, with the
    rule `PoetryClient.get` decodes by: C{encoding} if given, else the
    charset an HTTP server declares (L{charset_declared}, which
    `PoetryClient.stream` calls before the first byte), else UTF-8.  A piece
    that does not decode, or a declared charset that is unknown or cannot
    decode a poem, raises `PoetryError` of kind ``decode`` (naming
    C{source}), which as a sink aborts the download.

    @param path: the final name.
    @param encoding: the codec chosen by the caller, over any declared one.
    @param errors: the decoding error handler (``replace`` never fails).
    @param source: the source's name, for the decode error.
    @param check: C{False} writes the bytes as they come, unchecked (for a
        poem already decoded, or bytes that are not text).
    @raise OSError: the temporary file cannot be created.
    @raise LookupError, ValueError: C{encoding} or C{errors} is unknown, or
        C{encoding} cannot decode a poem.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str | None = None,
        errors: str = "strict",
        source: str = "",
        check: bool = True,
    ) -> None:
        self.path = Path(path)
        self.source = source or str(path)
        self.written = 0
        self._check = check
        self._chosen = encoding
        self._declared: str | None = None
        self._errors = errors
        self._encoding = ""
        self._decoder: codecs.IncrementalDecoder | None = None
        if check:
            check_choice(encoding, errors)
        self.temporary, self._file = _create_temporary(self.path)
        _open_files.add(self)

    def __call__(self, data: bytes) -> None:
        self.write(data)

    def charset_declared(self, charset: str | None) -> None:
        """
        The charset an HTTP response declares (C{None}: none), told before
        its first byte; it decides the check unless C{encoding} was given.

        Never raises: a charset that cannot decode a poem fails the first
        L{write}, or L{commit} for an empty poem, as it fails `get`.
        """
        if self.written:
            return  # the bytes so far were checked with another codec: keep it
        self._declared = charset
        self._decoder = None

    def write(self, data: bytes) -> None:
        """Append C{data}, checking that it decodes unless told not to."""
        if self._check:
            decoder = self._decoder or self._start_decoding()
            # The text is thrown away.  Decoding a 1 MiB read whole makes a
            # 1 MiB str, fresh pages from the allocator each time; 64 KiB
            # slices are reused from its free lists (64 MiB to a file with
            # the check: 0.105 s of CPU whole, 0.045 s sliced).
            start = 0
            try:
                if len(data) <= DECODE_SLICE:
                    decoder.decode(data)
                else:
                    view = memoryview(data)
                    for start in range(0, len(data), DECODE_SLICE):
                        decoder.decode(bytes(view[start : start + DECODE_SLICE]))
            except UnicodeError as e:
                where = f"near byte {self.written + start + _start(e)}"
                raise self._not_valid(e, where) from None
        self._file.write(data)
        self.written += len(data)

    def _start_decoding(self) -> codecs.IncrementalDecoder:
        self._encoding, info = poem_decoding(self.source, self._chosen, self._declared)
        self._decoder = info.incrementaldecoder(self._errors)
        return self._decoder

    def _not_valid(self, error: UnicodeError, where: str) -> PoetryError:
        reason = error.reason if isinstance(error, UnicodeDecodeError) else str(error)
        return PoetryError(
            self.source, "decode", f"not valid {shown_name(self._encoding)}: {reason} {where}"
        )

    def commit(self) -> None:
        """
        Check the end decodes (for an empty poem: that its codec can decode
        a poem), flush to disk, and rename onto C{path}.

        On any failure the temporary file is removed, and the exception
        (`PoetryError` ``decode``, or C{OSError}) raised.
        """
        try:
            if self._check:
                decoder = self._decoder or self._start_decoding()
                try:
                    decoder.decode(b"", True)
                except UnicodeError as e:
                    raise self._not_valid(e, f"at the end (byte {self.written})") from None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.temporary, self.path)
        except BaseException:
            self.discard()
            raise
        _open_files.discard(self)

    def discard(self) -> None:
        """Close and remove the temporary file; does nothing the second time."""
        _open_files.discard(self)
        with suppress(OSError):
            self._file.close()
        with suppress(FileNotFoundError):
            os.unlink(self.temporary)


def remove_temporaries() -> None:
    """
    Remove every temporary file of a `PoemFile` not yet committed.

    For a forced exit (a second Ctrl-C, say) that cannot wait for the
    downloads to be cancelled one by one.
    """
    for poem_file in list(_open_files):
        poem_file.discard()


def write_poem(
    client: Any,
    source: Any,
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    errors: str | None = None,
    check: bool = True,
    progress: ProgressCallback | None = None,
) -> Deferred[Streamed]:
    """
    Stream the poem at C{source} into the file C{path}, atomically.

    @param client: a `PoetryClient`: its caps, timeouts and retries apply.
    @param source: anything `PoetryClient.stream` takes.
    @param encoding: the codec the poem must decode with, checked as it
        streams; C{None}: the client's C{encoding}, else the charset an HTTP
        server declares, else UTF-8 (the rule of `PoetryClient.get`).  It
        fails with kind ``decode`` as soon as the poem does not decode, or
        the server declares a charset that cannot decode a poem (and no
        file is left).
    @param errors: the error handler; C{None}: the client's C{errors}.
    @param check: C{False} keeps the bytes as they come, unchecked.
    @return: fires with the L{Streamed} summary once the whole poem is at
        C{path}; or fails with the download's `PoetryError`, a decode
        `PoetryError`, or the C{OSError} of writing the file.  Either way
        no temporary file is left behind; on failure C{path} is untouched.
        Cancelling it cancels the download and removes the temporary file.
    """
    try:
        parsed = client.parse(source)
        poem_file = PoemFile(
            path,
            encoding=client.encoding if encoding is None else encoding,
            errors=client.errors if errors is None else errors,
            source=parsed.name,
            check=check,
        )
    except Exception:
        return fail(Failure())

    def done(result: Streamed | Failure) -> Streamed | Failure:
        if isinstance(result, Failure):
            poem_file.discard()
            return result
        poem_file.commit()
        return result

    streaming: Deferred[Streamed] = client.stream(parsed, poem_file, progress=progress)
    return streaming.addBoth(done)


def _start(error: UnicodeError) -> int:
    return error.start if isinstance(error, UnicodeDecodeError) else 0


def _create_temporary(path: Path) -> tuple[Path, BinaryIO]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMPORARY_TRIES):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(temporary, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue  # taken, or a link planted there: another random name
        return temporary, os.fdopen(fd, "wb", buffering=WRITE_BUFFER)
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")
