"""A stream costs the server bounded memory and no work per incoming frame (issue 18, item 4).

- interim results are read from storage in batches of at most ``STREAM_BATCH_ROWS`` rows
  (and ``STREAM_BATCH_BYTES``), each once the previous one is sent: a client that reads
  nothing makes the server stop reading, instead of holding the job's whole output;
- what a client sends on its stream costs no database read.

The reads are counted by wrapping the store's methods (the server runs in this process).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket

from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.server import LocalRuntimeServer
from runtime_job.server import config as server_config
from runtime_job.server.store import Store
from tests.support import wait_until
from tests.support.server import server_fixture

from .conftest import ALICE
from .edge_programs import PROGRAMS as EDGE_PROGRAMS

BATCH_ROWS = 4
COUNT = 300
KIB = 100  # per interim result: 30 MB in all, far more than the sockets' buffers


class StoreReads:
    """Counts the store's reads for one job, made by the server's stream handlers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.job_id = ""
        self.batches: list[tuple[int, int]] = []  # (rows, characters) of each batch
        self.job_reads = 0
        self._lock = threading.Lock()
        interim_batch, get_job = Store.interim_batch, Store.get_job

        def counted_batch(
            store: Store, job_id: str, after: int, max_rows: int, max_bytes: int
        ) -> list[tuple[int, str]]:
            batch = interim_batch(store, job_id, after, max_rows, max_bytes)
            if job_id == self.job_id:
                with self._lock:
                    self.batches.append((len(batch), sum(len(p) for _, p in batch)))
            return batch

        def counted_get_job(store: Store, job_id: str, user_id: str | None = None) -> Any:
            if job_id == self.job_id:
                with self._lock:
                    self.job_reads += 1
            return get_job(store, job_id, user_id)

        monkeypatch.setattr(Store, "interim_batch", counted_batch)
        monkeypatch.setattr(Store, "get_job", counted_get_job)

    @property
    def rows(self) -> int:
        with self._lock:
            return sum(rows for rows, _ in self.batches)

    @property
    def reads(self) -> int:
        with self._lock:
            return self.job_reads + len(self.batches)


server = server_fixture(
    scope="module", name="stream-memory", tokens=[ALICE], workers=1, programs=EDGE_PROGRAMS
)
"""A server of this module's own (one worker, the blob-stream program)."""


@pytest.fixture
def direct(server: LocalRuntimeServer) -> Iterator[RuntimeClient]:
    client = RuntimeClient(ClientParameters(channel="local", token=ALICE, url=server.url))
    yield client
    client.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> StoreReads:
    monkeypatch.setattr(server_config, "STREAM_BATCH_ROWS", BATCH_ROWS)
    return StoreReads(monkeypatch)


def _wait_final(direct: RuntimeClient, job_id: str, timeout: float = 60.0) -> str:
    status: list[str] = []

    def final() -> bool:
        status[:] = [direct.job_get(job_id, exclude_params=True)["state"]["status"]]
        return status[0] in ("COMPLETED", "FAILED", "CANCELLED")

    wait_until(final, timeout=timeout, what=f"job {job_id} to end")
    return status[0]


def _stable(value: Callable[[], int], checks: int = 5, timeout: float = 10.0) -> int:
    """``value()`` once it has not changed over ``checks`` looks 0.1 s apart (bounded)."""
    seen = [value()]
    pause = threading.Event()  # never set: an interruptible pause between looks
    end = time.monotonic() + timeout
    while len(seen) < checks or len(set(seen[-checks:])) > 1:
        assert time.monotonic() < end, seen[-checks:]
        pause.wait(0.1)
        seen.append(value())
    return seen[-1]


def _open(server: LocalRuntimeServer, job_id: str, small_buffer: bool) -> websocket.WebSocket:
    url = server.url.replace("http://", "ws://") + f"/stream/jobs/{job_id}?seq=1"
    # A small receive buffer (set before connecting) keeps the client's kernel from
    # taking the whole output off the server's hands.
    options = ((socket.SOL_SOCKET, socket.SO_RCVBUF, 65536),) if small_buffer else ()
    return websocket.create_connection(
        url,
        header=[f"X-Access-Token: {ALICE}"],
        timeout=30,
        sockopt=options,
        skip_utf8_validation=True,  # its pure-Python check reads ~1 MB/s
    )


def test_a_client_that_reads_nothing_holds_one_batch_not_the_output(
    server: LocalRuntimeServer, direct: RuntimeClient, reads: StoreReads
) -> None:
    job_id = direct.program_run(
        "blob-stream", None, {"count": COUNT, "kib": KIB}, None, None, None, None
    )["id"]
    reads.job_id = job_id
    assert _wait_final(direct, job_id) == "COMPLETED"
    ws = _open(server, job_id, small_buffer=True)
    try:
        ack = json.loads(ws.recv())
        assert ack["ack"] is True and ack["last_seq"] == COUNT + 1
        # The client reads nothing more: the server sends until the socket is full, then
        # stops reading storage.
        stalled = _stable(lambda: reads.rows)
        assert stalled < COUNT // 2, (stalled, reads.batches[:5])
        # Reading drains the socket, and the server reads the rest, batch by batch.
        seqs = []
        for _ in range(COUNT):
            header, _, payload = ws.recv().partition("\n")
            seqs.append(json.loads(header)["seq"])
            assert json.loads(payload)["index"] == len(seqs) - 1
        final = json.loads(ws.recv().partition("\n")[0])
        assert final["final"] is True and final["status"] == "COMPLETED"
    finally:
        ws.close()
    assert seqs == list(range(1, COUNT + 1))
    assert reads.rows == COUNT
    assert all(1 <= rows <= BATCH_ROWS for rows, _ in reads.batches)
    # No batch beyond its first row holds more than the byte budget.
    assert all(chars <= server_config.STREAM_BATCH_BYTES + KIB * 1100 for _, chars in reads.batches)


def test_frames_from_the_client_cost_no_database_read(
    server: LocalRuntimeServer, direct: RuntimeClient, reads: StoreReads
) -> None:
    job_id = direct.program_run("sleep", None, {"seconds": 60}, None, None, None, None)["id"]
    reads.job_id = job_id
    try:
        assert wait_until(
            lambda: direct.job_get(job_id, exclude_params=True)["state"]["status"] == "RUNNING",
            timeout=30,
        )
        ws = _open(server, job_id, small_buffer=False)
        try:
            assert json.loads(ws.recv())["ack"] is True
            for _ in range(3000):
                ws.send("x")
        finally:
            ws.close()
        # The handler has read every frame once it sees the close that follows them.
        hub = server._hub
        assert hub is not None
        assert wait_until(lambda: job_id not in hub._subscribers, timeout=30)
        assert reads.reads <= 5, reads.reads
    finally:
        direct.job_cancel(job_id)
