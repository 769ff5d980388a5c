"""The embedded server object, its programs, its storage, and the wire models it serves."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

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
from runtime_job.server import LocalRuntimeServer, ProgramRegistry
from runtime_job.server.programs import builtin_programs, qiskit_available
from tests.integration.helpers import ALICE, Api, alive


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
    deadline = time.monotonic() + 10
    while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = set(server.worker_pids())
    assert len(before) == 2
    for i in range(20):
        job = alice.wait_final(alice.submit("echo", {"i": i}))
        assert _stamp(job["created"]) <= _stamp(job["running"]) <= _stamp(job["ended"])
    assert set(server.worker_pids()) == before
