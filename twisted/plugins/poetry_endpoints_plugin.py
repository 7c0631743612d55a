"""
``twist poetry`` and ``twist poetry-proxy``: poetry_endpoints as Twisted application plugins.

Kept to names only: every ``twist`` run (and every endpoint-plugin lookup)
imports this file, so the service modules are loaded only when a plugin is used.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python.reflect import namedAny
from zope.interface import implementer


@implementer(IPlugin, IServiceMaker)
class _LazyServiceMaker:
    """An IServiceMaker whose options and service come from C{module} when first needed."""

    def __init__(self, tapname: str, description: str, options: str, make: str) -> None:
        self.tapname = tapname
        self.description = description
        self._options = options
        self._make = make

    @property
    def options(self) -> Any:
        return namedAny(self._options)

    def makeService(self, options: Any) -> IService:
        return namedAny(self._make)(options)  # type: ignore[no-any-return]


poetry = _LazyServiceMaker(
    "poetry",
    "The companion poetry server: a poem per connection, on any endpoints.",
    "poetry_endpoints.servers.service.ServerOptions",
    "poetry_endpoints.servers.service.make_server_service",
)

poetry_proxy = _LazyServiceMaker(
    "poetry-proxy",
    "A poetry proxy: serves the poem fetched from an upstream source, with a cache.",
    "poetry_endpoints.servers.service.ProxyOptions",
    "poetry_endpoints.servers.service.make_proxy_service",
)
