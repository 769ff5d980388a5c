"""Job lifecycle on the local server: run, fail, cancel, time out, delete, isolate."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from runtime_job.server import LocalRuntimeServer
from runtime_job.server.config import STREAM_BATCH_ROWS
from tests.integration.helpers import Api, alive, wait_gone
from tests.support import wait_until

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_hello_world_completes(alice: Api) -> None:
    job_id = alice.submit("hello-world", {"iterations": 3}, tags=["t1"], log_level="INFO")
    job = alice.wait_final(job_id)
    assert job["state"] == {"status": "COMPLETED", "reason": None}
    assert job["id"] == job_id
    assert job["backend"] == "local_simulator"
    assert job["program"] == {"id": "hello-world"}
    assert job["params"] == {"iterations": 3}
    assert job["tags"] == ["t1"]
    assert (job["hub"], job["group"], job["project"]) == ("local", "default", "main")
    assert ISO_Z.match(job["created"])
    assert alice.get(f"/jobs/{job_id}/results").text == '"Hello, World!"'
    interim = alice.get(f"/jobs/{job_id}/interim_results")
    assert interim.json() == [{"iteration": 1}, {"iteration": 2}, {"iteration": 3}]


def test_exclude_params(alice: Api) -> None:
    job_id = alice.submit("echo", {"a": 1})
    body = alice.get(f"/jobs/{job_id}", params={"exclude_params": "true"}).json()
    assert "params" not in body
    assert alice.get(f"/jobs/{job_id}").json()["params"] == {"a": 1}


def test_params_keep_codec_tags_and_echo_returns_them(alice: Api) -> None:
    params = {
        "z": {"__type__": "complex", "__value__": [1.0, 2.0]},
        "s": {"__type__": "set", "__value__": [1, 2]},
        "nested": {"list": [1, "two", None]},
    }
    job_id = alice.submit("echo", params)
    assert alice.wait_final(job_id)["state"]["status"] == "COMPLETED"
    assert alice.job(job_id)["params"] == params
    result = json.loads(alice.get(f"/jobs/{job_id}/results").text)
    assert result["z"] == {"__type__": "complex", "__value__": [1.0, 2.0]}
    assert result["nested"] == {"list": [1, "two", None]}


def test_failed_job_has_its_traceback(alice: Api) -> None:
    job_id = alice.submit("fail", {"message": "kaput"})
    job = alice.wait_final(job_id)
    assert job["state"]["status"] == "FAILED"
    text = alice.get(f"/jobs/{job_id}/results").text
    assert "Traceback" in text and "RuntimeError: kaput" in text
    assert "RuntimeError: kaput" in alice.get(f"/jobs/{job_id}/logs").text


def test_sleep_completes(alice: Api) -> None:
    job_id = alice.submit("sleep", {"seconds": 0.05})
    assert alice.wait_final(job_id)["state"]["status"] == "COMPLETED"
    assert alice.get(f"/jobs/{job_id}/results").json() == {"slept": 0.05}


def test_stream_program_publishes_in_order(alice: Api) -> None:
    job_id = alice.submit("stream", {"count": 25, "interval": 0, "size": 2})
    alice.wait_final(job_id)
    interim = alice.get(f"/jobs/{job_id}/interim_results").json()
    assert interim == [{"index": i, "data": [0.0, 0.0]} for i in range(25)]
    assert alice.get(f"/jobs/{job_id}/results").json() == {"count": 25}


def test_many_interim_results_are_one_array_sent_a_batch_at_a_time(alice: Api) -> None:
    small = alice.submit("stream", {"count": 25, "interval": 0, "size": 2})
    many = alice.submit("stream", {"count": 3 * STREAM_BATCH_ROWS + 5, "interval": 0, "size": 1})
    alice.wait_final(small)
    alice.wait_final(many)
    one_body = alice.get(f"/jobs/{small}/interim_results")
    assert one_body.headers["Content-Length"] == str(len(one_body.content))
    streamed = alice.get(f"/jobs/{many}/interim_results")
    assert streamed.headers.get("Transfer-Encoding") == "chunked"
    expected = [{"index": i, "data": [0.0]} for i in range(3 * STREAM_BATCH_ROWS + 5)]
    assert streamed.json() == expected


def test_logs_hold_stdout_and_stderr(alice: Api) -> None:
    job_id = alice.submit("printer", {"lines": 3})
    alice.wait_final(job_id)
    logs = alice.get(f"/jobs/{job_id}/logs").text
    assert "stdout line 0\nstdout line 1\nstdout line 2\n" in logs
    assert "to stderr" in logs


def test_metrics_shape(alice: Api) -> None:
    job_id = alice.submit("sleep", {"seconds": 0.1})
    alice.wait_final(job_id)
    metrics = alice.get(f"/jobs/{job_id}/metrics").json()
    stamps = metrics["timestamps"]
    assert all(ISO_Z.match(stamps[key]) for key in ("created", "running", "finished"))
    assert stamps["created"] <= stamps["running"] <= stamps["finished"]
    assert isinstance(metrics["bss"]["seconds"], int)
    assert 0.09 <= metrics["usage"]["seconds"] < 5


def test_programs_registered_by_path_and_callable(alice: Api) -> None:
    job_id = alice.submit("final-publisher", {"value": 7})
    assert alice.wait_final(job_id)["state"]["status"] == "COMPLETED"
    assert alice.get(f"/jobs/{job_id}/results").json() == {"final": 7}
    assert alice.get(f"/jobs/{job_id}/interim_results").json() == [{"interim": True}]
    job_id = alice.submit("backend-name")
    alice.wait_final(job_id)
    assert alice.get(f"/jobs/{job_id}/results").json() == "local_simulator"


def test_results_of_a_running_job_is_409(alice: Api) -> None:
    job_id = alice.submit("sleep", {"seconds": 0.5})
    alice.wait_status(job_id, ("RUNNING",))
    response = alice.get(f"/jobs/{job_id}/results")
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "JOB_NOT_FINAL"
    assert alice.get(f"/jobs/{job_id}/logs").status_code == 200
    assert alice.wait_final(job_id)["state"]["status"] == "COMPLETED"


def test_cancel_running_job_kills_its_worker(alice: Api, server: LocalRuntimeServer) -> None:
    before = set(server.worker_pids())
    job_id = alice.submit("sleep", {"seconds": 30})
    alice.wait_status(job_id, ("RUNNING",))
    started = time.monotonic()
    response = alice.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 204
    job = alice.job(job_id)
    assert job["state"]["status"] == "CANCELLED"
    again = alice.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    killed = wait_until(
        lambda: before - set(server.worker_pids()), 5, what="the job's worker to be killed"
    )
    assert len(killed) == 1
    assert wait_gone(list(killed)) == []
    assert time.monotonic() - started < 5
    # The pool is refilled and keeps working.
    assert alice.wait_final(alice.submit("echo", {"x": 1}))["state"]["status"] == "COMPLETED"
    wait_until(
        lambda: len(server.worker_pids()) == server.workers, 10, what="the pool to be refilled"
    )


def test_cancel_queued_job_and_queue_position(alice: Api, server: LocalRuntimeServer) -> None:
    blockers = [alice.submit("sleep", {"seconds": 30}) for _ in range(2)]
    for job_id in blockers:
        alice.wait_status(job_id, ("RUNNING",))
    queued = alice.submit("echo", {"q": 1})
    job = alice.job(queued)
    assert job["state"]["status"] == "QUEUED"
    assert job["state"]["queue_position"] == 1
    assert alice.get("/backends/local_simulator/status").json()["length_queue"] >= 1
    assert alice.post(f"/jobs/{queued}/cancel").status_code == 204
    assert alice.job(queued)["state"]["status"] == "CANCELLED"
    for job_id in blockers:
        assert alice.post(f"/jobs/{job_id}/cancel").status_code == 204
    assert alice.wait_final(alice.submit("echo", {}))["state"]["status"] == "COMPLETED"


def test_cost_cancels_a_job_that_runs_too_long(alice: Api) -> None:
    started = time.monotonic()
    job_id = alice.submit("slow-stream", {"count": 100, "interval": 0.1}, cost=1)
    job = alice.wait_final(job_id, timeout=10)
    elapsed = time.monotonic() - started
    assert job["state"] == {"status": "CANCELLED", "reason": "RAN TOO LONG"}
    assert 1.0 <= elapsed < 3.0
    assert "RAN TOO LONG" in alice.get(f"/jobs/{job_id}/results").text
    interim = alice.get(f"/jobs/{job_id}/interim_results").json()
    assert 5 <= len(interim) <= 12
    assert interim == [{"n": i} for i in range(len(interim))]


def test_worker_crash_fails_the_job(alice: Api) -> None:
    job_id = alice.submit("crasher", {"code": 9})
    job = alice.wait_final(job_id)
    assert job["state"]["status"] == "FAILED"
    assert job["state"]["reason"] == "worker process died"
    assert "exit code 9" in alice.get(f"/jobs/{job_id}/results").text
    assert alice.get(f"/jobs/{job_id}/interim_results").json() == [{"before": "crash"}]
    assert alice.wait_final(alice.submit("echo", {}))["state"]["status"] == "COMPLETED"


def test_delete_finished_and_running_jobs(alice: Api, server: LocalRuntimeServer) -> None:
    done = alice.submit("echo", {})
    alice.wait_final(done)
    assert alice.delete(f"/jobs/{done}").status_code == 204
    assert alice.get(f"/jobs/{done}").status_code == 404
    assert alice.delete(f"/jobs/{done}").status_code == 404
    before = set(server.worker_pids())
    running = alice.submit("sleep", {"seconds": 30})
    alice.wait_status(running, ("RUNNING",))
    assert alice.delete(f"/jobs/{running}").status_code == 204
    assert alice.get(f"/jobs/{running}").status_code == 404
    wait_until(lambda: not before <= set(server.worker_pids()), 5, what="a worker replaced")
    assert not all(alive(pid) for pid in before)


def test_session_ids(alice: Api) -> None:
    first = alice.submit("echo", {}, start_session=True, session_time=600)
    assert alice.job(first)["session_id"] == first
    second = alice.submit("echo", {}, session_id=first)
    assert alice.job(second)["session_id"] == first
    assert alice.delete(f"/sessions/{first}/close").status_code == 204
    assert alice.delete(f"/sessions/{first}/close").status_code == 204
    assert alice.delete("/sessions/bad id/close").status_code == 422


def test_users_are_isolated(alice: Api, bob: Api) -> None:
    job_id = alice.submit("echo", {"secret": 1})
    alice.wait_final(job_id)
    for path in ("", "/results", "/interim_results", "/logs", "/metrics"):
        response = bob.get(f"/jobs/{job_id}{path}")
        assert response.status_code == 404, path
        assert response.json()["errors"][0]["code"] == "JOB_NOT_FOUND"
    assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert bob.delete(f"/jobs/{job_id}").status_code == 404
    assert job_id not in [job["id"] for job in bob.get("/jobs").json()["jobs"]]
    assert alice.get(f"/jobs/{job_id}").status_code == 200
    first = alice.submit("echo", {}, start_session=True)
    assert bob.delete(f"/sessions/{first}/close").status_code == 404


def test_idempotent_submission(alice: Api, bob: Api) -> None:
    key = str(uuid.uuid4())
    body = json.dumps({"program_id": "echo", "params": {"k": key}})
    headers = {"Idempotency-Key": key}
    first = alice.post("/jobs", data=body, headers=headers)
    second = alice.post("/jobs", data=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    job_id = first.json()["id"]
    mine = [j for j in alice.get("/jobs", params={"limit": 1000}).json()["jobs"]]
    assert sum(1 for job in mine if job["params"] == {"k": key}) == 1
    other = alice.post("/jobs", data=body.replace("echo", "sleep"), headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    theirs = bob.post("/jobs", data=body, headers=headers)
    assert theirs.status_code == 200 and theirs.json()["id"] != job_id
    assert alice.wait_final(job_id)["state"]["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 422, "INVALID_JSON"),
        (b"[1, 2]", 422, "INVALID_BODY"),
        (b"[" * 100000, 422, "INVALID_JSON"),
        (b'{"params": {}}', 422, "INVALID_FIELD"),
        (b'{"program_id": "../etc/passwd"}', 422, "INVALID_FIELD"),
        (b'{"program_id": "nope"}', 404, "PROGRAM_NOT_FOUND"),
        (b'{"program_id": "echo", "params": 5}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "tags": "x"}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "tags": [1]}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "cost": -1}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "cost": "10"}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "cost": 1' + b"0" * 40 + b"}", 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "cost": true}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "start_session": "yes"}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "backend": "ibmq_qasm_simulator"}', 422, "BACKEND_NOT_FOUND"),
        (b'{"program_id": "echo", "session_id": "a/b"}', 422, "INVALID_ID"),
        (b'{"program_id": "echo", "hub": "x", "group": "y", "project": "z"}', 403, None),
        (b'{"program_id": "echo", "runtime": 5}', 422, "INVALID_FIELD"),
        (b"\xff\xfe\x00", 422, "INVALID_JSON"),
        (b'{"program_id": "echo", "tags": ["\\ud800"]}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "runtime": "\\udfff"}', 422, "INVALID_FIELD"),
        (b'{"program_id": "echo", "params": {"s": "\\ud800"}}', 400, "INVALID_PARAMS"),
    ],
)
def test_malformed_submissions(alice: Api, body: bytes, status: int, code: str | None) -> None:
    response = alice.post("/jobs", data=body)
    assert response.status_code == status, response.text
    if status == 200:
        return
    error = response.json()["errors"][0]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_invalid_idempotency_key_is_422(alice: Api) -> None:
    response = alice.post(
        "/jobs", data=b'{"program_id": "echo"}', headers={"Idempotency-Key": "a b"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("job_id", ["bad id", "x" * 65, "a.b", "%2e%2e"])
def test_invalid_job_ids_are_422(alice: Api, job_id: str) -> None:
    for path in ("", "/results", "/logs", "/metrics", "/interim_results"):
        response = alice.get(f"/jobs/{job_id}{path}")
        assert response.status_code in (404, 422), (path, response.status_code)
        assert response.status_code < 500


def test_unknown_job_is_404(alice: Api) -> None:
    for path in ("", "/results", "/logs", "/metrics", "/interim_results"):
        assert alice.get(f"/jobs/nosuchjob{path}").status_code == 404
    assert alice.post("/jobs/nosuchjob/cancel").status_code == 404


def test_sampler_and_estimator_with_qiskit(alice: Api) -> None:
    pytest.importorskip("qiskit")
    from qiskit import QuantumCircuit

    from runtime_job import codec

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    measured = bell.copy()
    measured.measure_all()
    params = codec.dumps({"circuits": [measured], "run_options": {"shots": None}})
    job_id = alice.submit("sampler", json.loads(params))
    job = alice.wait_final(job_id, timeout=60)
    assert job["state"]["status"] == "COMPLETED", alice.get(f"/jobs/{job_id}/results").text
    result = codec.loads(alice.get(f"/jobs/{job_id}/results").text)
    dist = {int(k, 16): v for k, v in result["quasi_dists"][0].items()}
    assert dist == pytest.approx({0: 0.5, 3: 0.5})
    params = codec.dumps({"circuits": [bell], "observables": ["ZZ"]})
    job_id = alice.submit("estimator", json.loads(params))
    assert alice.wait_final(job_id, timeout=60)["state"]["status"] == "COMPLETED"
    values = codec.loads(alice.get(f"/jobs/{job_id}/results").text)["values"]
    assert values == pytest.approx([1.0])
