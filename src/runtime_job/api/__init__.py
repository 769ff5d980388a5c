"""Transport layer: connection settings, HTTP session, wire models, REST client, streams.

Importing this package imports nothing heavy; import the submodules you need.
"""

from .stream.reconnect import ReconnectPolicy

__all__ = ["ReconnectPolicy"]
