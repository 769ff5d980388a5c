"""Fixtures of the integration tests: clients of the session's local server.

The server is the suite's default one (``server`` in ``tests/conftest.py``, see
:mod:`tests.support.server`): uvicorn in a thread of this process, programs in 2 worker
processes, 127.0.0.1 on a free port. Users: ``alice`` and ``bob`` (isolation), ``carol``
(listings, so counts are exact).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE, BOB, CAROL, Api
from tests.support.server import leftovers_cancelled


@pytest.fixture(scope="session")
def alice(server: LocalRuntimeServer) -> Iterator[Api]:
    api = Api(server.url, ALICE)
    yield api
    api.close()


@pytest.fixture(scope="session")
def bob(server: LocalRuntimeServer) -> Iterator[Api]:
    api = Api(server.url, BOB)
    yield api
    api.close()


@pytest.fixture(scope="session")
def carol(server: LocalRuntimeServer) -> Iterator[Api]:
    api = Api(server.url, CAROL)
    yield api
    api.close()


@pytest.fixture
def anon(server: LocalRuntimeServer) -> Iterator[Api]:
    """A client without a token."""
    api = Api(server.url, "")
    del api.session.headers["X-Access-Token"]
    yield api
    api.close()


_cancel_leftovers = leftovers_cancelled(ALICE, BOB, CAROL)
"""This package's unfinished jobs are cancelled at its end (the server is shared)."""
