"""
Source parsing: every accepted form maps to the right endpoint, every
malformed one is `PoetryError` kind ``invalid-source`` whose one-line message
names the string and the reason (and not the long list of accepted forms,
which the command line shows once), and nothing else ever escapes the parser.

Parsing happens against a `MemoryReactorClock`; endpoints that are connected
here only record the attempt, so nothing touches the network.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock

from poetry_endpoints import EndpointSource, HTTPSource, PoetryError, parse_source
from poetry_endpoints.errors import one_line
from poetry_endpoints.sources import ACCEPTED_FORMS


@pytest.fixture
def reactor() -> MemoryReactorClock:
    return MemoryReactorClock()


def endpoint_of(reactor: MemoryReactorClock, text: str) -> Any:
    parsed = parse_source(reactor, text)
    assert isinstance(parsed, EndpointSource)
    assert parsed.name == text
    assert IStreamClientEndpoint.providedBy(parsed.endpoint)
    return parsed.endpoint


def tcp_destination(reactor: MemoryReactorClock, endpoint: Any) -> tuple[str, int]:
    """Connect C{endpoint} on the memory reactor and return the recorded host and port."""
    before = len(reactor.tcpClients)
    endpoint.connect(Factory.forProtocol(Protocol))
    assert len(reactor.tcpClients) == before + 1
    host, port = reactor.tcpClients[-1][:2]
    return host, port


# --- accepted forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("tcp:127.0.0.1:10000", "127.0.0.1", 10000),
        ("tcp:localhost:1", "localhost", 1),
        ("tcp:host=127.0.0.1:port=65535", "127.0.0.1", 65535),
        ("TCP:example.invalid:80", "example.invalid", 80),
    ],
)
def test_tcp_description_is_tcp4(
    reactor: MemoryReactorClock, text: str, host: str, port: int
) -> None:
    endpoint = endpoint_of(reactor, text)
    assert type(endpoint) is TCP4ClientEndpoint
    assert tcp_destination(reactor, endpoint) == (host, port)


def test_tcp_description_keeps_its_options(reactor: MemoryReactorClock) -> None:
    endpoint = endpoint_of(reactor, "tcp:host=127.0.0.1:port=7:timeout=3")
    endpoint.connect(Factory.forProtocol(Protocol))
    host, port, _factory, timeout, _bind = reactor.tcpClients[-1]
    assert (host, port, timeout) == ("127.0.0.1", 7, 3)


def test_unix_description(reactor: MemoryReactorClock) -> None:
    endpoint = endpoint_of(reactor, "unix:/run/poetry.sock")
    assert type(endpoint) is UNIXClientEndpoint
    endpoint.connect(Factory.forProtocol(Protocol))
    assert reactor.unixClients[-1][0] == "/run/poetry.sock"


def test_unix_description_by_keyword(reactor: MemoryReactorClock) -> None:
    endpoint = endpoint_of(reactor, "unix:path=/tmp/p.sock")
    endpoint.connect(Factory.forProtocol(Protocol))
    assert reactor.unixClients[-1][0] == "/tmp/p.sock"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("unix:/tmp/a b.sock", "/tmp/a b.sock"),
        ("unix:/Users/me/Application Support/p.sock", "/Users/me/Application Support/p.sock"),
        ("unix:/tmp/a\\:b.sock", "/tmp/a:b.sock"),
        ("unix:/tmp/a\\=b.sock", "/tmp/a=b.sock"),
        ("unix:/tmp/caf\u00e9 \u8a69.sock", "/tmp/caf\u00e9 \u8a69.sock"),
        ("unix:path=/tmp/a b.sock", "/tmp/a b.sock"),
        # An escaped last space is part of the path; an unescaped one is not.
        ("unix:/tmp/a\\ ", "/tmp/a "),
        ("unix:/tmp/a ", "/tmp/a"),
        ("unix:/tmp/" + "x" * 97, "/tmp/" + "x" * 97),
    ],
)
def test_unix_paths_take_spaces_escapes_and_any_letter(
    reactor: MemoryReactorClock, text: str, path: str
) -> None:
    endpoint = endpoint_of(reactor, text)
    endpoint.connect(Factory.forProtocol(Protocol))
    assert reactor.unixClients[-1][0] == path


@pytest.mark.parametrize(
    "text",
    [
        "tcp:" + ".".join(["a" * 63] * 3) + "." + "a" * 61 + ":80",
        "tcp:\\:\\:1:80",
        "tls:example.invalid.:443",
        "http://" + ".".join(["a" * 63] * 3) + "." + "a" * 61 + "/",
        "http://dichter.m\u00fcller/gedicht",
        # URLs are encoded the way treq sends them (UTS 46, as curl does).
        "http://M\u00dcLLER.example/",
        "https://[::1]:8443/poems/caf%C3%A9",
        "http://localhost/caf\u00e9",
        "EXAMPLE.invalid:80",
        "ws:8080",
    ],
)
def test_names_within_the_limits_are_accepted(reactor: MemoryReactorClock, text: str) -> None:
    assert parse_source(reactor, text).name == text


def test_tls_description_wraps_a_hostname_endpoint(reactor: MemoryReactorClock) -> None:
    endpoint = endpoint_of(reactor, "tls:localhost:8443")
    # tls: is Twisted's wrapClientTLS around a (dual-stack) HostnameEndpoint.
    inner = endpoint._wrappedEndpoint
    assert type(inner) is HostnameEndpoint
    assert repr(inner) == "<HostnameEndpoint localhost:8443>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:10000", "<HostnameEndpoint localhost:10000>"),
        ("poetry:10000", "<HostnameEndpoint poetry:10000>"),
        ("poems.example.invalid:1", "<HostnameEndpoint poems.example.invalid:1>"),
        ("10000", "<HostnameEndpoint localhost:10000>"),
        ("1", "<HostnameEndpoint localhost:1>"),
        ("65535", "<HostnameEndpoint localhost:65535>"),
        ("dichter.müller:7", "<HostnameEndpoint dichter.xn--mller-kva:7>"),
    ],
)
def test_shorthand_with_a_name_is_a_hostname_endpoint(
    reactor: MemoryReactorClock, text: str, expected: str
) -> None:
    endpoint = endpoint_of(reactor, text)
    assert type(endpoint) is HostnameEndpoint
    assert repr(endpoint) == expected


def test_shorthand_ipv4_literal_connects_directly(reactor: MemoryReactorClock) -> None:
    # An IP literal needs no name resolution, so it skips HostnameEndpoint's
    # thread-pool getaddrinfo (issue 6); the address family is the literal's own.
    endpoint = endpoint_of(reactor, "127.0.0.1:10000")
    assert type(endpoint) is TCP4ClientEndpoint
    assert tcp_destination(reactor, endpoint) == ("127.0.0.1", 10000)


@pytest.mark.parametrize(("text", "host"), [("[::1]:10000", "::1"), ("[fe80::1]:10000", "fe80::1")])
def test_shorthand_bracketed_ipv6(reactor: MemoryReactorClock, text: str, host: str) -> None:
    endpoint = endpoint_of(reactor, text)
    assert type(endpoint) is TCP6ClientEndpoint
    assert tcp_destination(reactor, endpoint) == (host, 10000)


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:8080/", "https://localhost/poems/x", "HTTP://localhost:1/a?b=c"]
)
def test_urls_are_http_sources(reactor: MemoryReactorClock, text: str) -> None:
    parsed = parse_source(reactor, text)
    assert parsed == HTTPSource(text, text)
    assert reactor.tcpClients == []


def test_an_endpoint_object_passes_through(reactor: MemoryReactorClock) -> None:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", 4321)
    parsed = parse_source(reactor, endpoint)
    assert isinstance(parsed, EndpointSource)
    assert parsed.endpoint is endpoint
    assert "127.0.0.1:4321" in parsed.name


def test_surrounding_space_is_ignored_but_the_name_is_kept(reactor: MemoryReactorClock) -> None:
    parsed = parse_source(reactor, " tcp:127.0.0.1:5 ")
    assert isinstance(parsed, EndpointSource)
    assert parsed.name == " tcp:127.0.0.1:5 "
    assert tcp_destination(reactor, parsed.endpoint) == ("127.0.0.1", 5)


def test_parsing_never_connects(reactor: MemoryReactorClock) -> None:
    for text in ["tcp:127.0.0.1:1", "unix:/x", "localhost:1", "[::1]:1", "1", "tls:localhost:1"]:
        parse_source(reactor, text)
    assert reactor.tcpClients == [] and reactor.unixClients == []
    assert reactor.getDelayedCalls() == []


# --- malformed forms -----------------------------------------------------------------------

MALFORMED = [
    "tcp:localhost",
    "tcp:host:abc",
    "tpc:localhost:10000",
    "localhost:http",
    "0",
    "70000",
    "localhost:0",
    "localhost:70000",
    "[::1]:0",
    "tcp:h:70000",
    "tcp:h:0",
    "tcp:host=h",
    "tcp:port=80",
    "tcp::80",
    "",
    " ",
    "\t\n",
    "unix:",
    "unix:path=",
    "localhost",
    "localhost:",
    ":80",
    "[::1]",
    "[::1]80",
    "[nonsense]:80",
    "[127.0.0.1]:80",
    "::1:80",
    "a..b:80",
    "-host:80",
    "a_b:80",
    "tcp:h:1:bogus=1",
    "tcp:h:1:timeout=x",
    "http://",
    "https://h:0/",
    "http://[::1:80/",
    "²",
    "tcp:h:²",
    "localhost:\u0661\u0662\u0663",
    "\u0661\u0662\u0663",
    "tcp:h:+80",
    "tcp:h:8 0",
    "local host:80",
    "nul\x00:80",
    # Host names: labels of 1 to 63 characters, 253 in all, no empty label,
    # no hyphen at either end of a label; the same rules in every form.
    "http://a..b/",
    "http://-a-/",
    "http://a-/",
    "https://" + "a" * 100_000 + "/",
    "http://" + ".".join(["a" * 63] * 4) + "/",
    "http://" + "a" * 64 + ".example/",
    "tcp:a..b:80",
    "tcp:-a-:80",
    "tcp:host=" + "a" * 100_000 + ":port=80",
    "tls:a..b:443",
    "tls:-a-:443",
    "a" * 64 + ":80",
    ".".join(["a" * 63] * 4) + ":80",
    "[::1x]:80",
    "http://[::1x]/",
    # A byte that is not UTF-8 (as os.fsdecode gives it from the command
    # line), and control characters.
    "http://h/\udcff",
    "http://h\udcff/",
    "http://h/\x7f",
    "http://h/\x1b[2J",
    "tcp:h\udcff:80",
    "unix:/tmp/a\tb.sock",
    "unix:/tmp/a\nb.sock",
    # Credentials would go out in clear and be echoed in every line.
    "http://user:secret@localhost/",
    "https://user@localhost/",
    "http://:secret@localhost/",
    # Longer than a Unix socket path can be: Twisted fails only when connecting.
    "unix:/tmp/" + "x" * 200,
    "unix:path=/tmp/" + "x" * 200,
    # Other URL schemes.
    "ftp://x/y",
    "ftp://localhost:21/",
    "file:///etc/passwd",
    "file:/etc/passwd",
    "ws://localhost:80/",
    "wss://localhost/",
    "mailto:poet@example.invalid",
    "http+unix://%2Ftmp%2Fp.sock/",
    "gopher://localhost/",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_source_is_invalid_source(reactor: MemoryReactorClock, text: str) -> None:
    with pytest.raises(PoetryError) as caught:
        parse_source(reactor, text)
    error = caught.value
    assert error.kind == "invalid-source"
    assert error.source == text
    message = str(error)
    # One line, naming the source (unprintable characters in it escaped, as
    # every message escapes them: tests/test_escaping.py).
    assert "\n" not in message
    shown = one_line(text)
    assert message.startswith(f"{shown}: ")
    reason = message.removeprefix(f"{shown}: ")
    assert reason.strip()
    # The reason is about this source; the list of forms is the caller's to show, once.
    assert ACCEPTED_FORMS not in message
    assert reactor.tcpClients == [] and reactor.unixClients == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tcp:localhost", "needs a port"),
        ("tcp:host:abc", "'abc' is not a number"),
        ("tpc:localhost:10000", "'tpc' is not an installed endpoint type"),
        ("localhost:http", "'http' is not a number"),
        ("0", "port 0 is outside 1-65535"),
        ("70000", "port 70000 is outside 1-65535"),
        ("tcp:h:70000", "port 70000 is outside 1-65535"),
        ("", "empty"),
        ("unix:", "needs a socket path"),
        ("http://a..b/", "'a..b' is not a valid host name"),
        ("tcp:-a-:80", "'-a-' is not a valid host name"),
        ("http://" + "a" * 100_000 + "/", "longer than 253"),
        ("http://user:secret@localhost/", "user name or password in a URL is not supported"),
        ("http://h/\udcff", "not UTF-8"),
        ("unix:/tmp/" + "x" * 200, "the socket path is 205 bytes long; the limit is 10[37]"),
        ("ftp://x/y", "ftp: URLs are not supported, only http:// and https://"),
        ("file:/etc/passwd", "file: URLs are not supported"),
        ("ws:abc", "ws: URLs are not supported"),
        ("unix:/tmp/a\nb", "control character"),
    ],
)
def test_malformed_source_says_why(reactor: MemoryReactorClock, text: str, why: str) -> None:
    with pytest.raises(PoetryError, match=why):
        parse_source(reactor, text)


def test_a_long_host_name_is_refused_without_quoting_all_of_it(
    reactor: MemoryReactorClock,
) -> None:
    with pytest.raises(PoetryError) as caught:
        parse_source(reactor, "tcp:" + "a" * 300 + ".example:80")
    assert len(caught.value.reason) < 200


def test_not_a_string_nor_an_endpoint(reactor: MemoryReactorClock) -> None:
    with pytest.raises(PoetryError) as caught:
        parse_source(reactor, 10000)  # type: ignore[arg-type]
    assert caught.value.kind == "invalid-source"
    assert "10000" in str(caught.value)


# --- fuzzing (issue 5 item 5) --------------------------------------------------------------

_PIECES = st.sampled_from(
    ["tcp", "unix", "tls", "ssl", "http", "https", "localhost", "[::1]", "[", "]", ":", "=",
     "host", "port", "path", "timeout", "/", "//", "\\", ".", "-", "_", "0", "1", "65535",
     "65536", "70000", "²", "\u0661", "ü", "Ⅸ", " ", "\x00", "%", "@", "?", "#", "127.0.0.1", "::"]
)  # fmt: skip
_SOURCES = st.one_of(
    st.text(max_size=40),
    st.lists(_PIECES, max_size=8).map("".join),
    st.tuples(
        st.sampled_from(["tcp:", "unix:", "tls:", "ssl:", "http://", "https://", "", "["]),
        st.text(max_size=20),
        st.sampled_from(["", ":", ":80", "]:80", ":port=1", ":host="]),
    ).map("".join),
)


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=_SOURCES)
def test_any_text_parses_or_is_invalid_source(text: str) -> None:
    reactor = MemoryReactorClock()
    try:
        parsed = parse_source(reactor, text)
    except PoetryError as e:
        assert e.kind == "invalid-source"
        assert e.source == text
        assert "\n" not in str(e)
    else:
        assert parsed.name == text
        if isinstance(parsed, EndpointSource):
            assert IStreamClientEndpoint.providedBy(parsed.endpoint)
    assert reactor.tcpClients == [] and reactor.unixClients == []
