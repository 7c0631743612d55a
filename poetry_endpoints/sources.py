"""
Turn what a user typed into something to connect to.

A source is recognised in this order:

1. ``http://…`` / ``https://…`` URLs, fetched with treq;
2. endpoint descriptions that ``clientFromString`` knows, plugins included;
3. the shorthand ``HOST:PORT``, ``[IPV6]:PORT`` or bare ``PORT`` (localhost).

Every string that is none of these raises `PoetryError` of kind
``invalid-source`` whose one-line message names the string and the reason
(`ACCEPTED_FORMS` is the list of forms, for a caller to show once);
Twisted's own ``TypeError``/``ValueError`` never escape.  Everything that
can be checked without connecting is checked here: host names, ports, URL
schemes, credentials in URLs and the length of Unix socket paths.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
)
from twisted.internet.interfaces import (
    IReactorTCP,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.plugin import getPlugins

from ._private_apis import endpoint_address, parse_description
from .errors import PoetryError
from .tls import tls_description_endpoint

#: The forms a source may take, for a hint shown once after invalid sources.
ACCEPTED_FORMS = (
    "http(s)://URL, tcp:HOST:PORT, unix:PATH, tls:HOST:PORT, "
    "another installed endpoint type, HOST:PORT, [IPV6]:PORT or PORT"
)

#: Endpoint types clientFromString knows without plugins.
_BUILTIN_TYPES = frozenset({"tcp", "ssl", "unix"})
#: Endpoint types whose second and third fields are a host and a TCP port.
_HOST_PORT_TYPES = frozenset({"tcp", "ssl", "tls"})

_BRACKETED = re.compile(r"\[(?P<host>[^\[\]]+)\]:(?P<port>[^:]*)")
_PLAIN = re.compile(r"(?P<host>[^:\[\]]+):(?P<port>[^:]*)")
_HOSTNAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?")
_ASCII_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
#: At most 253 characters without the final dot (checked by the lookahead).
_ASCII_HOSTNAME = re.compile(rf"(?=.{{1,253}}\.?\Z){_ASCII_LABEL}(\.{_ASCII_LABEL})*\.?")
#: The longest host name DNS carries, without the final dot.
_MAX_HOSTNAME = 253
#: A scheme followed by "//": a URL, whatever its scheme.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Schemes people write without "//" (file:/x, mailto:a@b): a URL, not HOST:PORT.
_URL_SCHEMES = frozenset(
    {"about", "data", "file", "ftp", "ftps", "gopher", "javascript", "ldap", "mailto",
     "news", "sftp", "ssh", "telnet", "urn", "ws", "wss"}
)  # fmt: skip
#: The longest Unix socket path the platform takes, in bytes (sun_path less
#: its final NUL: 108 on Linux, 104 on the BSDs and macOS).
UNIX_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


@dataclass(frozen=True)
class EndpointSource:
    """A source reached by connecting an endpoint and reading until it closes."""

    name: str
    endpoint: IStreamClientEndpoint


@dataclass(frozen=True)
class HTTPSource:
    """A source fetched with an HTTP GET."""

    name: str
    url: str


Source = EndpointSource | HTTPSource


def invalid(source: str, why: str) -> PoetryError:
    """An ``invalid-source`` error for C{source}, saying C{why}."""
    return PoetryError(source, "invalid-source", why)


@lru_cache(maxsize=1)
def endpoint_types() -> frozenset[str]:
    """Lower-case names of every client endpoint type clientFromString accepts."""
    plugins = getPlugins(IStreamClientEndpointStringParserWithReactor)
    names = {plugin.prefix.lower() for plugin in plugins}
    return frozenset(names | _BUILTIN_TYPES)


def describe_endpoint(endpoint: IStreamClientEndpoint) -> str:
    """A readable name for an endpoint object given in place of a string."""
    host, port, path = endpoint_address(endpoint)
    kind = type(endpoint).__name__
    if host is not None and port is not None:
        return f"{kind}({host}:{port})"
    if path is not None:
        return f"{kind}({path})"
    return kind


def parse_source(
    reactor: Any, source: str | IStreamClientEndpoint, *, cacert: str | None = None
) -> Source:
    """
    Parse one source.

    @param reactor: the reactor the endpoint will connect with.
    @param source: a source string in one of the forms above, or an endpoint object.
    @param cacert: a PEM file of CAs that C{tls:} sources trust as well as
        the platform's.
    @raise PoetryError: kind ``invalid-source`` when C{source} is not one.
    """
    if not isinstance(source, str):
        if IStreamClientEndpoint.providedBy(source):
            return EndpointSource(describe_endpoint(source), source)
        raise PoetryError(repr(source), "invalid-source", "not a string or an endpoint")
    text = _strip(source)
    if not text:
        raise invalid(source, "empty source")
    if "\x00" in text:
        raise invalid(source, "contains NUL")
    scheme, colon, rest = text.partition(":")
    kind = scheme.lower()
    if kind in ("http", "https"):
        _check_characters(source, text)
        return HTTPSource(source, _check_url(source, text))
    # Built-in types first: the plugin scan imports every endpoint plugin
    # (TLS included), a start-up cost a tcp: or unix: source need not pay.
    if colon and (kind in _BUILTIN_TYPES or kind in endpoint_types()):
        # A Unix socket path is a file name, and "Application Support" is
        # an ordinary one: spaces are part of the path there.
        _check_characters(source, text, spaces=kind == "unix")
        return EndpointSource(source, _from_description(reactor, source, text, cacert))
    _check_characters(source, text)
    if colon and (_URL_START.match(text) or (kind in _URL_SCHEMES and not _is_number(rest))):
        raise invalid(source, f"{scheme}: URLs are not supported, only http:// and https://")
    return EndpointSource(source, _from_shorthand(reactor, source, text))


def _strip(text: str) -> str:
    """C{text} without surrounding white space, but keeping an escaped last character."""
    body = text.strip()
    if body and len(text.rstrip()) < len(text) and _ends_in_escape(body):
        # "unix:/tmp/a\\ " names "/tmp/a ": the backslash escapes the space.
        end = text.index(body) + len(body)
        body += text[end]
    return body


def _ends_in_escape(text: str) -> bool:
    trailing = len(text) - len(text.rstrip("\\"))
    return trailing % 2 == 1


def _check_characters(source: str, text: str, *, spaces: bool = False) -> None:
    if text.isprintable():  # the common case: no control, no white space but " "
        if not spaces and " " in text:
            raise invalid(source, "contains white space")
        return
    for c in text:
        if unicodedata.category(c) == "Cc":
            raise invalid(source, f"contains the control character {c!r}")
        if c.isspace() and not spaces:
            raise invalid(source, "contains white space")


def _is_number(text: str) -> bool:
    # str.isdigit() is also true of "²" and of non-ASCII digits, which int()
    # rejects or silently maps to another port.
    return text.isascii() and text.isdigit()


def _check_url(source: str, text: str) -> str:
    # hyperlink is loaded by the first URL, not by every import: a start-up
    # cost for commands that are given none.
    import hyperlink

    try:
        url = hyperlink.URL.from_text(text)
    except (hyperlink.URLParseError, ValueError) as e:
        raise invalid(source, f"malformed URL ({e})") from None
    if not url.host:
        raise invalid(source, "URL has no host")
    if url.userinfo:
        # curl would send them as Basic auth: in clear over http://, and the
        # source (password included) is echoed in every line about it.
        raise invalid(
            source,
            "a user name or password in a URL is not supported "
            "(it would be sent in clear and shown in every message about the source)",
        )
    if any(unicodedata.category(c) == "Cs" for c in text):
        raise invalid(source, "URL contains bytes that are not UTF-8")
    if ":" in url.host:
        _check_ipv6(source, url.host)
    else:
        # Encoded as treq will: UTS 46 mapping first, as browsers and curl do.
        _check_host(source, url.host, encode=_uri_host)
    if url.port is not None and not 1 <= url.port <= 65535:
        raise invalid(source, f"port {url.port} is outside 1-65535")
    if not text.isascii():
        try:
            # What treq does with every URL before it sends it, so that a
            # URL it would refuse is refused here, before anything connects.
            # (The host is checked above; hyperlink's IDNA takes no IPv6.)
            url.replace(host="h.invalid").to_uri().to_text().encode("ascii")
        except (UnicodeError, ValueError) as e:
            raise invalid(source, f"malformed URL ({e})") from None
    return text


def _check_ipv6(source: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise invalid(source, f"{host!r} is not an IPv6 address") from None


def _host_problem(host: str, encode: Callable[[str], bytes]) -> str | None:
    """Why C{host} is neither an IP literal nor a valid host name; C{None} if it is one."""
    if len(host) > _MAX_HOSTNAME + 1:
        return f"a host name of {len(host)} characters is longer than {_MAX_HOSTNAME}"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if host.isascii() and "--" not in host and _ASCII_HOSTNAME.fullmatch(host):
        # Letters, digits and inner hyphens: what IDNA would say without
        # asking it ("--" may be an A-label, which it must check).
        return None
    shown = host if len(host) <= 80 else host[:77] + "..."
    if not _HOSTNAME.fullmatch(host):
        return f"{shown!r} is not a valid host name"
    try:
        ascii_name = encode(host)
    except (UnicodeError, ValueError) as e:
        return f"{shown!r} is not a valid host name ({e})"
    if len(ascii_name.rstrip(b".")) > _MAX_HOSTNAME:
        return f"{shown!r} is longer than {_MAX_HOSTNAME} characters"
    return None


def _idna(host: str) -> bytes:
    # The same encoding HostnameEndpoint applies when it connects.
    try:
        import idna
    except ImportError:  # pragma: no cover - installed with twisted[tls]
        return host.encode("idna")
    return idna.encode(host)


def _uri_host(host: str) -> bytes:
    import hyperlink

    encoded: str = hyperlink.URL(host=host).to_uri().host
    return encoded.encode("ascii")


def _check_host(source: str, host: str, encode: Callable[[str], bytes] = _idna) -> None:
    problem = _host_problem(host, encode)
    if problem is not None:
        raise invalid(source, problem)


def _from_description(
    reactor: Any, source: str, text: str, cacert: str | None
) -> IStreamClientEndpoint:
    try:
        args, kwargs = parse_description(text)
    except Exception as e:  # the tokenizer rejects some escapes
        raise invalid(source, f"cannot tokenize ({e})") from None
    kind = args[0].lower()
    if kind in _HOST_PORT_TYPES:
        fields = dict(zip(("host", "port"), args[1:3], strict=False)) | kwargs
        if not fields.get("host"):
            raise invalid(source, f"{kind}: needs a host")
        if "port" not in fields:
            raise invalid(source, f"{kind}: needs a port")
        _check_port(source, fields["port"])
        _check_host(source, fields["host"])
    elif kind == "unix":
        path = args[1] if len(args) > 1 else kwargs.get("path", "")
        if not path:
            raise invalid(source, "unix: needs a socket path")
        _check_unix_path(source, path)
    if kind == "ssl":
        # Twisted's ssl: client never checks the server's host name (and
        # without caCertsDir not even its chain): an unverified success is
        # exactly what TLS here must never give.
        raise invalid(source, "ssl: does not verify the server; use tls:HOST:PORT, which does")
    try:
        if kind == "tls":
            # Ours verifies like Twisted's, but fails closed and takes cacert.
            endpoint = tls_description_endpoint(reactor, text, cacert)
        else:
            endpoint = clientFromString(reactor, text)
    except Exception as e:  # TypeError, ValueError, KeyError… from parsers and plugins
        raise invalid(source, f"cannot parse {kind}: endpoint ({e})") from None
    return endpoint


def _check_unix_path(source: str, path: str) -> None:
    try:
        size = len(os.fsencode(path))
    except UnicodeError:
        raise invalid(source, "the socket path cannot be encoded as a file name") from None
    if size > UNIX_PATH_MAX:
        # Twisted would only fail when connecting, with a TypeError it logs
        # as unhandled, and the attempt would then wait for its timeout.
        raise invalid(source, f"the socket path is {size} bytes long; the limit is {UNIX_PATH_MAX}")


def _check_port(source: str, port: str) -> int:
    if not _is_number(port):
        raise invalid(source, f"port {port!r} is not a number")
    number = int(port)
    if not 1 <= number <= 65535:
        raise invalid(source, f"port {number} is outside 1-65535")
    return number


def _from_shorthand(reactor: Any, source: str, text: str) -> IStreamClientEndpoint:
    if _is_number(text):
        return HostnameEndpoint(reactor, "localhost", _check_port(source, text))
    match = _BRACKETED.fullmatch(text) or _PLAIN.fullmatch(text)
    if match is None:
        scheme, colon, _ = text.partition(":")
        if colon and not scheme.startswith("["):
            why = f"{scheme!r} is not an installed endpoint type, nor is this HOST:PORT"
        else:
            why = "not an endpoint description nor HOST:PORT"
        raise invalid(source, why)
    host, port = match["host"], _check_port(source, match["port"])
    return _host_endpoint(reactor, source, host, port, bracketed=text.startswith("["))


def _host_endpoint(
    reactor: IReactorTCP, source: str, host: str, port: int, *, bracketed: bool
) -> IStreamClientEndpoint:
    # An IP literal needs no resolver: connecting to it directly saves a
    # getaddrinfo round trip through the thread pool for every source.
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if bracketed:
            raise invalid(source, f"{host!r} in brackets is not an IPv6 address") from None
        # HostnameEndpoint accepts a name IDNA rejects ("a_b", "Ⅸ") and only
        # fails when connecting: every source is checked before that.
        _check_host(source, host)
        return HostnameEndpoint(reactor, host, port)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, host, port)
    if bracketed:
        raise invalid(source, f"{host!r} in brackets is not an IPv6 address")
    return TCP4ClientEndpoint(reactor, host, port)
