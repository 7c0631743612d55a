"""
Every source ``serve`` prints is one ``get`` accepts as written.

One real ``serve`` process listens on every form it supports (TCP on IPv4
and IPv6, Unix sockets whose paths hold a space, a colon, an equals sign,
non-ASCII letters and a final space, and HTTP); ``get``, run in this
process (tests/inprocess.py), fetches each ``listening on SOURCE`` line's
SOURCE and gets the poem.  The
escaping that ``serve`` applies is the one ``get`` undoes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from inprocess import run_cli
from serve_process import WAIT, Running, cli
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock

from poetry_endpoints import EndpointSource, HTTPSource, parse_source
from poetry_endpoints.addresses import escape_description_field, source_for
from poetry_endpoints.sources import UNIX_PATH_MAX

POEM = "Round and back again, caf\u00e9 \u8a69\n"
PREFIX = "listening on "


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not tmp_path: a Unix socket path must stay under about 100 bytes.
    path = Path(tempfile.mkdtemp(prefix="pe-rt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


#: Socket file names a user may well have, and what each one tests.
UNIX_NAMES = {
    "a space": "Application Support.sock",
    "a colon": "a:b.sock",
    "an equals sign": "k=v.sock",
    "a backslash": "back\\slash.sock",
    "non-ASCII letters": "caf\u00e9 \u8a69.sock",
    "a final space": "trailing.sock ",
}


def _listen_options(folder: Path) -> list[str]:
    options = ["-l", "tcp:0:interface=127.0.0.1"]
    if _ipv6_loopback():
        options += ["-l", "tcp6:0:interface=\\:\\:1"]
    for name in UNIX_NAMES.values():
        options += ["-l", "unix:" + escape_description_field(str(folder / name))]
    return [*options, "--http", "tcp:0:interface=127.0.0.1"]


def _announced(server: Running, count: int) -> list[str]:
    sources = []
    while len(sources) < count:
        line = server.next_line()
        assert line is not None, f"serve ended before listening: {server.stderr}"
        if line.startswith(PREFIX):
            # The whole rest of the line: a source may hold spaces.
            sources.append(line[len(PREFIX) :])
    return sources


def test_every_source_serve_prints_is_fetched_by_get(folder: Path) -> None:
    poem = folder / "poem.txt"
    poem.write_text(POEM, encoding="utf-8")
    options = _listen_options(folder)
    listeners = options.count("-l") + options.count("--http")
    with Running(cli("serve", *options, str(poem))) as server:
        sources = _announced(server, listeners)
        result = run_cli("get", "--json", "-q", "-t", "10", *sources, wait=WAIT)
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr.decode()
    outcomes = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [outcome["source"] for outcome in outcomes] == sources
    assert all(outcome["ok"] and outcome["poem"] == POEM for outcome in outcomes), outcomes
    # Every kind of listener was there to be fetched.
    unix = [source for source in sources if source.startswith("unix:")]
    assert len(unix) == len(UNIX_NAMES)
    assert any(source.startswith("tcp:127.0.0.1:") for source in sources)
    assert any(source.startswith("http://127.0.0.1:") for source in sources)
    if _ipv6_loopback():
        assert any(source.startswith("[::1]:") for source in sources)


@pytest.mark.parametrize("name", list(UNIX_NAMES.values()), ids=list(UNIX_NAMES))
def test_a_unix_address_parses_back_to_its_path(name: str) -> None:
    path = "/run/poetry/" + name
    reactor = MemoryReactorClock()
    parsed = parse_source(reactor, source_for(UNIXAddress(path.encode())))
    assert isinstance(parsed, EndpointSource)
    parsed.endpoint.connect(object())  # type: ignore[arg-type]
    assert reactor.unixClients[-1][0] == path


_PATHS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from(" :=\\/\u3000"),
    min_size=1,
    max_size=40,
).filter(lambda path: len(path.encode()) <= UNIX_PATH_MAX)


@given(path=_PATHS)
@example(path="   ")
@example(path="\\")
@example(path="a\\ ")
@example(path="path=x")
@example(path=" x ")
def test_any_unix_path_survives_the_round_trip(path: str) -> None:
    for name in (path, path.encode()):
        reactor = MemoryReactorClock()
        parsed = parse_source(reactor, source_for(UNIXAddress(name)))
        assert isinstance(parsed, EndpointSource)
        parsed.endpoint.connect(object())  # type: ignore[arg-type]
        assert reactor.unixClients[-1][0] == path


def test_a_path_that_is_not_utf8_survives_the_round_trip() -> None:
    reactor = MemoryReactorClock()
    parsed = parse_source(reactor, source_for(UNIXAddress(b"/tmp/caf\xe9.sock")))
    assert isinstance(parsed, EndpointSource)
    parsed.endpoint.connect(object())  # type: ignore[arg-type]
    assert os.fsencode(reactor.unixClients[-1][0]) == b"/tmp/caf\xe9.sock"


@pytest.mark.parametrize(
    ("address", "source"),
    [
        (IPv4Address("TCP", "0.0.0.0", 7), "tcp:127.0.0.1:7"),
        (IPv6Address("TCP", "::", 7), "[::1]:7"),
        (IPv6Address("TCP", "::1", 7), "[::1]:7"),
    ],
)
def test_tcp_addresses_parse_back(address: object, source: str) -> None:
    assert source_for(address) == source
    assert isinstance(parse_source(MemoryReactorClock(), source), EndpointSource)
    url = source_for(address, kind="http")
    assert isinstance(parse_source(MemoryReactorClock(), url), HTTPSource)
