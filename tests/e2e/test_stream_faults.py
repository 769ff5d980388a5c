"""Job streaming under faults, against the real local server.

A loopback TCP proxy between client and server cuts connections mid-frame; the websocket
endpoint disappears; the interpreter exits mid-stream.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import JobStatus, RuntimeService
from runtime_job.api import stream as stream_module
from runtime_job.api.params import ClientParameters
from runtime_job.server import LocalRuntimeServer
from tests.stream.streamkit import LoopThread, TcpProxy

from .conftest import TOKEN


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, job_id: str, result: Any) -> None:
        with self.lock:
            self.seen.append(result)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


class _ProxiedStreams(ClientParameters):
    """Parameters whose websockets go through a proxy while REST calls go direct."""

    ws_port = 0

    def get_websocket_base_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"


def test_every_message_exactly_once_while_tcp_is_cut_mid_frame(
    server: LocalRuntimeServer, loop: LoopThread
) -> None:
    from runtime_job.api.client import RuntimeClient

    port = int(server.url.rsplit(":", 1)[1])
    rng = random.Random(7)
    proxy = TcpProxy(loop, ("127.0.0.1", port), cut_after=lambda: rng.randint(300, 2500)).start()
    params = _ProxiedStreams(channel="local", token=TOKEN, url=server.url)
    params.ws_port = proxy.port
    client = RuntimeClient(params)
    service = RuntimeService._with_client(client, params)
    try:
        recorders = []
        jobs = []
        for _ in range(3):
            recorder = Recorder()
            job = service.run(
                "stream",
                inputs={"count": 40, "interval": 0.005, "size": 20},
                callback=recorder,
            )
            recorders.append(recorder)
            jobs.append(job)
        for job, recorder in zip(jobs, recorders, strict=True):
            assert job.result(timeout=60) == {"count": 40}
            expected = [{"index": i, "data": [0.0] * 20} for i in range(40)]
            assert recorder.seen == [*expected, {"count": 40}]
        assert proxy.cuts >= 3
    finally:
        client.close()
        proxy.stop()


class _DeadStreams(ClientParameters):
    """Parameters whose websocket address has nothing listening."""

    def get_websocket_base_url(self) -> str:
        return "ws://127.0.0.1:9"


def test_websocket_gone_for_good_falls_back_to_polling(
    server: LocalRuntimeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub = stream_module.StreamHub(backoff_initial=0.01, backoff_max=0.05, reconnect_budget=0.3)
    monkeypatch.setattr(stream_module, "default_hub", lambda: hub)
    params = _DeadStreams(channel="local", token=TOKEN, url=server.url)
    from runtime_job.api.client import RuntimeClient

    client = RuntimeClient(params)
    service = RuntimeService._with_client(client, params)
    recorder = Recorder()
    try:
        with caplog.at_level(logging.INFO, logger="runtime_job"):
            job = service.run("stream", inputs={"count": 3, "interval": 0.3}, callback=recorder)
            assert job.result(timeout=30) == {"count": 3}
        assert job.status() is JobStatus.DONE
        assert recorder.seen == []
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert job.job_id() in warnings[0].getMessage()
    finally:
        hub.close()
        client.close()


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from runtime_job import RuntimeService
    env = os.environ
    service = RuntimeService(channel="local", url=env["RJ_URL"], token=env["RJ_TOKEN"])
    job = service.run("stream", inputs={"count": 1000, "interval": 0.05},
                      callback=lambda job_id, msg: None)
    if sys.argv[1] == "wait":
        try:
            job.result(timeout=0.5)
        except TimeoutError:
            pass
    else:
        time.sleep(0.5)
    print(time.time(), flush=True)
    """
)


@pytest.mark.parametrize("mode", ["stream", "wait"])
def test_interpreter_exit_during_a_stream_is_prompt_and_quiet(
    server: LocalRuntimeServer, mode: str
) -> None:
    env = {**os.environ, "RJ_URL": server.url, "RJ_TOKEN": TOKEN, "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    ended = time.time()
    assert proc.returncode == 0, err
    assert err == ""
    assert ended - float(out.strip()) < 2.0
