"""The data directory and the database are private whatever the umask (issue 18 item 7).

With a data directory that already existed as ``0755`` and the common umask ``0o022``, the
SQLite files used to be created ``0644``: any local user could read every job. Now the
directory is made ``0700`` (with a warning when it was wider) and the database, its
``-wal`` and ``-shm`` files and the token file are ``0600``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job.server.paths import DataDir

from .runnerkit import LogWatch, start_server, users

PRIVATE_FILES = ("runtime.sqlite3", "runtime.sqlite3-wal", "runtime.sqlite3-shm", "token")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _run_one_job_and_modes(data: Path) -> dict[str, int]:
    """Start a server on ``data``, run a job; the modes of its files while it serves."""
    server = start_server(data, workers=1)
    try:
        alice, _ = users(server)
        job = alice.wait_final(alice.run("ok"))
        assert job["state"]["status"] == "COMPLETED"
        return {name: mode(data / name) for name in PRIVATE_FILES}
    finally:
        server.stop()


@pytest.mark.usefixtures("umask_022")
def test_existing_0755_directory_is_fixed_and_files_are_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    with LogWatch() as log:
        modes = _run_one_job_and_modes(data)
    assert mode(data) == 0o700
    assert modes == dict.fromkeys(PRIVATE_FILES, 0o600)
    warnings = [m for m in log.messages(logging.WARNING) if str(data) in m]
    assert warnings == [
        f"The data directory {data} had mode 0755 (readable by others); changed to 0700."
    ]


@pytest.mark.usefixtures("umask_022")
def test_database_files_left_world_readable_are_fixed(tmp_path: Path) -> None:
    """A database an older server created ``0644`` (and its WAL files) become ``0600``."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    conn = sqlite3.connect(data / "runtime.sqlite3")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE leftover (x)")
    conn.commit()
    try:
        assert mode(data / "runtime.sqlite3") == 0o644
        assert mode(data / "runtime.sqlite3-wal") == 0o644
        conn.close()
        modes = _run_one_job_and_modes(data)
    finally:
        conn.close()
    assert modes == dict.fromkeys(PRIVATE_FILES, 0o600)


@pytest.mark.usefixtures("umask_022")
def test_new_directory_is_0700_without_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "data"
    with LogWatch() as log:
        DataDir.resolve(root).create()
        DataDir.resolve(root).create()
    assert mode(root) == 0o700
    assert log.messages(logging.WARNING) == []


def test_a_narrower_existing_directory_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o500)
    try:
        with LogWatch() as log:
            DataDir.resolve(root).create()
        assert mode(root) == 0o500
        assert log.messages(logging.WARNING) == []
    finally:
        root.chmod(0o700)
