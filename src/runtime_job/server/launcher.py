"""Find the local server of a data directory, or start one: :func:`ensure_local_server`.

``RuntimeService(channel="local")`` calls :func:`ensure_local_server`. It first tries to
*join* the server named by the data directory's ``server.json`` (its pid must be alive and
its URL must answer ``GET /api/version`` as a runtime-job server). Otherwise it *starts*
one:

- by default as a **background child process** (``python -m runtime_job.cli serve
  --attached``) in its own session. The child lives exactly as long as this process: it
  watches its standard input, a pipe only this process holds, and stops when the pipe
  closes, which happens when this process exits, however it exits (even ``SIGKILL``). At
  a normal exit this process closes the pipe and waits at most a few seconds for the
  child, so it exits promptly. Other processes may join the child meanwhile.
- with ``in_process=True``, as a :class:`~runtime_job.server.local.LocalRuntimeServer` in a
  background thread of this process, stopped at exit.

Example::

    url, token = ensure_local_server()          # per-user data directory
    url, token = ensure_local_server("/tmp/rj") # or a given one
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import selectors
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import DataDir

if TYPE_CHECKING:
    from .local import LocalRuntimeServer

EXIT_DATA_DIR_IN_USE = 3
"""Exit status of ``runtime-job serve`` when another server serves the data directory."""
_FIRST_LINE_RE = re.compile(r" at (\S+) \(token file: (.+)\)\s*$")
_STOP_WAIT = 5.0


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    url: str


_lock = threading.Lock()
_children: dict[Path, _Child] = {}
_embedded: dict[Path, LocalRuntimeServer] = {}
_atexit_registered = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def server_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` is a runtime-job server that answers ``GET /api/version``.

    Args:
        url: The server's base URL.
        timeout: Seconds to wait for the answer.
    """
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(
            url.rstrip("/") + "/api/version", timeout=timeout, context=context
        ) as response:
            body = json.loads(response.read(65536))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("server") == "runtime-job"


def join_local_server(data_dir: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """The ``(url, token)`` of a live server serving ``data_dir``, or ``None``.

    Args:
        data_dir: The data directory (default: the per-user one).
    """
    data = DataDir.resolve(data_dir)
    info = data.read_server_info()
    if info is None:
        return None
    url, pid = info.get("url"), info.get("pid")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if not isinstance(pid, int) or not _pid_alive(pid):
        return None
    token = data.read_token()
    if token is None or not server_answers(url):
        return None
    return url, token


def ensure_local_server(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    in_process: bool = False,
    timeout: float = 60.0,
) -> tuple[str, str]:
    """Join the local server of ``data_dir``, or start one; return ``(url, token)``.

    Args:
        data_dir: The data directory (default: ``$XDG_DATA_HOME/runtime-job`` or
            ``~/.local/share/runtime-job``).
        in_process: Start the server in a thread of this process instead of a child process.
        timeout: Seconds to wait for a server to be ready.

    Returns:
        The server's base URL and the primary API token.

    Raises:
        RuntimeError: No server could be joined or started in time.
    """
    data = DataDir.resolve(data_dir)
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while True:
        joined = join_local_server(data.root)
        if joined is not None:
            return joined
        start = _start_embedded if in_process else _start_child
        result = start(data, deadline)
        if isinstance(result, tuple):
            return result
        last_error = result
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Could not start or join a local server in {data.root}: {last_error}"
            )
        time.sleep(0.1)


def stop_local_servers() -> None:
    """Stop every server this process started with :func:`ensure_local_server`."""
    with _lock:
        children = list(_children.items())
        embedded = list(_embedded.items())
        _children.clear()
        _embedded.clear()
    for _, child in children:
        _stop_child(child)
    for _, server in embedded:
        server.stop()


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(stop_local_servers)
        _atexit_registered = True


def _start_embedded(data: DataDir, deadline: float) -> tuple[str, str] | str:
    from .local import DataDirInUse, LocalRuntimeServer

    server = LocalRuntimeServer(data_dir=data.root)
    try:
        server.start(timeout=max(1.0, deadline - time.monotonic()))
    except DataDirInUse as err:
        return str(err)
    with _lock:
        _embedded[data.root] = server
        _register_atexit()
    return server.url, server.token


def _read_first_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert process.stdout is not None
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.split(b"\n", 1)[0]


def _start_child(data: DataDir, deadline: float) -> tuple[str, str] | str:
    data.create()
    command = [
        sys.executable,
        "-m",
        "runtime_job.cli",
        "serve",
        "--data-dir",
        str(data.root),
        "--attached",
    ]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    with open(data.log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            env=env,
        )
    line = _read_first_line(process, deadline)
    assert process.stdout is not None
    process.stdout.close()
    match = _FIRST_LINE_RE.search(line.decode("utf-8", "replace"))
    if match is None:
        code = _stop_child(_Child(process, ""))
        if code == EXIT_DATA_DIR_IN_USE:
            return "the data directory is being served by another process"
        return f"the server exited with status {code} (see {data.log_path})"
    url = match.group(1)
    token = data.read_token()
    if token is None:
        _stop_child(_Child(process, url))
        return "the server wrote no token file"
    with _lock:
        _children[data.root] = _Child(process, url)
        _register_atexit()
    return url, token


def _stop_child(child: _Child) -> int | None:
    process = child.process
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        return process.wait(_STOP_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


__all__ = [
    "EXIT_DATA_DIR_IN_USE",
    "ensure_local_server",
    "join_local_server",
    "server_answers",
    "stop_local_servers",
]
