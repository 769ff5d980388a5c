"""The suite-wide fixtures of the support kit (a pytest plugin of ``tests/conftest.py``).

- ``server``: the session's default local server (:mod:`tests.support.server`), started on
  first use; a package that needs another one overrides ``server`` in its conftest.
- ``session_server``: the same server under a name no package overrides, for a test in a
  package whose ``server`` is something else (``tests/stream``: a scripted websocket server).
- ``fake_clock``: :class:`~tests.support.clock.FakeClock` as ``runtime_job.timing.clock``.
"""

from __future__ import annotations

import pytest

from runtime_job.server import LocalRuntimeServer

from .clock import fake_clock
from .server import server_fixture

session_server = server_fixture(scope="session", name="server-data")


@pytest.fixture(scope="session")
def server(session_server: LocalRuntimeServer) -> LocalRuntimeServer:
    """The session's default local server (a package may override this name)."""
    return session_server


__all__ = ["fake_clock", "server", "session_server"]
