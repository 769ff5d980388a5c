"""A server that does not replay: ``LocalRuntimeServer(stream_replay=False)``.

It plays the hosted service, whose streams never replay: a stream, plain or sequenced, gets
only the interim results published after its handshake, then the job's end (issue 18 item
16 is measured against it in ``make bench``). The job here publishes once, then waits for a
gate file that the test creates once its stream is open, then publishes twice more: what
was published before the handshake is known, without a sleep.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE as HELPERS_ALICE
from tests.integration.helpers import served, ws_open, ws_read_all
from tests.support import wait_until
from tests.support.server import server_fixture

from .conftest import ALICE

GATE_WAIT = 30.0
"""Longest a gated job waits for its gate before it publishes the rest anyway."""


def gated(backend: Any, user_messenger: Any, gate: str = "", after: int = 2) -> dict[str, int]:
    """Publish ``{"k": 0}``, wait (bounded) for the file ``gate``, publish ``k`` = 1..after."""
    user_messenger.publish({"k": 0})
    with contextlib.suppress(AssertionError):  # no gate in time: publish the rest anyway
        wait_until(Path(gate).exists, GATE_WAIT, what=f"the gate {gate}")
    for k in range(1, int(after) + 1):
        user_messenger.publish({"k": k})
    return {"published": int(after) + 1}


server = server_fixture(
    scope="module",
    name="live-only",
    tokens=[ALICE],
    workers=1,
    programs={"gated": f"{__name__}:gated"},
    stream_replay=False,
)
"""A server of this module's own that does not replay (one worker)."""


@pytest.fixture
def direct(server: LocalRuntimeServer) -> Iterator[RuntimeClient]:
    client = RuntimeClient(ClientParameters(channel="local", token=ALICE, url=server.url))
    yield client
    client.close()


def _submit_and_wait_first(direct: RuntimeClient, gate: Path) -> str:
    """A gated job whose first interim result is stored (published before any stream)."""
    job_id = str(
        direct.program_run("gated", None, {"gate": str(gate)}, None, None, None, None)["id"]
    )
    assert wait_until(
        lambda: len(json.loads(direct.job_interim_results(job_id) or "[]")) >= 1, timeout=30
    ), "the job did not publish its first interim result"
    return job_id


@contextlib.contextmanager
def _open(
    server: LocalRuntimeServer, job_id: str, query: str = ""
) -> Iterator[websocket.WebSocket]:
    """The job's stream, its socket closed at the end (also after the server closed it)."""
    url = server.url.replace("http://", "ws://") + f"/stream/jobs/{job_id}{query}"
    ws = websocket.create_connection(url, header=[f"X-Access-Token: {ALICE}"], timeout=30)
    try:
        yield ws
    finally:
        ws.close()
        ws.shutdown()  # type: ignore[no-untyped-call]


def test_a_plain_stream_gets_only_what_is_published_after_it_connected(
    server: LocalRuntimeServer, direct: RuntimeClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = _submit_and_wait_first(direct, gate)
    with _open(server, job_id) as ws:
        assert ws.recv() == "ACK"
        gate.touch()
        texts = [ws.recv(), ws.recv(), ws.recv()]
        assert ws.recv() == ""  # closed: the job ended
    # {"k": 0} was published before the handshake: not sent. The final result is.
    assert [json.loads(t) for t in texts] == [{"k": 1}, {"k": 2}, {"published": 3}]


def test_a_sequenced_stream_starts_at_the_newest_frame_whatever_after_says(
    server: LocalRuntimeServer, direct: RuntimeClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = _submit_and_wait_first(direct, gate)
    with _open(server, job_id, "?seq=1&after=0") as ws:
        ack = json.loads(ws.recv())
        gate.touch()
        frames = [str(ws.recv()).partition("\n") for _ in range(3)]
    assert ack["ack"] is True and ack["last_seq"] == 1
    headers = [json.loads(head) for head, _, _ in frames]
    assert [h["seq"] for h in headers] == [2, 3, 4]
    assert [h["final"] for h in headers] == [False, False, True]
    assert json.loads(frames[0][2]) == {"k": 1}
    assert headers[2]["status"] == "COMPLETED"


def test_a_stream_opened_after_the_end_gets_only_the_end(
    server: LocalRuntimeServer, direct: RuntimeClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()  # the job runs through
    job_id = str(
        direct.program_run("gated", None, {"gate": str(gate)}, None, None, None, None)["id"]
    )
    assert wait_until(
        lambda: direct.job_get(job_id, exclude_params=True)["state"]["status"] == "COMPLETED",
        timeout=30,
    )
    with _open(server, job_id, "?seq=1&after=0") as ws:
        ack = json.loads(ws.recv())
        head, _, payload = str(ws.recv()).partition("\n")
    assert ack["last_seq"] == 4
    assert json.loads(head)["seq"] == 4 and json.loads(head)["final"] is True
    assert json.loads(payload) == {"published": 3}


def test_serve_no_stream_replay_flag(tmp_path: Path) -> None:
    """``runtime-job serve --no-stream-replay``: a finished job's stream gets only its end."""
    headers = {"X-Access-Token": HELPERS_ALICE}
    with served(tmp_path / "data", "--no-stream-replay") as client:
        job_id = client.submit("hello-world", {"iterations": 2})
        client.wait_final(job_id)
        frames, code = ws_read_all(ws_open(client.base, job_id, headers))
    # With replay, the two {"iteration": i} would come first.
    assert (frames, code) == (["ACK", '"Hello, World!"'], 1000)
