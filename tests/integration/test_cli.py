"""``runtime-job serve`` as a process: first line, signals, restarts, TLS, background servers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runtime_job.server import ensure_local_server, join_local_server, stop_local_servers
from runtime_job.server.paths import DataDir
from tests.integration.helpers import (
    Api,
    alive,
    children_of,
    seq_frame,
    wait_gone,
    ws_open,
    ws_read_all,
    ws_stream,
)
from tests.support import wait_until
from tests.tlscert import make_cert

TOKEN = "cli-token-0123456789"
FIRST_LINE = re.compile(r"^runtime-job server at (\S+) \(token file: (.+)\)$")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "runtime-job"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime_job.cli"]


class Serve:
    """A ``runtime-job serve`` child process."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*_command(), "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline().rstrip("\n")
        match = FIRST_LINE.match(self.first_line)
        self.url = match.group(1) if match else ""
        self.token_file = match.group(2) if match else ""

    def workers(self) -> list[int]:
        """The server's worker processes (at least one, within 10 s)."""
        return wait_until(lambda: children_of(self.process.pid), 10, what="the server's workers")

    def finish(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            raise
        return self.process.returncode, err


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_serve_prints_its_url_and_stops_on_sigterm(data_dir: Path) -> None:
    serve = Serve("--data-dir", str(data_dir), "--workers", "2")
    try:
        assert FIRST_LINE.match(serve.first_line), serve.first_line
        assert serve.url.startswith("http://127.0.0.1:")
        token_file = Path(serve.token_file)
        assert token_file == data_dir / "token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert data_dir.stat().st_mode & 0o777 == 0o700
        token = token_file.read_text().strip()
        assert len(token) >= 32
        workers = serve.workers()
        assert len(workers) == 2
        api = Api(serve.url, token)
        try:
            job_id = api.submit("sleep", {"seconds": 30})
            api.wait_status(job_id, ("RUNNING",))
        finally:
            api.close()
        assert (data_dir / "server.json").exists()
    finally:
        code, err = serve.finish(signal.SIGTERM)
    assert code == 0, err
    assert wait_gone(workers, timeout=2) == []
    assert not (data_dir / "server.json").exists()
    assert TOKEN not in err and token not in err


def test_serve_stops_on_sigint(data_dir: Path) -> None:
    serve = Serve("--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1")
    workers = serve.workers()
    code, err = serve.finish(signal.SIGINT)
    assert code == 0, err
    assert wait_gone(workers, timeout=2) == []


def test_non_loopback_bind_needs_tls(data_dir: Path) -> None:
    result = subprocess.run(
        [*_command(), "serve", "--host", "0.0.0.0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "TLS" in result.stderr and result.stdout == ""


def test_connection_limit_flags(data_dir: Path) -> None:
    """Two idle sockets fill a cap of 2: a third connection closes the oldest (the head
    timeout is 60 s, so only the cap can close it within the wait)."""
    serve = Serve(
        "--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1",
        "--max-connections", "2", "--request-head-timeout", "60",
    )  # fmt: skip
    try:
        host, port = serve.url.removeprefix("http://").rsplit(":", 1)
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
        try:
            reply = requests.get(f"{serve.url}/api/version", timeout=10)
            assert reply.status_code == 200
            assert idle[0].recv(1) == b""  # closed by the server, not timed out (10 s)
        finally:
            for sock in idle:
                sock.close()
    finally:
        code, err = serve.finish()
    assert code == 0, err
    bad = subprocess.run(
        [*_command(), "serve", "--data-dir", str(data_dir), "--max-connections", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--max-connections: must be at least 1" in bad.stderr


def test_request_head_timeout_flag(data_dir: Path) -> None:
    serve = Serve(
        "--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1",
        "--request-head-timeout", "0.5",
    )  # fmt: skip
    try:
        host, port = serve.url.removeprefix("http://").rsplit(":", 1)
        # Closed by the 0.5 s bound well before the socket's 5 s (the default bound is 10 s).
        with socket.create_connection((host, int(port)), timeout=5) as silent:
            assert silent.recv(1) == b""
    finally:
        code, err = serve.finish()
    assert code == 0, err


def test_second_server_on_the_same_data_dir_is_refused(data_dir: Path) -> None:
    serve = Serve("--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1")
    try:
        second = subprocess.run(
            [*_command(), "serve", "--data-dir", str(data_dir), "--token", TOKEN],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 3
        assert "already served" in second.stderr
    finally:
        code, err = serve.finish()
    assert code == 0, err


def test_restart_after_sigkill_keeps_finished_work(data_dir: Path) -> None:
    serve = Serve("--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1")
    api = Api(serve.url, TOKEN)
    try:
        done = api.submit("hello-world", {"iterations": 2})
        api.wait_final(done)
        printed = api.submit("echo", {"x": 1})
        api.wait_final(printed)
        running = api.submit("sleep", {"seconds": 30})
        api.wait_status(running, ("RUNNING",))
        queued = api.submit("echo", {"later": True})
        assert api.job(queued)["state"]["status"] == "QUEUED"
        workers = serve.workers()
    finally:
        api.close()
    code, _ = serve.finish(signal.SIGKILL)
    assert code == -signal.SIGKILL
    # Orphaned workers notice and exit by themselves.
    assert wait_gone(workers, timeout=5) == []

    again = Serve("--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1")
    api = Api(again.url, TOKEN)
    try:
        assert api.get(f"/jobs/{done}/results").text == '"Hello, World!"'
        assert api.get(f"/jobs/{done}/interim_results").json() == [
            {"iteration": 1},
            {"iteration": 2},
        ]
        assert api.job(printed)["state"]["status"] == "COMPLETED"
        lost = api.job(running)
        assert lost["state"] == {"status": "FAILED", "reason": "server restarted"}
        assert "server restarted" in api.get(f"/jobs/{running}/results").text
        # A job that never started is run now.
        assert api.wait_final(queued)["state"]["status"] == "COMPLETED"
        assert api.get(f"/jobs/{queued}/results").json() == {"later": True}
        frames, code = ws_stream(again.url, done, {"X-Access-Token": TOKEN}, "seq=1")
        assert code == 1000 and seq_frame(frames[-1])[0]["status"] == "COMPLETED"
    finally:
        api.close()
        code, err = again.finish()
    assert code == 0, err


def test_tls(tmp_path: Path, data_dir: Path) -> None:
    cert, key = make_cert(tmp_path)
    serve = Serve(
        "--data-dir", str(data_dir), "--token", TOKEN, "--workers", "1",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    try:
        assert serve.url.startswith("https://127.0.0.1:")
        api = Api(serve.url, TOKEN, verify=str(cert))
        try:
            login = api.post("/api/users/loginWithToken", json={"apiToken": TOKEN})
            me = api.get("/api/users/me", headers={"X-Access-Token": login.json()["id"]})
            assert me.json()["urls"]["services"]["runtime"] == serve.url
            job_id = api.submit("hello-world", {"iterations": 1})
            api.wait_final(job_id)
        finally:
            api.close()
        ws = ws_open(serve.url, job_id, {"X-Access-Token": TOKEN}, sslopt={"ca_certs": str(cert)})
        frames, code = ws_read_all(ws)
        assert frames == ["ACK", '{"iteration": 1}', '"Hello, World!"'] and code == 1000
    finally:
        code, err = serve.finish()
    assert code == 0, err


@pytest.fixture
def no_started_servers() -> Iterator[None]:
    yield
    stop_local_servers()


def test_ensure_local_server_starts_then_joins(data_dir: Path, no_started_servers: None) -> None:
    url, token = ensure_local_server(data_dir)
    assert url.startswith("http://127.0.0.1:")
    assert token == DataDir.resolve(data_dir).read_token()
    assert join_local_server(data_dir) == (url, token)
    assert ensure_local_server(data_dir) == (url, token)
    info = DataDir.resolve(data_dir).read_server_info()
    assert info is not None
    pid = info["pid"]
    assert pid != os.getpid() and alive(pid)
    with requests.get(url + "/backends", headers={"X-Access-Token": token}, timeout=10) as r:
        assert r.status_code == 200
    stop_local_servers()
    assert wait_gone([pid], timeout=5) == []
    assert join_local_server(data_dir) is None


def test_ensure_local_server_in_process(data_dir: Path, no_started_servers: None) -> None:
    url, token = ensure_local_server(data_dir, in_process=True)
    info = DataDir.resolve(data_dir).read_server_info()
    assert info is not None and info["pid"] == os.getpid()
    assert ensure_local_server(data_dir) == (url, token)
    api = Api(url, token)
    try:
        assert api.wait_final(api.submit("echo", {}))["state"]["status"] == "COMPLETED"
    finally:
        api.close()
    stop_local_servers()
    assert join_local_server(data_dir) is None
