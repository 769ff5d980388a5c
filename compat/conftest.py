"""Fixtures of the compatibility suite.

One ``runtime-job serve`` process (from the main ``.venv``) is started for the whole session,
over TLS on 127.0.0.1 with an ephemeral port, a temporary data directory and a known token.
The tests drive it with the *unmodified* reference client (qiskit-ibm-runtime 0.11.2) from
``.venv-compat``. At the end the server is sent SIGTERM and must exit by itself, leaving no
process behind.

Environment (``make compat`` sets all of it; see README.md):

- ``RUNTIME_JOB_BIN``: the ``runtime-job`` executable to serve with
  (default: ``<repo>/.venv/bin/runtime-job``).
- ``COMPAT_TLS_CERT`` / ``COMPAT_TLS_KEY``: the server's certificate and key. When absent, a
  throwaway self-signed pair is made here.
- ``WEBSOCKET_CLIENT_CA_BUNDLE``: must name that certificate (the reference's websocket ignores
  ``verify=False``). Set here to ``COMPAT_TLS_CERT`` in any case.
- ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``: must be unset (they override ``verify=False``);
  removed from this process when present.
- ``NO_PROXY=127.0.0.1,localhost`` and ``TZ=UTC``: set here when absent.
- ``COMPAT_SERVER_WORKERS``: ``--workers`` for the server (default 2).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent

STARTUP_TIMEOUT = 30.0
"""Seconds the server gets to print its URL and then to answer ``/api/version``."""
STOP_TIMEOUT = 15.0
"""Seconds the server gets to exit after SIGTERM before it is killed (and the suite fails)."""


# --------------------------------------------------------------------------------------------
# Environment (done at import, before any test module imports the reference client)
# --------------------------------------------------------------------------------------------


def _load_tls_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("compat_tls", HERE / "tls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare_environment() -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    for name in ("NO_PROXY", "no_proxy"):
        if "127.0.0.1" not in os.environ.get(name, ""):
            os.environ[name] = "127.0.0.1,localhost"
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()
    if not (os.environ.get("COMPAT_TLS_CERT") and os.environ.get("COMPAT_TLS_KEY")):
        directory = Path(tempfile.mkdtemp(prefix="runtime-job-compat-tls-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        cert, key = _load_tls_module().make_self_signed(directory)
        os.environ["COMPAT_TLS_CERT"] = str(cert)
        os.environ["COMPAT_TLS_KEY"] = str(key)
    # The server presents this certificate, so it is what the websocket must trust.
    os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"] = os.environ["COMPAT_TLS_CERT"]


_prepare_environment()


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run anywhere but in the reference environment."""
    try:
        from importlib.metadata import version

        runtime, ws = version("qiskit-ibm-runtime"), version("websocket-client")
    except Exception as exc:
        raise pytest.UsageError(
            f"the compat suite needs the reference client ({exc}); run it with "
            "`make compat` (it uses .venv-compat, built from compat/requirements.txt)"
        ) from None
    if not runtime.startswith("0.11."):
        raise pytest.UsageError(f"expected qiskit-ibm-runtime 0.11.x, found {runtime}")
    if tuple(int(p) for p in ws.split(".")[:2]) >= (1, 9):
        raise pytest.UsageError(
            f"websocket-client {ws} makes the 0.11 client reconnect forever; pin 1.6.1"
        )
    cert = os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"]
    if not Path(cert).is_file():
        raise pytest.UsageError(f"WEBSOCKET_CLIENT_CA_BUNDLE={cert} is not a file")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _become_subreaper() -> None:
    """Make this process adopt orphaned descendants, so a leaked worker cannot hide."""
    if sys.platform.startswith("linux"):
        pr_set_child_subreaper = 36
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _process_table() -> dict[int, tuple[int, int, str, str]]:
    """``pid -> (ppid, pgid, state, command)`` for every process visible in ``/proc``."""
    table: dict[int, tuple[int, int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        table[int(entry)] = (int(rest[1]), int(rest[2]), rest[0], command)
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, str, str]]) -> set[int]:
    found: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _pgid, _state, _cmd) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return found


@dataclass
class Server:
    """A running ``runtime-job serve``.

    Attributes:
        base_url: The runtime base URL (``https://127.0.0.1:PORT``); the login API is at
            ``base_url + "/api"``.
        token: The API token it accepts.
        process: The server process.
        first_line: The first line it printed.
        stderr_path: Where its stderr goes.
        stdout_lines: Everything it printed on stdout after the first line.
    """

    base_url: str
    token: str
    process: subprocess.Popen[str]
    first_line: str
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines of the server's stderr."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no stderr>"
        return "\n".join(text.splitlines()[-lines:])


def _runtime_job_bin() -> str:
    path = os.environ.get("RUNTIME_JOB_BIN") or str(REPO_ROOT / ".venv" / "bin" / "runtime-job")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no runtime-job executable at {path}; build the main venv (`make setup`) or set "
            "RUNTIME_JOB_BIN",
            pytrace=False,
        )
    return path


def _wait_until_answering(base_url: str, proc: subprocess.Popen[str], deadline: float) -> None:
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} while starting")
        try:
            resp = requests.get(f"{base_url}/api/version", verify=False, timeout=2)
            if resp.status_code == 200 and "api-auth" in resp.json():
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except (requests.RequestException, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} did not answer /api/version in time: {last}")


def _stop(server: Server) -> list[str]:
    """SIGTERM the server, wait (bounded), kill if needed; return what went wrong."""
    problems: list[str] = []
    proc = server.process
    before = _process_table()
    tree = _descendants(proc.pid, before)
    if proc.poll() is not None:
        problems.append(f"server had already exited (code {proc.returncode}) before SIGTERM")
    else:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"server did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM; killed")
            proc.kill()
            proc.wait(timeout=10)
        else:
            if proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
                problems.append(f"server exited with code {proc.returncode} after SIGTERM")

    # Whatever it started must be gone too: its former children (now adopted by us or by
    # init) and anything still in its process group.
    deadline = time.monotonic() + 5.0
    me = os.getpid()
    while True:
        table = _process_table()
        for pid, (ppid, _pgid, state, _cmd) in table.items():
            if ppid == me and state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        left = {
            pid: info
            for pid, info in table.items()
            if pid != me
            and info[2] != "Z"
            and (pid in tree or info[1] == proc.pid or (info[0] == me and pid != proc.pid))
        }
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        listing = "; ".join(f"pid {pid}: {info[3]!r}" for pid, info in sorted(left.items()))
        problems.append(f"processes left behind after the server stopped: {listing}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return problems


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``runtime-job serve`` over TLS on 127.0.0.1, stopped (and checked) at the end."""
    _become_subreaper()
    root = tmp_path_factory.mktemp("server")
    data_dir = root / "data"
    stderr_path = root / "server.stderr"
    token = "compat-" + secrets.token_hex(16)
    argv = [
        _runtime_job_bin(),
        "serve",
        "--host", "127.0.0.1",
        "--port", "0",
        "--data-dir", str(data_dir),
        "--token", token,
        "--tls-cert", os.environ["COMPAT_TLS_CERT"],
        "--tls-key", os.environ["COMPAT_TLS_KEY"],
        "--workers", os.environ.get("COMPAT_SERVER_WORKERS", "2"),
    ]  # fmt: skip
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    rest: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        first = True
        for line in proc.stdout:
            if first:
                lines.put(line)
                first = False
            else:
                rest.append(line)
        lines.put(None)

    threading.Thread(target=pump, name="server-stdout", daemon=True).start()

    started = False
    try:
        try:
            first_line = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(
                f"server printed no line on stdout within {STARTUP_TIMEOUT:.0f} s "
                "(is its first line flushed when stdout is a pipe?)"
            ) from None
        if first_line is None:
            raise RuntimeError(f"server exited (code {proc.wait(5)}) without printing its URL")
        match = re.search(r"https://[^\s)]+", first_line)
        if match is None:
            raise RuntimeError(f"no https:// URL on the server's first line: {first_line!r}")
        base_url = match.group(0).rstrip("/.,")
        server = Server(base_url, token, proc, first_line.strip(), stderr_path, rest)
        _wait_until_answering(base_url, proc, time.monotonic() + STARTUP_TIMEOUT)
        started = True
    except Exception as exc:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(10)
        tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"could not start `{' '.join(argv)}`: {exc}\nstderr:\n{tail}", pytrace=False)
    assert started
    try:
        yield server
    finally:
        problems = _stop(server)
    if problems:
        pytest.fail(
            "server shutdown: " + " | ".join(problems) + "\nstderr tail:\n" + server.stderr_tail(),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def service(server: Server):  # type: ignore[no-untyped-def]
    """The unmodified reference client, logged in to the server."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService(
        channel="ibm_quantum", url=f"{server.base_url}/api", token=server.token, verify=False
    )


@pytest.fixture(scope="session")
def our_service(server: Server):  # type: ignore[no-untyped-def]
    """This package's service (installed into .venv-compat), on the same server.

    The ``local`` channel over TLS, trusting the throwaway certificate (our client passes
    ``verify`` to its websocket too).
    """
    from runtime_job import RuntimeService

    service = RuntimeService(
        channel="local",
        url=server.base_url,
        token=server.token,
        verify=os.environ["COMPAT_TLS_CERT"],
    )
    try:
        yield service
    finally:
        service.close()
