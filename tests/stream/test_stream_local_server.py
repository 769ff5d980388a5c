"""The hub against our own local runtime server (``runtime_job.server.LocalRuntimeServer``)."""

from __future__ import annotations

import importlib.util
import json
import random
import threading

import pytest
import requests

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd
from runtime_job.api.stream import StreamHub
from runtime_job.exceptions import WebsocketAuthenticationError, WebsocketError
from runtime_job.server import LocalRuntimeServer
from tests.support.server import STREAM_HUB

from .streamkit import LoopThread, Recorder, TcpProxy

TOKEN = STREAM_HUB

pytestmark = pytest.mark.skipif(
    not any(importlib.util.find_spec(m) for m in ("websockets", "wsproto")),
    reason="the local server needs websockets or wsproto to serve websockets",
)


@pytest.fixture
def local_server(session_server: LocalRuntimeServer) -> LocalRuntimeServer:
    """The session's default server (``server`` here is the scripted websocket server)."""
    return session_server


def submit(server: object, program: str, params: dict[str, object]) -> str:
    response = requests.post(
        f"{server.url}/jobs",  # type: ignore[attr-defined]
        data=json.dumps({"program_id": program, "params": params}),
        headers={"X-Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def client_params(server: object, token: str = TOKEN) -> ClientParameters:
    return ClientParameters(channel="local", token=token, url=server.url)  # type: ignore[attr-defined]


def stream_url(params: ClientParameters, job_id: str, base: str | None = None) -> str:
    return f"{base or params.get_websocket_base_url()}/stream/jobs/{job_id}"


def test_live_job_streams_every_interim_result_then_the_final_one(
    local_server: object, hub: StreamHub
) -> None:
    params = client_params(local_server)
    job_id = submit(local_server, "stream", {"count": 20, "interval": 0.01})
    rec = Recorder()
    hub.subscribe(job_id=job_id, url=stream_url(params, job_id), params=params, listener=rec)
    rec.wait(30)
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert [f.seq for f in rec.frames] == list(range(1, 22))
    assert [json.loads(f.payload)["index"] for f in rec.frames[:-1]] == list(range(20))
    final = rec.frames[-1]
    assert final.final and final.status == "COMPLETED"
    assert json.loads(final.payload) == {"count": 20}

    # A finished job replays its stored frames, from any resume point.
    again = Recorder()
    hub.subscribe(
        job_id=job_id, url=stream_url(params, job_id), params=params, listener=again, after=18
    )
    again.wait(10)
    assert [f.seq for f in again.frames] == [19, 20, 21]


def test_exactly_once_through_cuts_against_the_local_server(
    local_server: object, loop_thread: LoopThread, hub: StreamHub
) -> None:
    params = client_params(local_server)
    port = int(local_server.url.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    rng = random.Random(5)
    lock = threading.Lock()
    cuts = [rng.randint(30, 1500) for _ in range(25)]

    def cut_after() -> int | None:
        with lock:
            return cuts.pop(0) if cuts else None

    proxy = TcpProxy(loop_thread, target=("127.0.0.1", port), cut_after=cut_after).start()
    try:
        job_id = submit(local_server, "stream", {"count": 60, "interval": 0.005, "size": 8})
        rec = Recorder()
        url = stream_url(params, job_id, base=f"ws://127.0.0.1:{proxy.port}")
        hub.subscribe(job_id=job_id, url=url, params=params, listener=rec)
        rec.wait(30)
    finally:
        proxy.stop()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert [f.seq for f in rec.frames] == list(range(1, 62))
    assert [json.loads(f.payload)["index"] for f in rec.frames[:-1]] == list(range(60))
    assert proxy.cuts >= 5


def test_failed_job_ends_with_an_empty_final_frame(local_server: object, hub: StreamHub) -> None:
    params = client_params(local_server)
    job_id = submit(local_server, "fail", {"message": "nope"})
    rec = Recorder()
    hub.subscribe(job_id=job_id, url=stream_url(params, job_id), params=params, listener=rec)
    rec.wait(30)
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert rec.frames[-1].final and rec.frames[-1].status == "FAILED"
    assert rec.frames[-1].payload == ""


def test_refusals_from_the_local_server(local_server: object, hub: StreamHub) -> None:
    params = client_params(local_server)
    job_id = submit(local_server, "hello-world", {"iterations": 1})
    wrong = client_params(local_server, token="not-the-token")
    rec = Recorder()
    hub.subscribe(job_id=job_id, url=stream_url(wrong, job_id), params=wrong, listener=rec)
    rec.wait(10)
    assert rec.ends[0][0] is StreamEnd.FAILED
    assert isinstance(rec.ends[0][1], WebsocketAuthenticationError)
    assert "401" in str(rec.ends[0][1]) and "not-the-token" not in str(rec.ends[0][1])

    missing = Recorder()
    unknown = "c" + "0" * 19
    hub.subscribe(job_id=unknown, url=stream_url(params, unknown), params=params, listener=missing)
    missing.wait(10)
    error = missing.ends[0][1]
    assert missing.ends[0][0] is StreamEnd.FAILED
    assert type(error) is WebsocketError and "404" in str(error)
