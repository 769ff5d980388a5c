"""The stream hub: every websocket the library opens for ``/stream/jobs/{id}``.

One module per job (``docs/streaming.md`` has the design):

- :mod:`.hub`: :class:`StreamHub` and :func:`default_hub`: subscriptions, reconnect
  decisions, lifecycle.
- :mod:`.subscription`: :class:`StreamHandle`, what a subscriber holds.
- :mod:`.waiting`: how a thread waits on a stream (leads the reactor, or parks).
- :mod:`.delivery`: per-stream ordered dispatch to the listener.
- :mod:`.connection`: one websocket connection: protocols, keepalive, liveness.
- :mod:`.handshake`: URLs, proxies, TLS, the blocking handshake and its errors.
- :mod:`.reconnect`: :class:`ReconnectPolicy`.
- :mod:`.reactor` and :mod:`.lease`: the one thread that reads every socket, and how a
  waiting thread borrows its loop.
- :mod:`.frames`: websocket frames (the bounded worker threads are :mod:`runtime_job._pool`).

Importing this package is cheap: the hub (and websocket-client) load on first use of a
name below, so :mod:`.reconnect` can be used without them.

Example::

    from runtime_job.api.stream import default_hub

    subscription = default_hub().subscribe(job_id=..., url=..., params=..., listener=...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hub import (
        DEFAULT_CLOSE_TIMEOUT,
        DEFAULT_CONNECT_THREADS,
        DEFAULT_DISPATCH_THREADS,
        DEFAULT_IDLE_SHUTDOWN,
        DEFAULT_PING_INTERVAL,
        DEFAULT_PING_TIMEOUT,
        SEQ_PROTOCOL,
        THREAD_PREFIX,
        StreamHub,
        default_hub,
    )
    from .reconnect import (
        DEFAULT_BACKOFF_INITIAL,
        DEFAULT_BACKOFF_MAX,
        DEFAULT_HEALTHY_AFTER,
        DEFAULT_RECONNECT_BUDGET,
        ReconnectPolicy,
    )
    from .subscription import StreamHandle

_WHERE = {
    "DEFAULT_BACKOFF_INITIAL": "reconnect",
    "DEFAULT_BACKOFF_MAX": "reconnect",
    "DEFAULT_CLOSE_TIMEOUT": "hub",
    "DEFAULT_CONNECT_THREADS": "hub",
    "DEFAULT_DISPATCH_THREADS": "hub",
    "DEFAULT_HEALTHY_AFTER": "reconnect",
    "DEFAULT_IDLE_SHUTDOWN": "hub",
    "DEFAULT_PING_INTERVAL": "hub",
    "DEFAULT_PING_TIMEOUT": "hub",
    "DEFAULT_RECONNECT_BUDGET": "reconnect",
    "ReconnectPolicy": "reconnect",
    "SEQ_PROTOCOL": "hub",
    "StreamHandle": "subscription",
    "StreamHub": "hub",
    "THREAD_PREFIX": "hub",
    "default_hub": "hub",
}


def __getattr__(name: str) -> Any:
    """Load the submodule that defines ``name`` on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_THREADS",
    "DEFAULT_DISPATCH_THREADS",
    "DEFAULT_HEALTHY_AFTER",
    "DEFAULT_IDLE_SHUTDOWN",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RECONNECT_BUDGET",
    "SEQ_PROTOCOL",
    "THREAD_PREFIX",
    "ReconnectPolicy",
    "StreamHandle",
    "StreamHub",
    "default_hub",
]
