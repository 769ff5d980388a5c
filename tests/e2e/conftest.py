"""The end-to-end tests of the client library run on the session's local server.

The server is the suite's default one (``server`` in ``tests/conftest.py``), 2 warm workers;
these tests act as the user :data:`TOKEN`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer
from tests.support.server import E2E, leftovers_cancelled

TOKEN = E2E
"""The e2e tests' user on the default server."""


@pytest.fixture
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    """A service on the ``local`` channel, joined to the session's server."""
    with RuntimeService(channel="local", url=server.url, token=TOKEN) as svc:
        yield svc


_cancel_leftovers = leftovers_cancelled(TOKEN)
"""This package's unfinished jobs are cancelled at its end (the server is shared)."""
