"""The suite-wide fixtures of the support kit (a pytest plugin of ``tests/conftest.py``).

- ``server``: the session's default local server (:mod:`tests.support.server`), started on
  first use; a package that needs another one overrides ``server`` in its conftest.
- ``fake_clock``: :class:`~tests.support.clock.FakeClock` as ``runtime_job.timing.clock``.
"""

from __future__ import annotations

from .clock import fake_clock
from .server import server_fixture

server = server_fixture(scope="session", name="server-data")

__all__ = ["fake_clock", "server"]
