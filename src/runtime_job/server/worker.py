"""The worker process: runs one program at a time for the server.

A worker is started (``spawn``) by :class:`~runtime_job.server.runner.Runner`, says it is
ready, then runs the jobs it is sent, one at a time, and reports back over its connection:

- ``("ready", pid, info)`` once, after start-up and the ``path`` message; ``info`` is
  ``{"qiskit_version": str or None}`` (``None`` when qiskit is not importable here);
- ``("interim", job_id, payload_text)`` for each ``publish()``;
- ``("log", job_id, text)`` for what the program prints (stdout and stderr);
- ``("done", job_id, result_text)`` or ``("failed", job_id, traceback_text)`` at the end.

It receives ``("run", job_id, program, params_text, backend_name, log_level)`` (``program``
is an import path, or a pickled callable as bytes; ``log_level`` a level name or ``None`` for
``WARNING``) and ``("stop",)``. Records the program logs at ``log_level`` or above go to the
job's logs. It first receives ``("path", entries)``, the server's ``sys.path``, so programs
registered as callables import the same way in the worker as in the server.

Workers are started as ``python -m runtime_job.server.worker FD PARENT_PID`` in their own
process group (so killing the group also kills what a program started). A worker ignores
``SIGINT`` (the server stops it) and exits when the server process goes away.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_PARENT_POLL = 0.2
_LOG_FLUSH_BYTES = 64 * 1024
_DEFAULT_LOG_LEVEL = logging.WARNING
"""Level of a job that names none (the hosted service's default)."""
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How a program's log records appear in the job's logs."""


def qiskit_version() -> str | None:
    """The version of qiskit this worker would import, without importing it; else ``None``.

    It is ``qiskit.__version__``: read from the package's ``VERSION.txt`` (as qiskit itself
    does), else from the installed distribution's metadata.
    """
    module = sys.modules.get("qiskit")
    if module is not None:
        version = getattr(module, "__version__", None)
        return version if isinstance(version, str) else None
    try:
        spec = importlib.util.find_spec("qiskit")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        try:
            text = (Path(location) / "VERSION.txt").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text:
            return text
    from importlib import metadata  # rarely needed: only without VERSION.txt

    for distribution in ("qiskit", "qiskit-terra"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(distribution)
    return None


def log_level_number(name: str | None) -> int:
    """The ``logging`` level of a job's ``log_level`` (``WARNING`` when absent or unknown)."""
    if not name:
        return _DEFAULT_LOG_LEVEL
    level = logging.getLevelName(name.strip().upper())
    return level if isinstance(level, int) else _DEFAULT_LOG_LEVEL


class _Channel:
    """The worker's connection to the server; ``send`` is safe from any thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(message)


class _LogStream(io.TextIOBase):
    """A text stream whose complete lines go to the job's logs."""

    def __init__(self, channel: _Channel, job_id: str) -> None:
        super().__init__()
        self._channel = channel
        self._job_id = job_id
        self._buffer: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or self._size >= _LOG_FLUSH_BYTES:
                self._flush_locked()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        data = "".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self._channel.send(("log", self._job_id, data))


class _Messenger:
    """The ``user_messenger`` handed to programs."""

    def __init__(self, channel: _Channel, job_id: str, dumps: Any) -> None:
        self._channel = channel
        self._job_id = job_id
        self._dumps = dumps
        self.final_text: str | None = None

    def publish(self, message: Any, encoder: Any = None, final: bool = False) -> None:
        """Publish an interim result, or set the final result when ``final`` is true.

        Args:
            message: Anything the runtime codec can encode.
            encoder: A ``json.JSONEncoder`` subclass to use instead of the runtime codec.
            final: Whether this is the final result.
        """
        text = json.dumps(message, cls=encoder) if encoder is not None else self._dumps(message)
        if final:
            self.final_text = text
        else:
            self._channel.send(("interim", self._job_id, text))


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(_PARENT_POLL)
        if os.getppid() != parent_pid:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os._exit(1)


def _run_job(
    channel: _Channel,
    job_id: str,
    program: Any,
    params_text: str,
    backend_name: str,
    cache: dict[str, Any],
    log_level: str | None = None,
) -> None:
    out = _LogStream(channel, job_id)
    root = logging.getLogger()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(log_level_number(log_level))
    try:
        _run_program(channel, job_id, program, params_text, backend_name, cache, out)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


def _run_program(
    channel: _Channel,
    job_id: str,
    program: Any,
    params_text: str,
    backend_name: str,
    cache: dict[str, Any],
    out: _LogStream,
) -> None:
    from runtime_job import codec

    from .programs import LocalBackend, resolve_import_path

    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    messenger = _Messenger(channel, job_id, codec.dumps)
    try:
        if isinstance(program, str):
            func = cache.get(program)
            if func is None:
                func = cache[program] = resolve_import_path(program)
        else:
            func = pickle.loads(program)
        inputs = codec.loads(params_text) if params_text else None
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise TypeError(f"The job's params must be a JSON object, not {type(inputs).__name__}")
        result = func(LocalBackend(name=backend_name), messenger, **inputs)
        if result is None and messenger.final_text is not None:
            text = messenger.final_text
        else:
            text = codec.dumps(result)
    except BaseException:
        trace = traceback.format_exc()
        with contextlib.suppress(Exception):
            out.write(trace)
            out.flush()
        sys.stdout, sys.stderr = saved
        channel.send(("failed", job_id, trace))
        return
    finally:
        sys.stdout, sys.stderr = saved
    with contextlib.suppress(Exception):
        out.flush()
    channel.send(("done", job_id, text))


def worker_main(conn: Connection, parent_pid: int) -> None:
    """Serve the server over ``conn`` until told to stop or the server goes away.

    Args:
        conn: The connection to the server.
        parent_pid: The server's pid; the worker exits when its parent changes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="runtime-job-parent-watch", daemon=True
    ).start()
    import runtime_job.codec  # noqa: F401  (warm the import before saying ready)

    channel = _Channel(conn)
    cache: dict[str, Any] = {}
    ready = False
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "run":
            _, job_id, program, params_text, backend_name, *rest = message
            log_level = rest[0] if rest else None
            _run_job(channel, job_id, program, params_text, backend_name, cache, log_level)
        elif message[0] == "path":
            for entry in reversed(message[1]):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            if not ready:  # the server's path decides what is importable, qiskit included
                channel.send(("ready", os.getpid(), {"qiskit_version": qiskit_version()}))
                ready = True
        elif message[0] == "stop":
            break
    with contextlib.suppress(OSError):
        conn.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m runtime_job.server.worker FD PARENT_PID``.

    ``FD`` is this end of a socket pair shared with the server.
    """
    args = sys.argv[1:] if argv is None else argv
    fd, parent_pid = int(args[0]), int(args[1])
    os.set_inheritable(fd, False)
    worker_main(Connection(fd), parent_pid)


if __name__ == "__main__":
    main()


__all__ = ["log_level_number", "qiskit_version", "worker_main"]
