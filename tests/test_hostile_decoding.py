"""
A charset chosen to freeze the client: ``get`` as a subprocess against raw HTTP servers.

``punycode`` (like ``idna``) decodes in quadratic time: 400 KB took seconds,
16 MiB over an hour, on the reactor thread, after the attempt's timeout and
with Ctrl-C waiting.  Such a charset is refused before any decoding, so the
run ends at once with a ``decode`` failure and Ctrl-C is answered at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from loopback_servers import LoopbackServer
from promptness import Exit, time_to_exit
from raw_http import RawHTTPServer, responding
from terminal import read_pty

from conftest import subprocess_env

WAIT = 30.0
#: A body ``punycode`` decodes in quadratic time: about 45 s for these 200 KB here.
SLOW_PUNYCODE = b"-" + b"bbbb" * 50_000


def response(charset: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=%s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (charset, len(body), body)
    )


def get(*args: str) -> tuple[subprocess.CompletedProcess[bytes], Exit]:
    """Run ``get -q ARGS`` to its end; how it went, and how long it took of its own."""
    argv = [sys.executable, "-m", "poetry_endpoints", "get", "-q", *args]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
    )
    try:
        took = time_to_exit(process, WAIT * 3)  # its output is a line or two: no pipe fills
        out, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait(WAIT)
    return subprocess.CompletedProcess(argv, process.returncode, out, err), took


@pytest.mark.parametrize("charset", [b"punycode", b"PunyCode", b"idna"])
def test_a_charset_that_decodes_in_quadratic_time_is_refused_at_once(charset: bytes) -> None:
    server = RawHTTPServer(responding(response(charset, SLOW_PUNYCODE)), wait=WAIT)
    try:
        result, elapsed = get("--json", server.url)
    finally:
        server.close()
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    record = json.loads(result.stdout)
    assert record["kind"] == "decode"
    assert record["message"].endswith(
        f"the server declared charset '{charset.decode().lower()}', "
        "which is a codec for host names, too slow for a poem"
    )
    # Start-up and one loopback download; decoding would take the best part of a minute.
    assert elapsed.own < 10.0, str(elapsed)


def test_a_charset_that_is_not_a_text_encoding_is_refused() -> None:
    server = RawHTTPServer(responding(response(b"rot13", b"cbrz\n")), wait=WAIT)
    try:
        result, _ = get(server.url)
    finally:
        server.close()
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().endswith(
        "the server declared charset 'rot13', which is not a text encoding [decode]\n"
    )


def test_a_long_charset_name_is_cut_in_the_message() -> None:
    server = RawHTTPServer(responding(response(b"x" * 300, b"poem\n")), wait=WAIT)
    try:
        result, _ = get(server.url)
    finally:
        server.close()
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert line.endswith(f"the server declared unknown charset '{'x' * 39}\u2026' [decode]")


def test_ctrl_c_is_answered_at_once_after_a_hostile_charset_arrives() -> None:
    server = RawHTTPServer(responding(response(b"punycode", SLOW_PUNYCODE)), wait=WAIT)
    with LoopbackServer(b"", ending="stall") as stalled:
        process = subprocess.Popen(
            [sys.executable, "-m", "poetry_endpoints", "get", "-q", server.url, stalled.source],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
        )
        try:
            assert server.sent.wait(WAIT) and stalled.connected.wait(WAIT)
            # The body has arrived and been refused, with the other source still stalled.
            assert process.stderr is not None
            refused = read_pty(process.stderr.fileno(), time.monotonic() + WAIT, until=b"\n")
            answered = time_to_exit(process, WAIT * 3, signal.SIGINT)
            _, err = process.communicate(timeout=WAIT)
        finally:
            process.kill()
            process.wait(WAIT)
            server.close()
    assert refused.endswith(b"too slow for a poem [decode]\n"), refused
    assert process.returncode == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert err == b""  # nothing more after the refusal: the stalled source was stopped
    assert answered.own < 1.0, str(answered)
