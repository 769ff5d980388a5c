"""Our client against a server that does not stream: it falls back to polling at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests.adapters
from starlette.websockets import WebSocket

from runtime_job import JobStatus, RuntimeService
from runtime_job.server import LocalRuntimeServer
from runtime_job.server import app as server_app
from tests.support.server import local_server

from .conftest import TOKEN


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    with local_server(tmp_path_factory.mktemp("no-streams-e2e"), [TOKEN], streams=False) as srv:
        yield srv


@pytest.fixture
def quiet_service(quiet: LocalRuntimeServer) -> Iterator[RuntimeService]:
    with RuntimeService(channel="local", url=quiet.url, token=TOKEN) as svc:
        yield svc


class Counts:
    """Stream handshakes the server saw and ``GET /jobs/{id}`` requests the client sent."""

    def __init__(self) -> None:
        self.streams = 0
        self.status_gets = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    seen = Counts()
    refuse = server_app._no_stream

    async def counting_refuse(websocket: WebSocket, ctx: server_app.AppContext) -> None:
        seen.streams += 1
        await refuse(websocket, ctx)

    monkeypatch.setattr(server_app, "_no_stream", counting_refuse)
    send = requests.adapters.HTTPAdapter.send

    def counting_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        path = request.path_url.split("?")[0].rstrip("/").split("/")
        if request.method == "GET" and len(path) >= 2 and path[-2] == "jobs":
            seen.status_gets += 1
        return send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", counting_send)
    return seen


def test_result_polls_after_one_closed_stream(
    quiet_service: RuntimeService, counts: Counts, caplog: pytest.LogCaptureFixture
) -> None:
    job = quiet_service.run("sleep", {"seconds": 0.5})
    with caplog.at_level(logging.WARNING, logger="runtime_job"):
        assert job.result(timeout=60) == {"slept": 0.5}
    assert job.status() is JobStatus.DONE
    # One stream, closed at once and not retried; then polling every 10-20 ms over 0.5 s
    # (a client waiting on its stream would have asked once or twice).
    assert counts.streams == 1
    assert counts.status_gets >= 5
    assert [r.getMessage() for r in caplog.records] == []


def test_wait_for_final_state_then_result(quiet_service: RuntimeService, counts: Counts) -> None:
    job = quiet_service.run("hello-world", {"iterations": 2})
    job.wait_for_final_state(timeout=60)
    assert job.status() is JobStatus.DONE
    assert job.result() == "Hello, World!"
    assert counts.streams <= 1


def test_each_wait_opens_at_most_one_stream(quiet_service: RuntimeService, counts: Counts) -> None:
    jobs = [quiet_service.run("sleep", {"seconds": 0.2}) for _ in range(3)]
    assert [j.result(timeout=60) for j in jobs] == [{"slept": 0.2}] * 3
    assert counts.streams <= 3
