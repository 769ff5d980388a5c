"""A full disk pauses the server; it never stops it (issue 18 item 2).

A failed ``COMMIT`` used to leave the runner's transaction open and end the runner thread:
after space returned, new jobs stayed ``QUEUED`` and the running job ``RUNNING`` for ever,
and ``POST /jobs`` answered a bare 500. Now, while storage fails:

- ``POST /jobs`` answers 503 with a JSON body (``STORAGE_FULL``) and creates nothing;
- the runner holds the running job's output, reads no more of it and starts no job;

and once there is room again, without a restart, the running job completes with all its
output, new jobs run, and the database passes ``PRAGMA integrity_check``.

The disk is a real small filesystem when the test can mount one (a 4 MiB tmpfs: root and a
``mount`` that works), otherwise a storage layer whose ``COMMIT`` fails with SQLite's
``database or disk is full``. The second way always runs too; neither is ever skipped.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime_job.server.store import NewJob, StorageUnavailable, Store
from tests.support import wait_until

from .runnerkit import LogWatch, start_server, users

TMPFS_SIZE = "4m"


class FullDiskConnection(sqlite3.Connection):
    """A connection whose write transactions fail to commit while :attr:`full` is set."""

    full = threading.Event()

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        writing = self.in_transaction and getattr(self, "writing", False)
        if sql == "COMMIT" and writing and self.full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        if sql == "BEGIN IMMEDIATE":
            self.writing = True
        elif sql in ("COMMIT", "ROLLBACK", "BEGIN"):
            self.writing = False
        return super().execute(sql, *args)


@dataclass
class Disk:
    """Where the server keeps its data, and how the test fills and frees it."""

    kind: str
    data_dir: Path
    fill: Callable[[], None]
    free: Callable[[], None]


def _mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


def _unmount(where: Path) -> None:
    done = subprocess.run(["umount", str(where)], capture_output=True, timeout=10, check=False)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


def _fill_filesystem(filler: Path, db_path: Path) -> None:
    """Leave no free block: first make SQLite's write-ahead log empty, then fill the rest.

    SQLite reuses its WAL file from the start after a checkpoint, so a WAL that once grew
    would take small writes even on a full disk. Truncating it first makes the next write
    need new blocks, as on a disk that filled up while the server was busy.
    """
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        wait_until(
            lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0,
            what="a truncating checkpoint",
        )
    finally:
        conn.close()
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as err:
                    assert err.errno == errno.ENOSPC, err
                    break
    finally:
        os.close(fd)


@pytest.fixture(params=["filesystem", "injected"])
def disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Disk]:
    mount = tmp_path / "small-disk"
    if request.param == "filesystem" and _mount_tmpfs(mount):
        data_dir = mount / "data"
        filler = mount / "filler"
        try:
            yield Disk(
                "tmpfs",
                data_dir,
                fill=lambda: _fill_filesystem(filler, data_dir / "runtime.sqlite3"),
                free=lambda: filler.unlink(),
            )
        finally:
            _unmount(mount)
        return
    # No small filesystem here (not root, or mount refused): inject the failure instead.
    monkeypatch.setattr(Store, "connection_factory", FullDiskConnection)
    FullDiskConnection.full.clear()
    try:
        yield Disk(
            "injected",
            tmp_path / "data",
            fill=FullDiskConnection.full.set,
            free=FullDiskConnection.full.clear,
        )
    finally:
        FullDiskConnection.full.clear()


def _release(fifo: Path) -> None:
    """Write one line to the FIFO the running program reads (once it has opened it)."""

    def open_writer() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno == errno.ENXIO:  # the program has not opened it yet
                return None
            raise

    fd = wait_until(open_writer, what="the program opening its FIFO")
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def test_full_disk_answers_503_then_everything_goes_on(disk: Disk, tmp_path: Path) -> None:
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    server = start_server(disk.data_dir)
    try:
        alice, bob = users(server)
        with LogWatch() as log:
            running = alice.run("waits-then-talks", {"fifo": str(fifo), "kib": 64})
            alice.wait_status(running, ("RUNNING",))

            disk.fill()
            refused = bob.submit("ok")
            assert refused.status_code == 503, refused.text
            assert refused.headers["Content-Type"].startswith("application/json")
            error = refused.json()["errors"][0]
            assert error["code"] == "STORAGE_FULL"
            assert "storage is full" in error["message"]
            assert "database or disk is full" in error["message"]

            _release(fifo)  # the running job now has output the store cannot take
            log.seen("The server's storage is full")
            assert alice.status(running) == "RUNNING"
            assert bob.http.get(server.url + "/jobs", timeout=10).json()["count"] == 0

            disk.free()
            after = bob.run("ok")  # no restart: the next submission is accepted and runs
            assert bob.wait_final(after)["state"]["status"] == "COMPLETED"
            done = alice.wait_final(running)
            assert done["state"] == {"status": "COMPLETED", "reason": None}, done
            assert alice.text(running, "results") == '{"kib": 64}'
            assert alice.text(running, "logs") == ("y" * 1023 + "\n") * 64
            interim = alice.text(running, "interim_results")
            assert interim == '[{"blob": "' + "z" * 64 * 1024 + '"}]'
            log.seen("The server's storage works again")
            full_messages = [m for m in log.messages() if "storage is full" in m]
            assert len(full_messages) == 1, full_messages  # one line, not one per retry
    finally:
        server.stop()
    conn = sqlite3.connect(disk.data_dir / "runtime.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT program_id, status FROM jobs ORDER BY num").fetchall()
        assert rows == [("waits-then-talks", "COMPLETED"), ("ok", "COMPLETED")]
    finally:
        conn.close()


def test_a_failed_commit_leaves_the_store_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store rolls back a failed ``COMMIT`` (else every later ``BEGIN`` fails)."""
    monkeypatch.setattr(Store, "connection_factory", FullDiskConnection)
    store = Store(tmp_path / "db.sqlite3")
    try:
        FullDiskConnection.full.set()
        job = NewJob(id="j1", user_id="u", program_id="p", backend="b", params="{}")
        with pytest.raises(StorageUnavailable, match="storage is full") as caught:
            store.create_job(job, 1.0, None)
        assert caught.value.full
        assert store.get_job("j1") is None
        FullDiskConnection.full.clear()
        store.create_job(job, 1.0, None)
        assert store.get_job("j1") is not None
    finally:
        FullDiskConnection.full.clear()
        store.close()


def test_storage_failing_as_a_job_starts_holds_it_and_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job the runner cannot mark running waits in line; running jobs are still served.

    Alice's job cannot start (storage full), then she cancels it: nothing is held or queued
    any more, and bob's running job must still have its output read and stored.
    """
    full = threading.Event()
    original = Store.mark_running

    def mark_running(self: Store, job_id: str, now: float, *args: Any) -> bool:
        if full.is_set():
            raise StorageUnavailable(sqlite3.OperationalError("database or disk is full"))
        return original(self, job_id, now, *args)

    monkeypatch.setattr(Store, "mark_running", mark_running)
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    server = start_server(tmp_path / "data")
    try:
        alice, bob = users(server)
        with LogWatch() as log:
            running = bob.run("waits-then-talks", {"fifo": str(fifo), "kib": 1})
            bob.wait_status(running, ("RUNNING",))
            full.set()
            waiting = alice.run("ok")
            log.seen("The server's storage is full")
            assert alice.status(waiting) == "QUEUED"
            cancelled = alice.http.post(f"{server.url}/jobs/{waiting}/cancel", timeout=10)
            assert cancelled.status_code == 204
            full.clear()
            _release(fifo)
            assert bob.wait_final(running)["state"]["status"] == "COMPLETED"
            assert bob.text(running, "results") == '{"kib": 1}'
            assert alice.wait_final(alice.run("ok"))["state"]["status"] == "COMPLETED"
            assert alice.status(waiting) == "CANCELLED"
    finally:
        server.stop()


def test_stopping_while_storage_fails_loses_only_the_held_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops promptly; at the next start the job it could not finish is failed."""
    monkeypatch.setattr(Store, "connection_factory", FullDiskConnection)
    FullDiskConnection.full.clear()
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    data = tmp_path / "data"
    server = start_server(data)
    try:
        alice, _ = users(server)
        with LogWatch() as log:
            running = alice.run("waits-then-talks", {"fifo": str(fifo), "kib": 4})
            alice.wait_status(running, ("RUNNING",))
            FullDiskConnection.full.set()
            _release(fifo)
            log.seen("The server's storage is full")
            started = time.monotonic()
            server.stop(timeout=10)
            assert time.monotonic() - started < 5
            log.seen("held write(s) of running jobs are lost")
    finally:
        FullDiskConnection.full.clear()
        server.stop()
    server = start_server(data)
    try:
        alice, bob = users(server)
        job = alice.job(running)
        assert job["state"] == {"status": "FAILED", "reason": "server restarted"}
        assert bob.wait_final(bob.run("ok"))["state"]["status"] == "COMPLETED"
    finally:
        server.stop()
    conn = sqlite3.connect(data / "runtime.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
