"""A server that starts each job when its client listens (``hold_for_streams``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE, Api, serve_command, served, ws_open, ws_read_all
from tests.support.server import local_server

A = {"X-Access-Token": ALICE}


@pytest.fixture(scope="module")
def holding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    with local_server(tmp_path_factory.mktemp("hold"), [ALICE], hold_for_streams=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(holding: LocalRuntimeServer) -> Iterator[Api]:
    client = Api(holding.url, ALICE)
    yield client
    client.close()


def _status(api: Api, job_id: str) -> str:
    return str(api.job(job_id)["state"]["status"])


def test_a_job_waits_for_its_stream_and_its_client_gets_every_message(
    api: Api, holding: LocalRuntimeServer
) -> None:
    held = api.submit("hello-world", {"iterations": 3})
    other = api.submit("hello-world", {"iterations": 1})
    assert _status(api, held) == "QUEUED" and _status(api, other) == "QUEUED"
    ws = ws_open(holding.url, held, A)  # the plain protocol: live messages only
    frames, code = ws_read_all(ws)
    assert frames == [
        "ACK",
        '{"iteration": 1}',
        '{"iteration": 2}',
        '{"iteration": 3}',
        '"Hello, World!"',
    ]
    assert code == 1000
    # A worker was idle all along: without the hold, ``other`` would have run by now.
    assert _status(api, other) == "QUEUED"  # still waiting for its own client


def test_a_held_job_runs_anyway_after_the_hold(tmp_path: Path) -> None:
    with local_server(tmp_path / "data", [ALICE], workers=1, hold_for_streams=0.3) as srv:
        client = Api(srv.url, ALICE)
        try:
            job_id = client.submit("hello-world", {"iterations": 0})
            assert client.wait_final(job_id)["state"]["status"] == "COMPLETED"
        finally:
            client.close()


def test_a_held_job_can_be_cancelled(api: Api) -> None:
    job_id = api.submit("hello-world")
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 204
    assert _status(api, job_id) == "CANCELLED"


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_serve_refuses_a_bad_hold(tmp_path: Path, value: str) -> None:
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--hold-for-streams", value]
    done = subprocess.run([*serve_command(), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--hold-for-streams" in done.stderr


def test_serve_hold_flag_holds(tmp_path: Path) -> None:
    with served(tmp_path / "data", "--hold-for-streams", "60") as client:
        job_id = client.submit("hello-world", {"iterations": 0})
        later = client.submit("hello-world", {"iterations": 0})
        frames, code = ws_read_all(ws_open(client.base, later, A))
        assert (frames, code) == (["ACK", '"Hello, World!"'], 1000)
        # The one worker ran the later job, whose client listened: the first one is held
        # (without the hold it would have run first, and be done).
        assert _status(client, job_id) == "QUEUED"
        frames, code = ws_read_all(ws_open(client.base, job_id, A))
        assert (frames, code) == (["ACK", '"Hello, World!"'], 1000)
