"""Fixtures of the reliability tests: a real local server, a fault proxy in front of it.

- ``server``: one embedded :class:`LocalRuntimeServer` for the package (users alice and bob,
  the programs of :mod:`tests.reliability.programs`, 3 warm workers), built by the suite's
  factory (:func:`tests.support.server.server_fixture`).
- ``proxy``: a fresh :class:`FaultProxy` in front of it for each test, scripted by the test.
- ``connect``: builds a ``RuntimeService`` through any URL (the proxy), closed at the end.
- ``sleeps``: the transport's retry sleeps, recorded and shortened (never longer than 10 ms).
- ``fast_hub``: the process's stream hub replaced by one with short timers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job.api import stream as stream_module
from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.stream import StreamHub
from runtime_job.exceptions import RequestsApiError
from runtime_job.server import LocalRuntimeServer
from runtime_job.timing import clock
from tests.stream.streamkit import LoopThread
from tests.support import wait_until
from tests.support.faultproxy import FaultProxy
from tests.support.server import server_fixture

from .programs import PROGRAMS

ALICE = "alice-reliability-token-7f3a9c"
BOB = "bob-reliability-token-51d2e8"

SERVER_THREADS = ("runtime-job-server", "runtime-job-runner")
"""Threads of the embedded server (not the client's)."""

__all__ = ["ALICE", "BOB", "SERVER_THREADS", "Collector", "wait_until"]


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


server = server_fixture(
    scope="session", name="reliability-data", tokens=[ALICE, BOB], workers=3, programs=PROGRAMS
)
"""This package's own server: 3 warm workers, its users and programs, and the load of its
fault scenarios (50 streaming jobs, cut connections) kept off the default server."""


def server_port(server: LocalRuntimeServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture
def proxy(server: LocalRuntimeServer, loop_thread: LoopThread) -> Iterator[FaultProxy]:
    fp = FaultProxy(loop_thread, ("127.0.0.1", server_port(server))).start()
    yield fp
    fp.stop()


@pytest.fixture
def connect() -> Iterator[Callable[..., RuntimeService]]:
    """``connect(url, token=ALICE, **service_kwargs)``: a service, closed after the test."""
    opened: list[RuntimeService] = []

    def _connect(url: str, token: str = ALICE, **kwargs: Any) -> RuntimeService:
        service = RuntimeService(channel="local", url=url, token=token, **kwargs)
        opened.append(service)
        return service

    yield _connect
    for service in opened:
        service.close()


@pytest.fixture
def direct(server: LocalRuntimeServer) -> Iterator[RuntimeClient]:
    """A client straight to the server (no proxy), as alice: the server's view of things."""
    client = RuntimeClient(ClientParameters(channel="local", token=ALICE, url=server.url))
    yield client
    client.close()


@pytest.fixture
def cancel_leftovers(direct: RuntimeClient) -> Iterator[None]:
    """Cancel alice's jobs still queued or running after the test (frees the workers)."""
    yield
    for entry in direct.jobs_get(limit=100, pending=True)["jobs"]:
        with contextlib.suppress(RequestsApiError):
            direct.job_cancel(entry["id"])


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry wait of the transport, in order; each really sleeps at most 10 ms."""
    recorded: list[float] = []

    def _sleep(seconds: float) -> None:
        recorded.append(seconds)
        if seconds > 0:
            time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(clock, "sleep", _sleep)
    return recorded


def make_hub(**overrides: float) -> StreamHub:
    settings: dict[str, Any] = {
        "backoff_initial": 0.02,
        "backoff_max": 0.2,
        "reconnect_budget": 5.0,
        "healthy_after": 0.5,
        "ping_interval": 5.0,
        "ping_timeout": 2.0,
        "idle_shutdown": 0.3,
        "close_timeout": 3.0,
    }
    settings.update(overrides)
    return StreamHub(**settings)


@pytest.fixture
def fast_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., StreamHub]]:
    """``fast_hub(**settings)`` installs a hub with short timers as the process's hub."""
    hubs: list[StreamHub] = []

    def _install(**overrides: float) -> StreamHub:
        hub = make_hub(**overrides)
        hubs.append(hub)
        monkeypatch.setattr(stream_module, "default_hub", lambda: hub)
        return hub

    yield _install
    for hub in hubs:
        hub.close()


class Collector:
    """A result callback that records what it gets (thread-safe)."""

    def __init__(self) -> None:
        import threading

        self.seen: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, job_id: str, result: Any) -> None:
        with self._lock:
            self.seen.append(result)
