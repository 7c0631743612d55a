"""
``twist poetry`` and ``twist poetry-proxy``: poetry_endpoints as Twisted application plugins.

As ``twisted/plugins/twisted_web.py`` does: every ``twist`` run (and every
endpoint-plugin lookup) imports this file, and C{ServiceMaker} imports the
named module only when its plugin is used.
"""

from twisted.application.service import ServiceMaker

poetry = ServiceMaker(
    "poetry",
    "poetry_endpoints.servers.tap",
    "The companion poetry server: a poem per connection, on any endpoints.",
    "poetry",
)

poetry_proxy = ServiceMaker(
    "poetry-proxy",
    "poetry_endpoints.servers.proxytap",
    "A poetry proxy: serves the poem fetched from an upstream source, with a cache.",
    "poetry-proxy",
)
