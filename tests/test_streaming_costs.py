"""
What streaming costs per read: two measured choices that keep a streamed poem
about as cheap as a blocking read into a file (see benchmarks/README.md).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from poetry_endpoints import PoemFile, PoetryError
from poetry_endpoints.protocol import BIG_POEM, BIG_READ, PoetryProtocol

MiB = 1024 * 1024


def test_a_streamed_poem_is_read_a_mebibyte_at_a_time(tmp_path: Path) -> None:
    # Each piece of a streamed poem is handed on and freed at once: 1 MiB
    # buffers are reused by the allocator, 4 MiB ones are fresh pages per
    # read (64 MiB to a file: about 0.055 s of CPU with 4 MiB, 0.031 s with 1).
    pieces: list[int] = []
    protocol = PoetryProtocol(
        "tcp:poems:10000",
        MemoryReactorClock(),
        max_bytes=None,
        sink=lambda b: pieces.append(len(b)),
    )
    transport = StringTransport()
    transport.bufferSize = 65536  # type: ignore[attr-defined]
    protocol.makeConnection(transport)
    protocol.dataReceived(b"x" * BIG_POEM)
    assert transport.bufferSize == MiB < BIG_READ  # type: ignore[attr-defined]
    assert pieces == [BIG_POEM]


def test_the_decode_check_never_decodes_a_whole_read_at_once(tmp_path: Path) -> None:
    # The check's text is thrown away; decoding a big read whole would make a
    # str as big as the read (fresh pages each time, half the CPU of a
    # streamed download).  It decodes in small slices instead.
    poem = PoemFile(tmp_path / "poem.txt", encoding="utf-8")
    piece = "é".encode() * (2 * MiB)  # 4 MiB of valid UTF-8
    tracemalloc.start()
    try:
        poem.write(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MiB, f"{peak} bytes allocated to check a {len(piece)}-byte piece"

    # A bad byte deep inside a later slice is still named at its place in the poem.
    bad = b"a" * (300 * 1024) + b"\xff" + b"a" * 10
    with pytest.raises(PoetryError) as caught:
        poem.write(bad)
    assert caught.value.kind == "decode"
    assert f"near byte {len(piece) + 300 * 1024}" in str(caught.value)
    poem.discard()
    assert list(tmp_path.iterdir()) == []
