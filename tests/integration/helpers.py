"""Helpers of the integration tests: a small HTTP client, websocket readers, process checks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import websocket

# The integration tests' users of the default server, re-exported.
from tests.support.server import ALICE as ALICE
from tests.support.server import BOB as BOB
from tests.support.server import CAROL as CAROL
from tests.support.waiting import wait_until

FINAL = ("COMPLETED", "FAILED", "CANCELLED")


class Api:
    """A ``requests`` session bound to one server and one token."""

    def __init__(self, base: str, token: str, verify: bool | str = True) -> None:
        self.base = base
        self.token = token
        self.session = requests.Session()
        self.session.headers["X-Access-Token"] = token
        self.verify = verify

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("verify", self.verify)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def submit(
        self, program: str, params: Any = None, headers: dict[str, str] | None = None, **body: Any
    ) -> str:
        payload = {"program_id": program, "params": params or {}, **body}
        response = self.post("/jobs", data=json.dumps(payload), headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_status(
        self, job_id: str, statuses: tuple[str, ...], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Wait until the job has one of ``statuses``; return the job."""
        seen: list[dict[str, Any]] = [{}]

        def reached() -> dict[str, Any] | None:
            seen[0] = self.job(job_id)
            return seen[0] if seen[0]["state"]["status"] in statuses else None

        try:
            return wait_until(reached, timeout, what=f"job {job_id} to be in {statuses}")
        except AssertionError as err:
            raise AssertionError(f"{err}; still {seen[0].get('state')}") from None

    def wait_final(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_status(job_id, FINAL, timeout)


def ws_base(base: str) -> str:
    return "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]


def ws_open(
    base: str, job_id: str, headers: dict[str, str], query: str = "", **options: Any
) -> websocket.WebSocket:
    url = f"{ws_base(base)}/stream/jobs/{job_id}" + (f"?{query}" if query else "")
    return websocket.create_connection(url, header=headers, timeout=20, **options)


def ws_read(ws: websocket.WebSocket, count: int) -> list[str]:
    """Read ``count`` text frames."""
    frames: list[str] = []
    while len(frames) < count:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frames.append(data.decode("utf-8"))
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            raise AssertionError(f"closed after {frames!r}")
    return frames


def ws_read_all(ws: websocket.WebSocket) -> tuple[list[str], int | None]:
    """Read text frames until the server closes; return them and the close code."""
    frames: list[str] = []
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                frames.append(data.decode("utf-8"))
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                return frames, code
    finally:
        ws_close(ws)


def ws_close(ws: websocket.WebSocket) -> None:
    """Close a websocket and its socket (after a server close, ``close()`` alone does not)."""
    try:
        ws.close(timeout=1)
    finally:
        ws.shutdown()


def ws_stream(
    base: str, job_id: str, headers: dict[str, str], query: str = ""
) -> tuple[list[str], int | None]:
    """Open a stream, read it to the end, close it."""
    return ws_read_all(ws_open(base, job_id, headers, query))


def ws_refused(base: str, job_id: str, headers: dict[str, str], query: str = "") -> int:
    """The HTTP status of a refused websocket handshake."""
    try:
        ws = ws_open(base, job_id, headers, query)
    except websocket.WebSocketBadStatusException as err:
        return int(err.status_code)
    ws_close(ws)
    raise AssertionError("the handshake was accepted")


def seq_frame(frame: str) -> tuple[dict[str, Any], str]:
    header, _, payload = frame.partition("\n")
    return json.loads(header), payload


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout, what=f"{pids} to exit")
    return [pid for pid in pids if alive(pid)]


def env_without_proxies() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def serve_command() -> list[str]:
    """How to run ``runtime-job`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "runtime-job"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime_job.cli"]


@contextlib.contextmanager
def served(data_dir: Path, *flags: str) -> Iterator[Api]:
    """``runtime-job serve`` in a child process (one worker, token ``ALICE``) and a client.

    On exit the server gets SIGTERM and must exit 0 within 20 s.
    """
    args = ["serve", "--data-dir", str(data_dir), "--token", ALICE, "--workers", "1", *flags]
    process = subprocess.Popen(
        [*serve_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        client = Api(process.stdout.readline().split()[3], ALICE)
        try:
            yield client
        finally:
            client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
