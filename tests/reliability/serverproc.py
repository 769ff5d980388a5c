"""``runtime-job serve`` as a subprocess: start, kill, restart on the same data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .programs import PROGRAMS

REPO = Path(__file__).resolve().parents[2]


def python_path() -> str:
    """``PYTHONPATH`` for a child: the repository and ``src`` first, then the caller's."""
    entries = [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(entry for entry in entries if entry)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """One ``runtime-job serve`` child on a fixed port and data directory.

    Args:
        data_dir: The data directory (kept across restarts).
        tokens: API tokens (the first one is the primary).
        port: Port to bind (fixed, so clients find a restarted server at the same URL).
        workers: Worker processes.
        extra: More command-line arguments.
    """

    def __init__(
        self,
        data_dir: Path,
        tokens: list[str],
        port: int | None = None,
        workers: int = 2,
        extra: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.tokens = tokens
        self.port = port if port is not None else free_port()
        self.workers = workers
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None
        self.log = data_dir / "serve-stderr.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "runtime_job.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        for token in self.tokens:
            args += ["--token", token]
        for program_id, path in PROGRAMS.items():
            args += ["--program", f"{program_id}={path}"]
        return args + self.extra

    def start(self, timeout: float = 30.0) -> ServeProcess:
        env = {**os.environ, "PYTHONPATH": python_path()}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=REPO,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line.startswith("runtime-job server at "):
            self.kill()
            raise RuntimeError(f"serve did not start: {line!r}; see {self.log}")
        assert time.monotonic() < deadline
        return self

    def kill(self) -> None:
        """SIGKILL the server (its workers notice and exit by themselves)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait: a clean stop."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
