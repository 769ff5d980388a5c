"""The local runtime server: the runtime REST and websocket API on this machine.

Jobs live in SQLite, programs run in a pool of worker processes, and the unmodified
reference client (or ours) talks to it exactly as to the real service.

- :class:`LocalRuntimeServer`: an embedded server (uvicorn in a background thread of this
  process), a context manager;
- :func:`ensure_local_server`: join the server of a data directory, or start one in the
  background; what ``RuntimeService(channel="local")`` uses;
- :class:`ProgramRegistry`: program ids and the code they run.

Example::

    from runtime_job.server import LocalRuntimeServer

    with LocalRuntimeServer(data_dir="/tmp/rj", programs={"mine": "pkg.mod:main"}) as server:
        print(server.url, server.token)

Importing this package is cheap: the web framework is imported only when an embedded
server is created, and the launcher (subprocesses, HTTP probes) only when it is used, so a
worker process, which needs only the programs, starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .paths import DataDir, default_data_dir
from .programs import LocalBackend, ProgramRegistry, UserMessenger

if TYPE_CHECKING:
    from .launcher import ensure_local_server, join_local_server, stop_local_servers
    from .local import DataDirInUse, LocalRuntimeServer

_LAZY = {
    "LocalRuntimeServer": ".local",
    "DataDirInUse": ".local",
    "ensure_local_server": ".launcher",
    "join_local_server": ".launcher",
    "stop_local_servers": ".launcher",
}
"""Public names imported on first use, and their modules."""

__all__ = [
    "DataDir",
    "DataDirInUse",
    "LocalBackend",
    "LocalRuntimeServer",
    "ProgramRegistry",
    "UserMessenger",
    "default_data_dir",
    "ensure_local_server",
    "join_local_server",
    "stop_local_servers",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
