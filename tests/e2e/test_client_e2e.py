"""The client library end to end against the real local server (HTTP, websocket, workers)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from runtime_job import JobStatus, RuntimeJob, RuntimeService
from runtime_job.exceptions import (
    IBMNotAuthorizedError,
    QiskitBackendNotFoundError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
)
from runtime_job.server import LocalRuntimeServer
from tests.support import wait_until

from .conftest import TOKEN


class Recorder:
    """A callback that records what it gets, thread-safely."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, job_id: str, result: Any) -> None:
        with self.lock:
            self.seen.append((job_id, result))


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("runtime-job-stream")]


def test_run_with_callback_gets_every_message_once_in_order(service: RuntimeService) -> None:
    recorder = Recorder()
    job = service.run("hello-world", inputs={"iterations": 4}, callback=recorder)
    assert job.result(timeout=30) == "Hello, World!"
    expected = [(job.job_id(), {"iteration": i}) for i in range(1, 5)]
    assert recorder.seen == [*expected, (job.job_id(), "Hello, World!")]
    assert job.status() is JobStatus.DONE and job.done()
    assert job.interim_results() == [{"iteration": i} for i in range(1, 5)]


def test_job_properties(service: RuntimeService) -> None:
    tags = [f"t-{uuid.uuid4().hex[:8]}"]
    job = service.run("echo", inputs={"z": 1 + 2j}, options={"job_tags": tags})
    assert job.result(timeout=30) == {"z": 1 + 2j}
    assert job.inputs == {"z": 1 + 2j}
    assert job.program_id == "echo" and job.tags == tags
    backend = job.backend()
    assert backend is not None and backend.name == "local_simulator"
    created = job.creation_date
    assert created is not None and abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    metrics = job.metrics()
    assert set(metrics["timestamps"]) >= {"created", "running", "finished"}
    again = service.job(job.job_id())
    assert again.program_id == "echo" and again.tags == tags and again.inputs == {"z": 1 + 2j}
    assert again.status() is JobStatus.DONE


def test_codec_round_trip_through_a_job(service: RuntimeService) -> None:
    when = datetime(2023, 6, 20, 12, 0, tzinfo=UTC)
    inputs = {
        "array": np.arange(12, dtype=np.float64).reshape(3, 4),
        "when": when,
        "set": {1, 2},
        "nested": {"c": [1j, "ü"]},
    }
    result = service.run("echo", inputs=inputs).result(timeout=30)
    np.testing.assert_array_equal(result["array"], inputs["array"])
    assert result["when"] == when and result["set"] == {1, 2}
    assert result["nested"] == {"c": [1j, "ü"]}


def test_failed_job(service: RuntimeService) -> None:
    job = service.run("fail", inputs={"message": "it broke"})
    job.wait_for_final_state(timeout=30)
    assert job.status() is JobStatus.ERROR
    message = job.error_message()
    assert message is not None
    assert message.startswith(f"Job {job.job_id()} has failed:\nTraceback")
    assert "it broke" in message
    with pytest.raises(RuntimeJobFailureError, match="Unable to retrieve job result"):
        job.result()


def test_max_execution_time(service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 30}, options={"max_execution_time": 1})
    with pytest.raises(RuntimeJobMaxTimeoutError) as info:
        job.result(timeout=30)
    assert str(info.value) == "RAN TOO LONG"
    assert job.status() is JobStatus.ERROR
    assert "ran longer than maximum execution time" in (job.error_message() or "")


def test_cancel_running_job(service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 30})
    wait_until(lambda: job.status() is JobStatus.RUNNING, 20, what="the job to run")
    job.cancel()
    assert job.status() is JobStatus.CANCELLED and job.cancelled()
    assert service.job(job.job_id()).status() is JobStatus.CANCELLED
    with pytest.raises(RuntimeInvalidStateError, match="Job was cancelled"):
        job.result()
    with pytest.raises(RuntimeInvalidStateError, match="^Job cannot be cancelled"):
        job.cancel()


def test_result_timeout_is_prompt(service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 30})
    start = time.monotonic()
    with pytest.raises(RuntimeJobTimeoutError):
        job.result(timeout=0.3)
    assert time.monotonic() - start < 1.5
    job.cancel()


def test_stream_results_on_running_job(service: RuntimeService) -> None:
    job = service.run("stream", inputs={"count": 5, "interval": 0.05})
    recorder = Recorder()
    job.stream_results(recorder)
    assert job.result(timeout=30) == {"count": 5}
    assert recorder.seen == [
        *[(job.job_id(), {"index": i, "data": []}) for i in range(5)],
        (job.job_id(), {"count": 5}),
    ]
    with pytest.raises(RuntimeInvalidStateError, match="Job already finished."):
        job.stream_results(recorder)


def test_stream_results_on_a_retrieved_finished_job_is_refused(service: RuntimeService) -> None:
    job = service.run("echo", inputs={})
    job.wait_for_final_state(timeout=30)
    with pytest.raises(RuntimeInvalidStateError, match="^Job already finished.$"):
        service.job(job.job_id()).stream_results(print)


def test_fifty_streaming_jobs_at_once(service: RuntimeService) -> None:
    recorders: dict[str, Recorder] = {}
    jobs: list[RuntimeJob] = []
    for _ in range(50):
        recorder = Recorder()
        job = service.run("stream", inputs={"count": 5, "interval": 0.01}, callback=recorder)
        recorders[job.job_id()] = recorder
        jobs.append(job)
    assert len(stream_threads()) <= 8
    for job in jobs:
        assert job.result(timeout=60) == {"count": 5}
    for job in jobs:
        expected = [{"index": i, "data": []} for i in range(5)] + [{"count": 5}]
        assert [r for _, r in recorders[job.job_id()].seen] == expected
    assert len(stream_threads()) <= 8


def test_unknown_program_and_backend(service: RuntimeService) -> None:
    with pytest.raises(RuntimeProgramNotFound, match="^Program not found"):
        service.run("no-such-program", inputs={})
    with pytest.raises(QiskitBackendNotFoundError):
        service.run("echo", inputs={}, options={"backend": "no_such_backend"})


def test_listing_paging_and_filters(service: RuntimeService) -> None:
    tag = f"list-{uuid.uuid4().hex[:8]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [
        service.run("echo", inputs={"i": i}, options={"job_tags": [tag]}).job_id()
        for i in range(25)
    ]
    found = service.jobs(limit=None, job_tags=[tag])
    assert [j.job_id() for j in found] == list(reversed(ids))
    assert len(service.jobs(limit=21, job_tags=[tag])) == 21
    assert len(service.jobs(limit=30, job_tags=[tag])) == 25
    assert [j.job_id() for j in service.jobs(limit=None, job_tags=[tag], descending=False)] == ids
    assert service.jobs(skip=100, job_tags=[tag]) == []
    assert len(service.jobs(skip=20, limit=None, job_tags=[tag])) == 5
    window = service.jobs(
        limit=None,
        job_tags=[tag],
        created_after=before,
        created_before=datetime.now(UTC) + timedelta(seconds=1),
    )
    assert len(window) == 25
    assert service.jobs(job_tags=[tag], created_after=datetime.now(UTC) + timedelta(hours=1)) == []
    for job in found:
        job.wait_for_final_state(timeout=30)
    assert len(service.jobs(limit=None, job_tags=[tag], pending=False)) == 25
    assert service.jobs(limit=None, job_tags=[tag], pending=True) == []
    assert all(j.program_id == "echo" for j in service.jobs(program_id="echo", limit=5))


def test_delete_job(service: RuntimeService) -> None:
    job = service.run("echo", inputs={})
    job.wait_for_final_state(timeout=30)
    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound, match="^Job not found"):
        service.job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.delete_job(job.job_id())


def test_session_ids(service: RuntimeService) -> None:
    first = service.run("echo", inputs={}, start_session=True)
    second = service.run("echo", inputs={}, session_id=first.job_id())
    assert second.session_id == first.job_id()
    assert {j.job_id() for j in service.jobs(session_id=first.job_id())} >= {second.job_id()}


def test_ibm_quantum_login_against_the_local_server(server: LocalRuntimeServer) -> None:
    with RuntimeService(channel="ibm_quantum", url=server.url + "/api", token=TOKEN) as svc:
        assert [b.name for b in svc.backends()] == ["local_simulator"]
        job = svc.run("echo", inputs={"x": 1}, options={"backend": "local_simulator"})
        assert job.result(timeout=30) == {"x": 1}
        backend = job.backend()
        assert backend is not None and backend._instance == "local/default/main"


def test_wrong_token_is_not_authorized(server: LocalRuntimeServer) -> None:
    with (
        RuntimeService(channel="local", url=server.url, token="wrong-token") as svc,
        pytest.raises(IBMNotAuthorizedError),
    ):
        svc.jobs()
    assert TOKEN not in repr(svc)


def test_cancel_result_streaming_stops_callbacks(service: RuntimeService) -> None:
    recorder = Recorder()
    job = service.run("stream", inputs={"count": 200, "interval": 0.01}, callback=recorder)
    wait_until(lambda: len(recorder.seen) >= 3, 20, what="3 interim results")
    job.cancel_result_streaming()
    assert not job._is_streaming()
    count = len(recorder.seen)
    # The job goes on publishing: once the server holds 10 more, a live stream would have
    # delivered some of them.
    wait_until(lambda: len(job.interim_results()) >= count + 10, 20, what="10 more published")
    assert len(recorder.seen) == count < 200
    job.cancel_result_streaming()  # nothing streaming: no error
    job.cancel()


def test_cancel_result_streaming_after_the_stream_ended(service: RuntimeService) -> None:
    recorder = Recorder()
    job = service.run("hello-world", inputs={"iterations": 1}, callback=recorder)
    job.result(timeout=30)
    assert not job._is_streaming()
    job.cancel_result_streaming()
    assert len(recorder.seen) == 2
