"""
Turn what a user typed into something to connect to.

A source is recognised in this order:

1. ``http://…`` / ``https://…`` URLs, fetched with treq;
2. endpoint descriptions that ``clientFromString`` knows, plugins included;
3. the shorthand ``HOST:PORT``, ``[IPV6]:PORT`` or bare ``PORT`` (localhost).

Every string that is none of these raises `PoetryError` of kind
``invalid-source``; Twisted's own ``TypeError``/``ValueError`` never escape.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import hyperlink
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    _parse,
    clientFromString,
)
from twisted.internet.interfaces import (
    IReactorTCP,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.plugin import getPlugins

from .errors import PoetryError
from .tls import tls_description_endpoint

ACCEPTED_FORMS = (
    "expected http(s)://URL, tcp:HOST:PORT, unix:PATH, tls:HOST:PORT, "
    "another installed endpoint type, HOST:PORT, [IPV6]:PORT or PORT"
)

#: Endpoint types clientFromString knows without plugins.
_BUILTIN_TYPES = frozenset({"tcp", "ssl", "unix"})
#: Endpoint types whose second and third fields are a host and a TCP port.
_HOST_PORT_TYPES = frozenset({"tcp", "ssl", "tls"})

_BRACKETED = re.compile(r"\[(?P<host>[^\[\]]+)\]:(?P<port>[^:]*)")
_PLAIN = re.compile(r"(?P<host>[^:\[\]]+):(?P<port>[^:]*)")
_HOSTNAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?")


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
    """An ``invalid-source`` error for C{source}, naming the accepted forms."""
    return PoetryError(source, "invalid-source", f"{why}; {ACCEPTED_FORMS}")


@lru_cache(maxsize=1)
def endpoint_types() -> frozenset[str]:
    """Lower-case names of every client endpoint type clientFromString accepts."""
    plugins = getPlugins(IStreamClientEndpointStringParserWithReactor)
    names = {plugin.prefix.lower() for plugin in plugins}
    return frozenset(names | _BUILTIN_TYPES)


def describe_endpoint(endpoint: IStreamClientEndpoint) -> str:
    """A readable name for an endpoint object given in place of a string."""
    host = getattr(endpoint, "_hostText", None) or getattr(endpoint, "_host", None)
    port = getattr(endpoint, "_port", None)
    path = getattr(endpoint, "_path", None)
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
    @param source: a source string (any form above) or an endpoint object.
    @param cacert: a PEM file of CAs that C{tls:} sources trust as well as
        the platform's.
    @raise PoetryError: kind ``invalid-source`` when C{source} is not one.
    """
    if not isinstance(source, str):
        if IStreamClientEndpoint.providedBy(source):
            return EndpointSource(describe_endpoint(source), source)
        raise PoetryError(repr(source), "invalid-source", "not a string or an endpoint")
    text = source.strip()
    if not text:
        raise invalid(source, "empty source")
    if "\x00" in text or any(c.isspace() for c in text):
        raise invalid(source, "contains white space or NUL")
    scheme, colon, _ = text.partition(":")
    if scheme.lower() in ("http", "https"):
        return HTTPSource(source, _check_url(source, text))
    # Built-in types first: the plugin scan imports every endpoint plugin
    # (TLS included), a start-up cost a tcp: or unix: source need not pay.
    if colon and (scheme.lower() in _BUILTIN_TYPES or scheme.lower() in endpoint_types()):
        return EndpointSource(source, _from_description(reactor, source, text, cacert))
    return EndpointSource(source, _from_shorthand(reactor, source, text))


def _check_url(source: str, text: str) -> str:
    try:
        url = hyperlink.URL.from_text(text)
    except (hyperlink.URLParseError, ValueError) as e:
        raise invalid(source, f"malformed URL ({e})") from None
    if not url.host:
        raise invalid(source, "URL has no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise invalid(source, f"port {url.port} is outside 1-65535")
    return text


def _from_description(
    reactor: Any, source: str, text: str, cacert: str | None
) -> IStreamClientEndpoint:
    try:
        args, kwargs = _parse(text)
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
    elif kind == "unix" and not (any(args[1:2]) or kwargs.get("path")):
        raise invalid(source, "unix: needs a socket path")
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


def _check_port(source: str, port: str) -> int:
    # str.isdigit() is also true of "²" and of non-ASCII digits, which int()
    # rejects or silently maps to another port.
    if not (port.isascii() and port.isdigit()):
        raise invalid(source, f"port {port!r} is not a number")
    number = int(port)
    if not 1 <= number <= 65535:
        raise invalid(source, f"port {number} is outside 1-65535")
    return number


def _from_shorthand(reactor: Any, source: str, text: str) -> IStreamClientEndpoint:
    if text.isascii() and text.isdigit():
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
        endpoint = HostnameEndpoint(reactor, host, port)
        # HostnameEndpoint accepts a name IDNA rejects ("a_b", "Ⅸ") and only
        # fails when connecting; ``get`` promises every source checked up front.
        if not _HOSTNAME.fullmatch(host) or getattr(endpoint, "_badHostname", False):
            raise invalid(source, f"{host!r} is not a valid host name") from None
        return endpoint
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, host, port)
    if bracketed:
        raise invalid(source, f"{host!r} in brackets is not an IPv6 address")
    return TCP4ClientEndpoint(reactor, host, port)
