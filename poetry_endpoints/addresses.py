"""
The one place that turns a listening address into a source string.

``serve`` prints it (``listening on SOURCE``), the web site and the demo build
their URLs and sources with it, and ``get`` accepts every string it makes
as written: the escaping here is the reverse of what the source parser (and
Twisted's endpoint description syntax) undoes.
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

#: Addresses a server may listen on that a client cannot connect to as such,
#: and the loopback address of the same family that reaches them here.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def escape_description_field(text: str) -> str:
    """
    C{text} as one field of an endpoint description.

    A backslash, a colon and an equals sign are escaped with a backslash, as
    Twisted's description parser expects; so is white space at the end,
    which would otherwise be taken for space around the source.
    """
    escaped = text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
    if escaped[-1:].isspace():
        escaped = escaped[:-1] + "\\" + escaped[-1]
    return escaped


def source_for(address: object, *, kind: str = "poetry", secure: bool = False) -> str:
    """
    A source string that reaches a server listening on C{address}.

    A wildcard interface is reached through loopback.  IPv4 gives
    ``tcp:HOST:PORT``; IPv6 gives the ``[HOST]:PORT`` shorthand, since
    Twisted's ``tcp:`` client is IPv4 only.  C{secure} (a TLS listener)
    gives ``tls:``.  C{kind} ``"http"`` gives an ``http://`` (or
    ``https://``) URL of the site's root.  A Unix socket gives
    ``unix:PATH``, escaped so that spaces, colons, equals signs and any
    letter in the path survive the trip back.
    """
    if isinstance(address, IPv4Address | IPv6Address):
        v6 = isinstance(address, IPv6Address)
        host = _ANY_ADDRESS.get(address.host, address.host)
        host_port = f"[{host}]:{address.port}" if v6 else f"{host}:{address.port}"
        if kind == "http":
            return f"{'https' if secure else 'http'}://{host_port}/"
        if secure:
            return f"tls:{escape_description_field(host)}:{address.port}"
        return host_port if v6 else f"tcp:{host_port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        path = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)
        if kind == "http":
            return f"http+unix://{quote(path, safe='')}/"
        return "unix:" + escape_description_field(path)
    return str(address)
