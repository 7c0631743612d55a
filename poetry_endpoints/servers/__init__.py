"""
The server side: the companion poetry servers and what runs them.

``poetry`` is the slow poetry server, ``faults`` its misbehaving variants,
``web`` the same poems over HTTP, ``proxy`` a server that fetches its poem
with the client library, ``limits`` what bounds their connections, and
``service`` the Twisted services that listen on endpoint descriptions for
``poetry-endpoints serve``/``proxy`` and the ``twist`` plugins.
"""
