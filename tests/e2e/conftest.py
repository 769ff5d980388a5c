"""One real local server for the end-to-end tests of the client library."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer

TOKEN = "e2e-token-0123456789"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    """A server on 127.0.0.1 and a free port, with 2 warm workers."""
    with LocalRuntimeServer(
        data_dir=tmp_path_factory.mktemp("e2e-data"), tokens=[TOKEN], workers=2
    ) as srv:
        yield srv


@pytest.fixture
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    """A service on the ``local`` channel, joined to the session's server."""
    with RuntimeService(channel="local", url=server.url, token=TOKEN) as svc:
        yield svc
