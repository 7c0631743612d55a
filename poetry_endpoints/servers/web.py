"""
The poems over HTTP, with ``twisted.web``.

``/`` answers each GET with the next poem in turn, as the poetry server does
per connection; ``/poems/`` lists the names and ``/poems/NAME`` is one poem.
Every answer is ``text/plain; charset=utf-8``; anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ..addresses import source_for
from .poetry import PoemFile

CONTENT_TYPE = b"text/plain; charset=utf-8"


def make_site(poems: Sequence[PoemFile]) -> Site:
    """
    A site serving C{poems}: C{/} in turn, C{/poems/NAME} by name.

    @raise ValueError: if there is no poem to serve.
    """
    if not poems:
        raise ValueError("at least one poem is needed")
    site = Site(PoemsRoot(poems))
    site.displayTracebacks = False
    return site


def listening_url(port: IListeningPort, tls: bool) -> str:
    """
    The URL that reaches the site listening on C{port}, e.g. C{http://127.0.0.1:8080/}.

    A wildcard address (C{0.0.0.0}, C{::}) becomes the loopback address of the
    same family, which reaches it from this machine.

    @raise ValueError: if C{port} is not listening on TCP.
    """
    address = port.getHost()
    if not isinstance(address, IPv4Address | IPv6Address):
        raise ValueError(f"an HTTP URL needs a TCP address, not {address}")
    return source_for(address, kind="http", secure=tls)


class PoemsRoot(Resource):
    """C{/}: the next poem in turn; C{/poems}: the poems by name."""

    def __init__(self, poems: Sequence[PoemFile]) -> None:
        Resource.__init__(self)
        self._poems = list(poems)
        self._next = 0
        self.putChild(b"poems", NamedPoems(self._poems))

    def getChild(self, path: bytes, request: Any) -> IResource:
        if path == b"":
            return self
        return NotFound()

    def render_GET(self, request: Request) -> bytes:
        poem = self._poems[self._next]
        # A HEAD describes what the next GET gets, without using up a turn.
        if request.method != b"HEAD":
            self._next = (self._next + 1) % len(self._poems)
        return _poem(request, poem, turn=True)


class NamedPoems(Resource):
    """C{/poems/}: the names, one a line; C{/poems/NAME}: that poem."""

    def __init__(self, poems: Sequence[PoemFile]) -> None:
        Resource.__init__(self)
        self._names: dict[bytes, PoemFile] = {}
        for poem in poems:
            # With two files of the same name, the first given is served.
            self._names.setdefault(poem.name.encode("utf-8"), poem)

    def getChild(self, path: bytes, request: Any) -> IResource:
        if path == b"":
            return self
        poem = self._names.get(path)
        return NotFound() if poem is None else OnePoem(poem)

    def render_GET(self, request: Request) -> bytes:
        _plain(request)
        return _body(request, b"".join(name + b"\n" for name in self._names))


class OnePoem(Resource):
    """One poem; nothing below it."""

    def __init__(self, poem: PoemFile) -> None:
        Resource.__init__(self)
        self._poem = poem

    def getChild(self, path: bytes, request: Any) -> IResource:
        return NotFound()

    def render_GET(self, request: Request) -> bytes:
        return _poem(request, self._poem, turn=False)


class NotFound(Resource):
    """A plain-text 404."""

    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)

    def render(self, request: Request) -> bytes:
        """A plain-text 404, whatever the method."""
        request.setResponseCode(404)
        _plain(request)
        return _body(request, b"no such poem\n")


def _poem(request: Request, poem: PoemFile, *, turn: bool) -> bytes:
    _plain(request)
    if turn:
        # The same URL gives a different poem each time.
        request.setHeader(b"cache-control", b"no-store")
    return _body(request, poem.data)


def _body(request: Request, data: bytes) -> bytes:
    """
    C{data} for a GET; for a HEAD, its length alone.

    Twisted drops a body rendered for a HEAD, but logs a warning for each
    one; a HEAD answer is the GET's headers, Content-Length included.
    """
    if request.method == b"HEAD":
        request.setHeader(b"content-length", b"%d" % len(data))
        return b""
    return data


def _plain(request: Request) -> None:
    request.setHeader(b"content-type", CONTENT_TYPE)
    request.setHeader(b"x-content-type-options", b"nosniff")
