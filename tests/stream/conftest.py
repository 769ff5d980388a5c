"""Fixtures for the stream hub tests: a loop thread, the scripted server, a fast hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.stream import StreamHub
from tests.support.server import STREAM_HUB, leftovers_cancelled
from tests.tlscert import make_cert

from .streamkit import LoopThread, WsServer, hub_quiet


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture()
def server(loop_thread: LoopThread) -> Iterator[WsServer]:
    srv = WsServer(loop_thread).start()
    yield srv
    srv.stop()


@pytest.fixture()
def params(server: WsServer) -> ClientParameters:
    return ClientParameters(channel="local", token=server.token, url="http://127.0.0.1")


@pytest.fixture()
def hub() -> Iterator[StreamHub]:
    """A hub with short timers, so failure paths take milliseconds."""
    h = StreamHub(
        backoff_initial=0.02,
        backoff_max=0.2,
        reconnect_budget=3.0,
        healthy_after=0.5,
        ping_interval=5.0,
        ping_timeout=2.0,
        idle_shutdown=0.3,
        close_timeout=3.0,
    )
    yield h
    h.close()
    hub_quiet(3.0)  # nothing the hub started may outlive it


_cancel_leftovers = leftovers_cancelled(STREAM_HUB)
"""Jobs left running on the session server by test_stream_local_server are cancelled."""


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(str(tmp_path_factory.mktemp("tls")))
