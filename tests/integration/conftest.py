"""Fixtures of the integration tests: one real local server for the session.

The server runs in this process (uvicorn in a thread, programs in worker processes), binds
127.0.0.1 on a free port, and is stopped at the end of the session. Users: ``alice`` and
``bob`` (isolation), ``carol`` (listings, so counts are exact).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime_job.server import LocalRuntimeServer
from tests.integration import programs as test_programs
from tests.integration.helpers import ALICE, BOB, CAROL, Api

TEST_PROGRAMS = {
    "printer": "tests.integration.programs:printer",
    "final-publisher": test_programs.final_publisher,
    "crasher": "tests.integration.programs:crasher",
    "backend-name": test_programs.backend_name,
    "slow-stream": "tests.integration.programs:slow_stream",
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    """The session's server (2 workers)."""
    data_dir = tmp_path_factory.mktemp("server-data")
    with LocalRuntimeServer(
        data_dir=data_dir, tokens=[ALICE, BOB, CAROL], workers=2, programs=TEST_PROGRAMS
    ) as srv:
        yield srv


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
