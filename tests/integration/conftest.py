"""Fixtures of the integration tests: one real local server for the session.

The server runs in this process (uvicorn in a thread, programs in worker processes), binds
127.0.0.1 on a free port, and is stopped at the end of the session. Users: ``alice`` and
``bob`` (isolation), ``carol`` (listings, so counts are exact).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rj_test_programs
from rj_helpers import Api

from runtime_job.server import LocalRuntimeServer

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"
CAROL = "carol-token-0123456789"

TEST_PROGRAMS = {
    "printer": "rj_test_programs:printer",
    "final-publisher": rj_test_programs.final_publisher,
    "crasher": "rj_test_programs:crasher",
    "backend-name": rj_test_programs.backend_name,
    "slow-stream": "rj_test_programs:slow_stream",
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
