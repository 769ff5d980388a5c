"""A server started without streams (``streams=False``, ``runtime-job serve --no-streams``).

Every ``/stream/jobs/{id}`` websocket is accepted and closed normally at once, with nothing
sent; REST is unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from runtime_job.server import LocalRuntimeServer
from runtime_job.server.app import STREAMS_OFF_REASON
from tests.integration.helpers import (
    ALICE,
    Api,
    served,
    ws_close,
    ws_open,
    ws_refused,
    ws_stream,
)
from tests.support.server import local_server

A = {"X-Access-Token": ALICE}


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    with local_server(tmp_path_factory.mktemp("no-streams"), [ALICE], 1, streams=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(quiet: LocalRuntimeServer) -> Iterator[Api]:
    client = Api(quiet.url, ALICE)
    yield client
    client.close()


def close_frame(ws: websocket.WebSocket) -> tuple[list[bytes], int | None, str]:
    """Frames before the server's close, its code and its reason."""
    frames: list[bytes] = []
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                return frames, code, data[2:].decode("utf-8")
            frames.append(data)
    finally:
        ws_close(ws)


@pytest.mark.parametrize("query", ["", "seq=1&after=0"], ids=["plain", "sequenced"])
def test_a_stream_is_closed_normally_with_nothing_sent(
    api: Api, quiet: LocalRuntimeServer, query: str
) -> None:
    job_id = api.submit("hello-world", {"iterations": 2})
    frames, code, reason = close_frame(ws_open(quiet.url, job_id, A, query))
    assert (frames, code, reason) == ([], 1000, STREAMS_OFF_REASON)
    api.wait_final(job_id)
    # Not even a finished job's result comes through the stream.
    assert ws_stream(quiet.url, job_id, A, query) == ([], 1000)


def test_a_stream_without_a_valid_token_is_refused(api: Api, quiet: LocalRuntimeServer) -> None:
    job_id = api.submit("hello-world")
    assert ws_refused(quiet.url, job_id, {"X-Access-Token": "wrong"}) == 401
    assert ws_refused(quiet.url, job_id, {}) == 401


def test_rest_is_unchanged(api: Api) -> None:
    job_id = api.submit("hello-world", {"iterations": 2})
    job = api.wait_final(job_id)
    assert job["state"]["status"] == "COMPLETED"
    assert api.get(f"/jobs/{job_id}/results").text == '"Hello, World!"'
    assert api.get(f"/jobs/{job_id}/interim_results").json() == [
        {"iteration": 1},
        {"iteration": 2},
    ]


def test_the_default_server_streams(server: LocalRuntimeServer, alice: Api) -> None:
    job_id = alice.submit("hello-world", {"iterations": 1})
    alice.wait_final(job_id)
    assert ws_stream(server.url, job_id, A) == (
        ["ACK", '{"iteration": 1}', '"Hello, World!"'],
        1000,
    )


@pytest.mark.parametrize("flag", [True, False], ids=["no-streams", "default"])
def test_serve_no_streams_flag(tmp_path: Path, flag: bool) -> None:
    with served(tmp_path / "data", *(["--no-streams"] if flag else [])) as client:
        job_id = client.submit("hello-world", {"iterations": 0})
        client.wait_final(job_id)
        frames, code = ws_stream(client.base, job_id, A)
    assert code == 1000
    assert frames == ([] if flag else ["ACK", '"Hello, World!"'])
