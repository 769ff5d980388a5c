"""Find the local server of a data directory, or start one, and share it between processes.

``RuntimeService(channel="local")`` calls :func:`ensure_local_server`. It first tries to
*join* the server named by the data directory's ``server.json`` (its pid must be alive and
its URL must answer ``GET /api/version`` as a runtime-job server). Otherwise it *starts*
one:

- by default as a **background server**, ``python -m runtime_job.cli serve --idle-timeout T
  --background``, detached from this process (its own session, not a child of this process
  once it runs). It serves as long as any process uses it, then stops by itself once no
  process has used it for ``T`` seconds (:data:`DEFAULT_IDLE_TIMEOUT`, or
  ``$RUNTIME_JOB_SERVER_IDLE_TIMEOUT``).
- with ``in_process=True``, as a :class:`~runtime_job.server.local.LocalRuntimeServer` in a
  background thread of this process, stopped at exit.

**Client leases.** A process that joins or starts a server this way holds a *lease*: a
shared ``flock`` on ``DIR/clients.lock``, until it exits or calls
:func:`stop_local_servers`. The kernel drops the lock when the process ends, however it
ends (``SIGKILL`` included), so a lease cannot outlive its process and a reused pid cannot
fake one. A background server asks for the same lock exclusively now and then: when it gets
it, no process holds a lease. Once that has lasted its idle timeout, it keeps the exclusive
lock while it stops, so no process can join a server that is going away: a joining process
takes its lease first (waiting while a server stops) and only then looks for a server.

:func:`stop_local_server` (``runtime-job serve --stop``) stops a ``runtime-job serve``
process by its pid, after checking that the pid is still that server.

Example::

    url, token = ensure_local_server()          # per-user data directory
    url, token = ensure_local_server("/tmp/rj") # or a given one
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import fcntl
import json
import logging
import math
import os
import re
import selectors
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import DataDir

if TYPE_CHECKING:
    from .local import LocalRuntimeServer

logger = logging.getLogger(__name__)

EXIT_DATA_DIR_IN_USE = 3
"""Exit status of ``runtime-job serve`` when another server serves the data directory."""

DEFAULT_IDLE_TIMEOUT = 60.0
"""Seconds a background server keeps serving once no process holds a lease on it."""

IDLE_TIMEOUT_ENV = "RUNTIME_JOB_SERVER_IDLE_TIMEOUT"
"""Environment variable overriding :data:`DEFAULT_IDLE_TIMEOUT` for servers started here."""

CLIENTS_LOCK = "clients.lock"
"""File of the data directory that client processes hold a shared ``flock`` on."""

SERVE_COMMAND = "serve"
"""Value of ``command`` in ``server.json`` when a ``runtime-job serve`` process serves."""

STOP_TIMEOUT = 15.0
"""Seconds :func:`stop_local_server` waits after ``SIGTERM`` before it sends ``SIGKILL``."""

_FIRST_LINE_RE = re.compile(r" at (\S+) \(token file: (.+)\)\s*$")
_ERROR_LINE_RE = re.compile(r"^runtime-job serve: error \(status (\d+)\): (.*)$")
_INTERMEDIATE_WAIT = 5.0
_LEASE_RETRY = 0.02
_JOIN_LEASE_WAIT = 1.0
_KILL_WAIT = 5.0
_START_TIME_SLACK = 2.0


class LocalServerStopError(RuntimeError):
    """A local server could not be stopped (it is not a ``runtime-job serve``, or it lives on)."""


class _Lease(enum.Enum):
    HELD = "held"
    BUSY = "busy"  # a server holds the clients lock exclusively: it is stopping
    UNAVAILABLE = "unavailable"  # no lock file can be opened or locked here


_lock = threading.Lock()
_leases: dict[Path, int] = {}
_started: dict[Path, int] = {}
_embedded: dict[Path, LocalRuntimeServer] = {}
_atexit_registered = False


# ------------------------------------------------------------------------------ processes


def _process_state(pid: int) -> tuple[str, float] | None:
    """``(state letter, start time in seconds since the epoch)`` from ``/proc``, if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        fields = stat[stat.rindex(")") + 2 :].split()
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    state = _process_state(pid)
    return state is None or state[0] != "Z"


def _is_process_of(pid: int, started: object) -> bool:
    """Whether ``pid`` is alive and was already running at ``started`` (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    state = _process_state(pid)
    if state is None or not isinstance(started, (int, float)):
        return True  # no /proc: the pid is all there is to go by
    return state[1] <= started + _START_TIME_SLACK


# ------------------------------------------------------------------------------ locks


def _open_clients_lock(data: DataDir) -> int | None:
    """A descriptor of ``DIR/clients.lock`` (created ``0600``), read-only if need be."""
    path = data.root / CLIENTS_LOCK
    last: OSError | None = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags, 0o600)
        except OSError as err:
            last = err
    logger.warning(
        "Cannot open %s (%s): this process holds no lease on the local server, which may "
        "stop while this process uses it.",
        path,
        last.strerror if last is not None else "unknown error",
    )
    return None


def _try_flock(fd: int, operation: int) -> bool | None:
    """``flock(fd, operation | LOCK_NB)``: True taken, False held elsewhere, None unsupported."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _server_lock_held(data: DataDir) -> bool:
    """Whether a server holds ``DIR/server.lock``, that is, serves the directory now."""
    try:
        fd = os.open(data.lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        taken = _try_flock(fd, fcntl.LOCK_EX)
        if taken:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return taken is False
    finally:
        os.close(fd)


def _take_lease(data: DataDir, wait: float) -> _Lease:
    """Hold this process's lease on ``data`` (once per directory), waiting up to ``wait`` s.

    The wait covers a server that is stopping: it holds the clients lock exclusively
    until it has stopped.
    """
    with _lock:
        if data.root in _leases:
            return _Lease.HELD
    with contextlib.suppress(OSError):
        data.create()
    fd = _open_clients_lock(data)
    if fd is None:
        return _Lease.UNAVAILABLE
    deadline = time.monotonic() + wait
    while True:
        taken = _try_flock(fd, fcntl.LOCK_SH)
        if taken:
            break
        if taken is None or time.monotonic() >= deadline:
            os.close(fd)
            if taken is None:
                logger.warning("Cannot lock %s: no lease on the local server.", CLIENTS_LOCK)
                return _Lease.UNAVAILABLE
            return _Lease.BUSY
        time.sleep(_LEASE_RETRY)
    with _lock:
        if data.root in _leases:  # another thread took it meanwhile; its lock stands
            os.close(fd)
        else:
            _leases[data.root] = fd
            _register_atexit()
    return _Lease.HELD


def _release_lease(root: Path) -> None:
    with _lock:
        fd = _leases.pop(root, None)
    if fd is not None:
        os.close(fd)


# ------------------------------------------------------------------------------ joining


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


def _join(data: DataDir) -> tuple[str, str] | None:
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


def join_local_server(data_dir: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """The ``(url, token)`` of a live server serving ``data_dir``, or ``None``.

    A server is joined with a lease (see the module docstring): it keeps serving until this
    process exits or calls :func:`stop_local_servers`.

    Args:
        data_dir: The data directory (default: the per-user one).
    """
    data = DataDir.resolve(data_dir)
    with _lock:
        had_lease = data.root in _leases
    lease = _take_lease(data, _JOIN_LEASE_WAIT)
    if lease is _Lease.BUSY:
        return None
    joined = _join(data)
    if joined is None and not had_lease:
        _release_lease(data.root)
    return joined


def idle_timeout_from_env() -> float:
    """The idle timeout for servers started here: ``$RUNTIME_JOB_SERVER_IDLE_TIMEOUT`` or 60 s.

    A value that is not a number of seconds (0 or more) is ignored with a warning.
    """
    text = os.environ.get(IDLE_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_IDLE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        logger.warning(
            "Ignoring %s=%r: expected a number of seconds (0 or more); using %g s.",
            IDLE_TIMEOUT_ENV,
            text,
            DEFAULT_IDLE_TIMEOUT,
        )
        return DEFAULT_IDLE_TIMEOUT
    return value


def ensure_local_server(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    in_process: bool = False,
    timeout: float = 60.0,
    idle_timeout: float | None = None,
) -> tuple[str, str]:
    """Join the local server of ``data_dir``, or start one; return ``(url, token)``.

    This process holds a lease on the server until it exits or calls
    :func:`stop_local_servers`, so the server keeps serving it even after the process that
    started the server has gone.

    Args:
        data_dir: The data directory (default: ``$XDG_DATA_HOME/runtime-job`` or
            ``~/.local/share/runtime-job``).
        in_process: Start the server in a thread of this process instead of a background
            process (it then stops when this process exits, whoever else uses it).
        timeout: Seconds to wait for a server to be ready.
        idle_timeout: Seconds a background server started here keeps serving once no
            process holds a lease (default: ``$RUNTIME_JOB_SERVER_IDLE_TIMEOUT`` or
            :data:`DEFAULT_IDLE_TIMEOUT`). A server that is joined keeps its own.

    Returns:
        The server's base URL and the primary API token.

    Raises:
        RuntimeError: No server could be joined or started in time.
        ValueError: ``idle_timeout`` is negative or not finite.
    """
    data = DataDir.resolve(data_dir)
    idle = idle_timeout_from_env() if idle_timeout is None else float(idle_timeout)
    if not (idle >= 0 and math.isfinite(idle)):
        raise ValueError(f"idle_timeout must be a number of seconds, 0 or more, not {idle!r}.")
    deadline = time.monotonic() + timeout
    with _lock:
        had_lease = data.root in _leases
    if _take_lease(data, timeout) is _Lease.BUSY:
        raise RuntimeError(
            f"Could not start or join a local server in {data.root}: its server was still "
            f"stopping after {timeout:g} s"
        )
    last_error = "no attempt"
    while True:
        joined = _join(data)
        if joined is not None:
            return joined
        result = (
            _start_embedded(data, deadline) if in_process else _start_child(data, deadline, idle)
        )
        if isinstance(result, tuple):
            return result
        last_error = result
        if time.monotonic() >= deadline:
            if not had_lease:
                _release_lease(data.root)
            raise RuntimeError(
                f"Could not start or join a local server in {data.root}: {last_error}"
            )
        time.sleep(0.1)


# ------------------------------------------------------------------------------ starting


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True


def _at_exit() -> None:
    """Stop the servers of this process and drop its leases; background servers stay."""
    with _lock:
        embedded = list(_embedded.values())
        leases = list(_leases.values())
        _embedded.clear()
        _leases.clear()
        _started.clear()
    for server in embedded:
        server.stop()
    for fd in leases:
        with contextlib.suppress(OSError):
            os.close(fd)


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


def background_error_line(status: int, message: str) -> str:
    """The first line a ``serve --background`` process prints when it cannot serve."""
    return f"runtime-job serve: error (status {status}): {message}"


def _start_child(data: DataDir, deadline: float, idle: float) -> tuple[str, str] | str:
    """Start ``runtime-job serve --background``; ``(url, token)``, or why it did not serve.

    The process started here forks the server and exits at once, so the server is no child
    of this process (nothing to reap, nothing to wait for at exit); the server reports on
    the pipe it inherited: its first line, or an error line with its exit status.
    """
    data.create()
    command = [
        sys.executable,
        "-m",
        "runtime_job.cli",
        "serve",
        "--data-dir",
        str(data.root),
        "--idle-timeout",
        repr(idle),
        "--background",
    ]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    with open(data.log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            env=env,
        )
    try:
        line = _read_first_line(process, deadline).decode("utf-8", "replace")
    finally:
        assert process.stdout is not None
        process.stdout.close()
        try:
            code = process.wait(_INTERMEDIATE_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    match = _FIRST_LINE_RE.search(line)
    if match is None:
        failed = _ERROR_LINE_RE.match(line)
        if failed is not None and int(failed.group(1)) == EXIT_DATA_DIR_IN_USE:
            return "the data directory is being served by another process"
        if failed is not None:
            return f"{failed.group(2)} (see {data.log_path})"
        if code:
            return f"the server exited with status {code} (see {data.log_path})"
        return f"the server did not report that it serves (see {data.log_path})"
    url = match.group(1)
    token = data.read_token()
    if token is None:
        return "the server wrote no token file"
    info = data.read_server_info() or {}
    pid = info.get("pid")
    if isinstance(pid, int):
        with _lock:
            _started[data.root] = pid
    return url, token


# ------------------------------------------------------------------------------ stopping


def _terminate(data: DataDir, timeout: float, expected_pid: int | None = None) -> int | None:
    """Stop the ``runtime-job serve`` serving ``data`` by its pid; its pid, or None if none."""
    if not _server_lock_held(data):
        return None
    info = data.read_server_info() or {}
    pid, started = info.get("pid"), info.get("started")
    if not isinstance(pid, int) or pid <= 0:
        raise LocalServerStopError(
            f"A server serves {data.root}, but {data.server_json.name} does not name its "
            "process (it may be starting): try again."
        )
    if expected_pid is not None and pid != expected_pid:
        return None
    if info.get("command") != SERVE_COMMAND:
        raise LocalServerStopError(
            f"The server of {data.root} runs inside process {pid}, not in a "
            "'runtime-job serve' process: stop it from that process."
        )
    if not _is_process_of(pid, started):
        raise LocalServerStopError(
            f"{data.server_json.name} names process {pid}, which is no longer the server "
            f"of {data.root}; the server is still starting or stopping: try again."
        )
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    except PermissionError as err:
        raise LocalServerStopError(
            f"Not allowed to stop process {pid}, the server of {data.root}."
        ) from err
    if _wait_lock_free(data, timeout):
        return pid
    logger.warning(
        "The server of %s (pid %d) did not stop in %g s: killing it.", data.root, pid, timeout
    )
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_lock_free(data, _KILL_WAIT):
        raise LocalServerStopError(f"The server of {data.root} (pid {pid}) did not stop.")
    return pid


def _wait_lock_free(data: DataDir, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _server_lock_held(data):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_local_server(
    data_dir: str | os.PathLike[str] | None = None, timeout: float = STOP_TIMEOUT
) -> int | None:
    """Stop the ``runtime-job serve`` process serving ``data_dir``, whoever uses it.

    It gets ``SIGTERM`` (its running jobs end ``FAILED``, ``server stopped``), and
    ``SIGKILL`` if it still serves after ``timeout`` seconds. The pid comes from
    ``server.json`` and is used only while the server's lock is held and that process
    started before the server named itself (so a reused pid is never signalled).

    Args:
        data_dir: The data directory (default: the per-user one).
        timeout: Seconds to wait for the server to stop before killing it.

    Returns:
        The pid of the server that was stopped, or ``None`` when none served.

    Raises:
        LocalServerStopError: The server runs inside another program (an embedded
            :class:`~runtime_job.server.local.LocalRuntimeServer`), may not be signalled,
            or did not stop.
    """
    return _terminate(DataDir.resolve(data_dir), timeout)


def stop_local_servers() -> None:
    """Release this process's leases; stop the servers it started that nobody else uses.

    Servers started in this process (``in_process=True``) stop. A background server this
    process started stops now unless another process holds a lease on it; a server this
    process only joined keeps serving its other clients, or stops after its idle timeout.
    """
    with _lock:
        embedded = list(_embedded.values())
        leases = list(_leases.values())
        started = dict(_started)
        _embedded.clear()
        _leases.clear()
        _started.clear()
    for server in embedded:
        server.stop()
    for fd in leases:
        os.close(fd)
    for root, pid in started.items():
        _stop_if_unused(DataDir(root), pid)


def _stop_if_unused(data: DataDir, pid: int) -> None:
    """Stop server ``pid`` of ``data`` if no process holds a lease (holding the lock meanwhile)."""
    fd = _open_clients_lock(data)
    if fd is None:
        return
    try:
        if _try_flock(fd, fcntl.LOCK_EX):
            try:
                _terminate(data, STOP_TIMEOUT, expected_pid=pid)
            except LocalServerStopError as err:
                logger.warning("%s", err)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ serving side


class IdleWatch:
    """The server side of the leases: tells a server when nobody has used it for a while.

    A server whose data directory was deleted or replaced stops as soon as no lease is
    held, without waiting for the idle timeout: no process can find it any more.

    Args:
        data: The data directory the server serves.
        idle_timeout: Seconds without any lease after which :meth:`wait` returns ``True``.

    Raises:
        OSError: ``DIR/clients.lock`` cannot be opened.
    """

    def __init__(self, data: DataDir, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._path = data.root / CLIENTS_LOCK
        self._fd: int | None = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        self._interval = min(1.0, max(0.05, idle_timeout / 10))

    def wait(self, stop: threading.Event) -> bool:
        """Wait until ``stop`` is set (``False``) or no lease was held for the idle timeout.

        When it returns ``True``, it holds the clients lock exclusively until :meth:`close`,
        so no process can join while the server stops.
        """
        assert self._fd is not None
        idle_since: float | None = time.monotonic()
        while True:
            unused = _try_flock(self._fd, fcntl.LOCK_EX)
            if unused:
                now = time.monotonic()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self.idle_timeout:
                    return True
                if self._orphaned():
                    logger.info("The data directory of this server is gone: stopping.")
                    return True
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            else:
                idle_since = None
            if stop.wait(self._interval):
                return False

    def _orphaned(self) -> bool:
        """Whether ``clients.lock`` is no longer the file this server watches."""
        assert self._fd is not None
        try:
            here = os.stat(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False
        mine = os.fstat(self._fd)
        return (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino)

    def close(self) -> None:
        """Release the clients lock (if held) and its file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


__all__ = [
    "CLIENTS_LOCK",
    "DEFAULT_IDLE_TIMEOUT",
    "EXIT_DATA_DIR_IN_USE",
    "IDLE_TIMEOUT_ENV",
    "IdleWatch",
    "LocalServerStopError",
    "background_error_line",
    "ensure_local_server",
    "idle_timeout_from_env",
    "join_local_server",
    "server_answers",
    "stop_local_server",
    "stop_local_servers",
]
