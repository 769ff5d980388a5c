"""The embedded server object, its programs, its storage, and the wire models it serves."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runtime_job.api.models import (
    BackendListResponse,
    BackendStatusResponse,
    ErrorResponse,
    JobListResponse,
    JobResponse,
    LoginResponse,
    RunJobResponse,
    UserInfoResponse,
    VersionResponse,
)
from runtime_job.server import LocalRuntimeServer, ProgramRegistry, launcher
from runtime_job.server.paths import DataDir
from runtime_job.server.programs import builtin_programs, qiskit_available
from tests.integration.helpers import ALICE, Api, alive, wait_gone
from tests.support.waiting import wait_until


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("runtime-job")}


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    before = _threads()
    server = LocalRuntimeServer(data_dir=tmp_path, tokens=["t" * 20], workers=2)
    server.start()
    try:
        pids = server.worker_pids()
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        assert {"runtime-job-server", "runtime-job-runner"} <= _threads()
        api = Api(server.url, "t" * 20)
        try:
            job_id = api.submit("sleep", {"seconds": 30})
            api.wait_status(job_id, ("RUNNING",))
        finally:
            api.close()
    finally:
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert not any(alive(pid) for pid in pids)
    assert _threads() == before
    assert not (tmp_path / "server.json").exists()
    # The job that was running when the server stopped is failed, not left running.
    with LocalRuntimeServer(data_dir=tmp_path, tokens=["t" * 20], workers=1) as again:
        api = Api(again.url, "t" * 20)
        try:
            assert api.job(job_id)["state"] == {"status": "FAILED", "reason": "server stopped"}
        finally:
            api.close()


def test_gc_freeze_holds_while_serving_and_only_if_asked(tmp_path: Path) -> None:
    assert gc.get_freeze_count() == 0
    with LocalRuntimeServer(data_dir=tmp_path / "a", tokens=["t" * 20], workers=1):
        assert gc.get_freeze_count() == 0  # embedded: the program's objects are its own
    with LocalRuntimeServer(
        data_dir=tmp_path / "b", tokens=["t" * 20], workers=1, gc_freeze=True
    ) as server:
        assert gc.get_freeze_count() > 1000  # the imports and the app at least
        with contextlib.closing(Api(server.url, "t" * 20)) as api:
            assert api.get("/api/version").status_code == 200
    assert gc.get_freeze_count() == 0


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="TLS"):
        LocalRuntimeServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="together"):
        LocalRuntimeServer(tls_cert="cert.pem")
    with pytest.raises(ValueError):
        LocalRuntimeServer(workers=0)
    with pytest.raises(ValueError):
        LocalRuntimeServer(tokens=[])
    LocalRuntimeServer(host="0.0.0.0", insecure_bind=True)
    LocalRuntimeServer(host="localhost")


def _nested() -> None:
    pass


def test_program_registry_checks() -> None:
    registry = ProgramRegistry()
    assert {"hello-world", "stream", "echo", "fail", "sleep"} <= set(registry)
    assert ("sampler" in registry) == qiskit_available() == ("estimator" in builtin_programs())
    with pytest.raises(ValueError, match="program id"):
        registry.register("bad id", "pkg.mod:main")
    with pytest.raises(ValueError, match="path"):
        registry.register("ok", "not a path")
    with pytest.raises(ValueError, match="cannot be sent"):
        registry.register("ok", lambda backend, messenger: None)
    with pytest.raises(ValueError):
        registry.register("ok", 42)  # type: ignore[arg-type]
    registry.register("mine", _nested)
    registry.register("echo", "pkg.mod:replacement")
    assert registry.get("echo") == "pkg.mod:replacement"


def test_tokens_are_stored_hashed(server: LocalRuntimeServer, anon: Api) -> None:
    access = anon.post("/api/users/loginWithToken", json={"apiToken": ALICE}).json()["id"]
    data = b""
    for path in Path(server.data.root).glob("runtime.sqlite3*"):
        data += path.read_bytes()
    assert data
    assert ALICE.encode() not in data
    assert access.encode() not in data


def test_responses_match_the_wire_models(alice: Api, anon: Api) -> None:
    VersionResponse.model_validate(anon.get("/api/version").json())
    login = LoginResponse.model_validate(
        anon.post("/api/users/loginWithToken", json={"apiToken": ALICE}).json()
    )
    info = UserInfoResponse.model_validate(
        anon.get("/api/users/me", headers={"X-Access-Token": login.id}).json()
    )
    assert info.urls.services.runtime == alice.base
    BackendListResponse.model_validate(alice.get("/backends").json())
    BackendStatusResponse.model_validate(alice.get("/backends/local_simulator/status").json())
    created = RunJobResponse.model_validate(
        alice.post("/jobs", json={"program_id": "echo", "params": {"a": 1}}).json()
    )
    alice.wait_final(created.id)
    job = JobResponse.model_validate(alice.get(f"/jobs/{created.id}").json())
    assert job.state is not None and job.state.status == "COMPLETED"
    assert job.program is not None and job.program.id == "echo"
    listing = JobListResponse.model_validate(alice.get("/jobs", params={"limit": 3}).json())
    for item in listing.jobs:
        JobResponse.model_validate(item)
    error = ErrorResponse.model_validate(alice.get("/jobs/nosuchjob").json())
    assert error.errors[0].code == "JOB_NOT_FOUND" and error.trace


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def test_jobs_reuse_the_warm_pool(alice: Api, server: LocalRuntimeServer) -> None:
    """Jobs run on the already started workers: no process is started per job.

    (The latency this buys is measured in bench/, not asserted here.)
    """
    wait_until(lambda: len(server.worker_pids()) >= 2, what="the two warm workers")
    before = set(server.worker_pids())
    assert len(before) == 2
    for i in range(20):
        job = alice.wait_final(alice.submit("echo", {"i": i}))
        assert _stamp(job["created"]) <= _stamp(job["running"]) <= _stamp(job["ended"])
    assert set(server.worker_pids()) == before


# ----------------------------------------------------------------- a server shared by processes

IDLE = 1.0
"""The idle timeout (seconds) of the background servers these tests start."""

_CLIENT = r"""
import json, sys
from runtime_job import RuntimeService
from runtime_job.server.paths import DataDir

service = RuntimeService(channel="local", data_dir=sys.argv[1])
info = DataDir.resolve(sys.argv[1]).read_server_info() or {}
print(json.dumps({"pid": info.get("pid"), "url": info.get("url")}), flush=True)
jobs = {}
for line in sys.stdin:
    command, *args = json.loads(line)
    try:
        if command == "run":
            job = service.run(args[0], inputs=args[1])
            jobs[job.job_id()] = job
            reply = job.job_id()
        elif command == "status":
            reply = jobs[args[0]].status().name
        else:
            reply = jobs[args[0]].result(timeout=60)
    except Exception as err:
        reply = {"error": repr(err)}
    print(json.dumps(reply), flush=True)
"""


class Client:
    """A Python process using the data directory's server through ``RuntimeService``.

    It prints the server's pid and URL once connected, then answers one JSON line per
    command: ``["run", program, inputs]`` (the job id), ``["status", id]``, ``["result", id]``.
    Closing its standard input ends it.
    """

    def __init__(self, data_dir: Path, home: Path, idle: float = IDLE) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QISKIT_IBM_")}
        env.update(HOME=str(home), RUNTIME_JOB_SERVER_IDLE_TIMEOUT=str(idle))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.process.pid
        self._buffer = b""
        self._hello: dict[str, Any] | None = None

    def hello(self) -> dict[str, Any]:
        """``{"pid", "url"}`` of the server this client started or joined."""
        if self._hello is None:
            self._hello = self._reply(60)
        return self._hello

    def ask(self, *command: Any, timeout: float = 60) -> Any:
        """Send one command and return its reply."""
        self.hello()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def _reply(self, timeout: float) -> Any:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait(10)
                assert self.process.stderr is not None
                err = self.process.stderr.read().decode(errors="replace")
                raise AssertionError(f"client {self.pid} gave no answer: {err[-2000:]}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def exit(self, timeout: float = 20) -> int:
        """Close its standard input and wait for it to exit; its exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout)
        return self.process.returncode

    def stop(self) -> None:
        """Kill it (by its pid) unless it has exited."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _stop_server(pid: int | None) -> None:
    """Stop a background server a test started (by its pid), if it still runs."""
    if pid is None or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone([pid], timeout=10):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Path, Callable[..., Client]]]:
    """A data directory and a way to start clients on it; every process stopped after."""
    data_dir, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    clients: list[Client] = []

    def new_client(idle: float = IDLE) -> Client:
        clients.append(Client(data_dir, home, idle))
        return clients[-1]

    try:
        yield data_dir, new_client
    finally:
        for client in clients:
            client.stop()
        info = DataDir.resolve(data_dir).read_server_info() or {}
        pids = {info.get("pid")} | {c._hello.get("pid") for c in clients if c._hello}
        for pid in pids:
            _stop_server(pid if isinstance(pid, int) else None)


def test_the_server_outlives_the_process_that_started_it(
    shared: tuple[Path, Callable[..., Client]],
) -> None:
    data_dir, new_client = shared
    a = new_client()
    server = a.hello()
    assert server["pid"] not in (None, a.pid) and alive(server["pid"])
    first = a.ask("run", "echo", {"n": 1})
    assert a.ask("result", first) == {"n": 1}

    b = new_client()
    assert b.hello() == server  # joined, not started another
    running = b.ask("run", "sleep", {"seconds": 5})
    wait_until(lambda: b.ask("status", running) == "RUNNING", 20, "B's job to run")
    assert a.exit() == 0
    # A is gone and the idle timeout (1 s) is far shorter than B's job: B's lease kept it.
    assert b.ask("status", running) == "RUNNING"
    assert b.ask("result", running) == {"slept": 5}
    more = b.ask("run", "echo", {"n": 2})
    assert b.ask("result", more) == {"n": 2}
    assert alive(server["pid"])

    assert b.exit() == 0
    wait_until(lambda: not alive(server["pid"]), IDLE + 10, "the idle server to stop")
    assert not (data_dir / "server.json").exists()


def test_a_killed_client_does_not_keep_the_server(
    shared: tuple[Path, Callable[..., Client]],
) -> None:
    _, new_client = shared
    client = new_client()
    pid = client.hello()["pid"]
    client.process.send_signal(signal.SIGKILL)
    client.process.wait(10)
    wait_until(lambda: not alive(pid), IDLE + 10, "the server of a killed client to stop")


def test_clients_starting_at_once_share_one_server(
    shared: tuple[Path, Callable[..., Client]],
) -> None:
    _, new_client = shared
    clients = [new_client() for _ in range(3)]
    servers = [client.hello() for client in clients]
    assert servers[0] == servers[1] == servers[2]
    assert alive(servers[0]["pid"])


def test_serve_stop_ends_a_server_in_use(shared: tuple[Path, Callable[..., Client]]) -> None:
    data_dir, new_client = shared
    client = new_client()
    pid = client.hello()["pid"]
    job = client.ask("run", "sleep", {"seconds": 30})
    wait_until(lambda: client.ask("status", job) == "RUNNING", 20, "the job to run")
    stopped = subprocess.run(
        [sys.executable, "-m", "runtime_job.cli", "serve", "--stop", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert f"(pid {pid})" in stopped.stdout
    assert wait_gone([pid], timeout=5) == []
    assert not (data_dir / "server.json").exists()


def test_a_server_whose_directory_is_gone_stops_with_its_last_client(
    shared: tuple[Path, Callable[..., Client]],
) -> None:
    """A deleted data directory (a temporary one, say) leaves nobody who could join."""
    data_dir, new_client = shared
    client = new_client(idle=600)
    server = client.hello()
    job = client.ask("run", "echo", {"n": 3})
    assert client.ask("result", job) == {"n": 3}
    shutil.rmtree(data_dir)
    assert alive(server["pid"])
    assert client.exit() == 0
    wait_until(lambda: not alive(server["pid"]), 10, "the orphaned server to stop")


def test_a_stopping_server_is_not_joined(tmp_path: Path) -> None:
    """While a server stops it holds the clients lock: nobody joins or starts meanwhile."""
    data = DataDir.resolve(tmp_path)
    data.create()
    fd = os.open(data.root / launcher.CLIENTS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="still stopping"):
            launcher.ensure_local_server(tmp_path, timeout=0.3)
        assert launcher.join_local_server(tmp_path) is None
        assert not data.server_json.exists()
    finally:
        os.close(fd)


def test_a_lease_on_a_read_only_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock file that cannot be opened for writing is locked read-only: still a lease."""
    data = DataDir.resolve(tmp_path)
    data.create()
    (data.root / launcher.CLIENTS_LOCK).touch()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(launcher.CLIENTS_LOCK) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    try:
        assert launcher._take_lease(data, 0.0) is launcher._Lease.HELD
        probe = real_open(data.root / launcher.CLIENTS_LOCK, os.O_RDWR)
        try:
            assert launcher._try_flock(probe, fcntl.LOCK_EX) is False  # the lease holds
        finally:
            os.close(probe)
    finally:
        launcher._release_lease(data.root)
