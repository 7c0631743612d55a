"""
poetry_endpoints: download poems from any Twisted endpoint or URL.

    from poetry_endpoints import get_poetry
    poem = await get_poetry(reactor, "tcp:localhost:10000")
"""

from typing import TYPE_CHECKING

from .client import PoetryClient, PoetryReactor, get_poetry
from .connect import QuietEndpoint, connect_poem
from .errors import KINDS, ErrorKind, PoetryError
from .files import PoemFile, write_poem
from .poem import Poem
from .protocol import PoetryProtocol
from .settings import ClientSettings
from .sources import EndpointSource, HTTPSource, Source, parse_source
from .streaming import Streamed

if TYPE_CHECKING:
    #: The installed distribution's version: one number, kept in pyproject.toml only.
    __version__: str
else:

    def __getattr__(name: str) -> str:
        # Read on first use, not at import: importlib.metadata and the scan
        # for the distribution cost every command run that never asks.
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("poetry_endpoints")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found


__all__ = [
    "KINDS",
    "ClientSettings",
    "EndpointSource",
    "ErrorKind",
    "HTTPSource",
    "Poem",
    "PoemFile",
    "PoetryClient",
    "PoetryError",
    "PoetryProtocol",
    "PoetryReactor",
    "QuietEndpoint",
    "Source",
    "Streamed",
    "connect_poem",
    "get_poetry",
    "parse_source",
    "write_poem",
]
