"""``runtime-job serve --stop`` and ``serve --idle-timeout``: ending a local server by hand or
by itself, and never signalling a process that is not the server.

Every process a test starts is stopped by its pid in a ``finally``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job.server import LocalRuntimeServer
from runtime_job.server.launcher import join_local_server, stop_local_servers
from runtime_job.server.paths import DataDir
from tests.cli.conftest import command
from tests.integration.helpers import Api

FIRST_LINE = "runtime-job server at "


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop a process a test started, by its pid, and close its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait(10)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _serve(data_dir: Path, *flags: str) -> subprocess.Popen[str]:
    """``runtime-job serve`` in the foreground, once it has printed its first line."""
    process = subprocess.Popen(
        [*command(), "serve", "--data-dir", str(data_dir), "--workers", "1", *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(FIRST_LINE):
        _stop(process)
        raise AssertionError(f"serve did not start: {line!r}")
    return process


def _serve_stop(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "serve", "--stop", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _bystander() -> subprocess.Popen[str]:
    """A process that is not a server: it waits on its standard input."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test, each stopped by its pid afterwards."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            _stop(process)


def test_stop_ends_a_running_server(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    server = _serve(tmp_path)
    processes.append(server)
    stopped = _serve_stop(tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped the runtime-job server of {tmp_path} (pid {server.pid})\n"
    assert server.wait(10) == 0  # SIGTERM: it stopped in order
    assert not (tmp_path / "server.json").exists()
    again = _serve_stop(tmp_path)
    assert again.returncode == 0 and again.stdout == ""
    assert again.stderr == f"runtime-job serve: no server serves {tmp_path}\n"


def test_stop_with_nothing_there(tmp_path: Path) -> None:
    stopped = _serve_stop(tmp_path / "never-created")
    assert stopped.returncode == 0 and "no server serves" in stopped.stderr
    assert not (tmp_path / "never-created").exists()


def test_stop_never_signals_a_stale_pid(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """``server.json`` left by a killed server names a pid now used by another process."""
    bystander = _bystander()
    processes.append(bystander)
    data = DataDir.resolve(tmp_path)
    data.create()
    info = {"url": "http://127.0.0.1:9", "pid": bystander.pid, "started": time.time() - 60}
    data.write_server_info({**info, "command": "serve"})
    stopped = _serve_stop(tmp_path)
    assert stopped.returncode == 0 and "no server serves" in stopped.stderr
    # The lock is held (a server is starting) but the pid started after server.json was
    # written: a reused pid, not the server.
    lock = os.open(data.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        refused = _serve_stop(tmp_path)
    finally:
        os.close(lock)
    assert refused.returncode == 1
    assert f"names process {bystander.pid}, which is no longer the server" in refused.stderr
    assert bystander.poll() is None


def test_stop_refuses_a_server_inside_another_program(tmp_path: Path) -> None:
    with LocalRuntimeServer(data_dir=tmp_path, tokens=["t" * 20], workers=1) as server:
        refused = _serve_stop(tmp_path)
        assert refused.returncode == 1
        assert f"runs inside process {os.getpid()}" in refused.stderr
        assert server.running


def test_idle_timeout_stops_a_server_nobody_uses(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    server = _serve(tmp_path, "--idle-timeout", "0.5")
    processes.append(server)
    info = json.loads((tmp_path / "server.json").read_text())
    assert info["command"] == "serve" and info["idle_timeout"] == 0.5
    assert server.wait(15) == 0
    assert not (tmp_path / "server.json").exists()


def test_idle_timeout_waits_for_the_last_lease(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    server = _serve(tmp_path, "--idle-timeout", "0.3")
    processes.append(server)
    joined = join_local_server(tmp_path)  # this process now holds a lease
    try:
        assert joined is not None
        api = Api(*joined)
        try:
            # A job five times longer than the idle timeout completes: the lease held.
            job = api.wait_final(api.submit("sleep", {"seconds": 1.5}))
        finally:
            api.close()
        assert job["state"]["status"] == "COMPLETED"
        assert server.poll() is None
    finally:
        stop_local_servers()  # releases the lease (this process did not start the server)
    assert server.wait(15) == 0


def test_stop_is_in_the_help() -> None:
    help_text = subprocess.run(
        [*command(), "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--stop" in help_text and "--idle-timeout" in help_text
    assert "with --stop:" in help_text
