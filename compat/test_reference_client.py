"""The unmodified reference client (qiskit-ibm-runtime 0.11.2) against ``runtime-job serve``.

Every test goes through the reference's public API only; what is asserted is what a user of
the reference would rely on. Programs are the server's built-ins: ``stream``, ``echo``,
``fail`` and ``sleep`` (``hello-world`` is refused by the reference client itself).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from qiskit.providers.jobstatus import JOB_FINAL_STATES, JobStatus
from qiskit_ibm_runtime import QiskitRuntimeService, RuntimeJob, Session
from qiskit_ibm_runtime.exceptions import (
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
)

BACKEND = "local_simulator"
INSTANCE = "local/default/main"
PENDING = (JobStatus.QUEUED, JobStatus.RUNNING)


def opts(**extra: Any) -> dict[str, Any]:
    """Fresh run options (the reference mutates the dict it is given in sessions)."""
    return {"backend": BACKEND, **extra}


def new_tag() -> str:
    return f"compat-{uuid.uuid4().hex[:12]}"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def wait_final(job: RuntimeJob, timeout: float = 30.0) -> JobStatus:
    """Poll ``status()`` until the job is final; return the final status."""
    box: list[JobStatus] = []

    def final() -> bool:
        box.append(job.status())
        return box[-1] in JOB_FINAL_STATES

    wait_until(final, timeout, f"job {job.job_id()} to finish (last status {box[-1:]})")
    return box[-1]


def ids(jobs: list[RuntimeJob]) -> list[str]:
    return [job.job_id() for job in jobs]


class Collector:
    """A thread-safe callback recording ``(job_id, message)`` pairs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[str, Any]] = []

    def __call__(self, job_id: str, message: Any) -> None:
        with self._lock:
            self._calls.append((job_id, message))

    def calls(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._calls)

    def settle(self, expected: int, timeout: float = 10.0, quiet: float = 0.5) -> list[Any]:
        """Wait (bounded) for ``expected`` calls, then a quiet period to catch extras."""
        wait_until(lambda: len(self.calls()) >= expected, timeout, f"{expected} callback calls")
        time.sleep(quiet)
        return self.calls()


def stream_messages(count: int) -> list[dict[str, Any]]:
    """What the ``stream`` program publishes with ``size=0``, then its final result."""
    return [{"index": i, "data": []} for i in range(count)] + [{"count": count}]


def assert_same(actual: Any, expected: Any, path: str = "result") -> None:
    """Deep equality that also checks types, ndarrays and datetimes exactly."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{path}: {type(actual).__name__}, not ndarray"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape}"
        assert np.array_equal(actual, expected), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {type(actual).__name__}, not dict"
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)}"
        for key, value in expected.items():
            assert_same(actual[key], value, f"{path}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple), f"{path}: {type(actual).__name__}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    else:
        assert type(actual) is type(expected), (
            f"{path}: {type(actual).__name__} {actual!r}, expected {type(expected).__name__}"
        )
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
        if isinstance(expected, datetime):
            assert actual.utcoffset() == expected.utcoffset(), f"{path}: tz {actual.tzinfo}"


# ----------------------------------------------------------------------------------------------
# Login and backends
# ----------------------------------------------------------------------------------------------


def test_login_and_backends(service: QiskitRuntimeService) -> None:
    assert service.channel == "ibm_quantum"
    assert BACKEND in [backend.name for backend in service.backends()]
    # Unknown instances raise; the server's one hub/group/project is known and has the backend.
    assert [backend.name for backend in service.backends(instance=INSTANCE)] == [BACKEND]
    backend = service.backend(BACKEND)
    assert backend.name == BACKEND
    status = backend.status()
    # run() warns unless an operational backend says "active".
    assert status.operational is True
    assert status.status_msg == "active"


def test_login_with_wrong_token_is_rejected(server: Any) -> None:
    with pytest.raises(Exception) as info:
        QiskitRuntimeService(
            channel="ibm_quantum", url=f"{server.base_url}/api", token="not-the-token", verify=False
        )
    assert getattr(info.value, "status_code", None) == 401, repr(info.value)


# ----------------------------------------------------------------------------------------------
# Running and streaming
# ----------------------------------------------------------------------------------------------


def test_run_result_and_status(service: QiskitRuntimeService) -> None:
    job = service.run("stream", inputs={"count": 3, "interval": 0.05}, options=opts())
    assert job.job_id()
    assert job.program_id == "stream"
    assert job.result() == {"count": 3}
    assert job.status() is JobStatus.DONE
    assert job.error_message() is None


def test_run_with_callback_gets_every_message_once_in_order(
    service: QiskitRuntimeService,
) -> None:
    collector = Collector()
    job = service.run(
        "stream", inputs={"count": 3, "interval": 0.05}, options=opts(), callback=collector
    )
    assert job.result() == {"count": 3}
    calls = collector.settle(expected=4)
    assert [message for _, message in calls] == stream_messages(3)
    assert {job_id for job_id, _ in calls} == {job.job_id()}


def test_stream_results_on_running_job(service: QiskitRuntimeService) -> None:
    job = service.run("stream", inputs={"count": 6, "interval": 0.2}, options=opts())
    # Let it publish before anyone listens: a late stream must still get those messages.
    wait_until(lambda: len(job.interim_results() or []) >= 1, 10, "a first interim result")
    assert job.status() in PENDING
    collector = Collector()
    job.stream_results(collector)
    assert job.result() == {"count": 6}
    calls = collector.settle(expected=7)
    assert [message for _, message in calls] == stream_messages(6)
    assert {job_id for job_id, _ in calls} == {job.job_id()}


def test_unknown_program_is_not_found(service: QiskitRuntimeService) -> None:
    with pytest.raises(RuntimeProgramNotFound):
        service.run("no-such-program", inputs={}, options=opts())


# ----------------------------------------------------------------------------------------------
# A finished job's accessors
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_stream_job(service: QiskitRuntimeService) -> RuntimeJob:
    job = service.run("stream", inputs={"count": 3, "interval": 0.05}, options=opts())
    assert job.result() == {"count": 3}
    return job


def test_interim_results(finished_stream_job: RuntimeJob) -> None:
    assert finished_stream_job.interim_results() == stream_messages(3)[:-1]


def test_logs_and_metrics(finished_stream_job: RuntimeJob) -> None:
    assert isinstance(finished_stream_job.logs(), str)
    metrics = finished_stream_job.metrics()
    assert isinstance(metrics, dict)
    stamps = metrics["timestamps"]
    times = [
        datetime.fromisoformat(stamps[key].replace("Z", "+00:00"))
        for key in ("created", "running", "finished")
    ]
    assert times == sorted(times), stamps


def test_inputs_creation_date_and_backend(
    service: QiskitRuntimeService, finished_stream_job: RuntimeJob
) -> None:
    job = finished_stream_job
    assert job.inputs == {"count": 3, "interval": 0.05}
    created = job.creation_date
    assert isinstance(created, datetime)
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert job.backend().name == BACKEND


def test_retrieved_job_matches(
    service: QiskitRuntimeService, finished_stream_job: RuntimeJob
) -> None:
    job = finished_stream_job
    fetched = service.job(job.job_id())
    assert fetched.job_id() == job.job_id()
    assert fetched.program_id == "stream"
    assert fetched.inputs == {"count": 3, "interval": 0.05}
    assert fetched.creation_date == job.creation_date
    assert fetched.backend().name == BACKEND
    assert fetched.status() is JobStatus.DONE
    assert fetched.result() == {"count": 3}
    assert fetched.interim_results() == stream_messages(3)[:-1]


def test_unknown_job_is_not_found(service: QiskitRuntimeService) -> None:
    with pytest.raises(RuntimeJobNotFound):
        service.job("no-such-job-" + uuid.uuid4().hex)


# ----------------------------------------------------------------------------------------------
# The codec, end to end (client encoder -> server -> program -> server -> client decoder)
# ----------------------------------------------------------------------------------------------


def test_echo_round_trip(service: QiskitRuntimeService) -> None:
    inputs = {
        "z": 1.5 - 2.25j,
        "array": np.array([[0.5, 1.0], [2.0, -3.25]]),
        "when": datetime(2023, 6, 20, 12, 0, 0),
    }
    job = service.run("echo", inputs=inputs, options=opts())
    assert_same(job.result(), inputs)
    assert_same(service.job(job.job_id()).inputs, inputs, "retrieved inputs")


def test_echo_more_types(service: QiskitRuntimeService) -> None:
    inputs = {
        "set": {1, 2, 3},
        "ints": np.arange(6, dtype=np.int64).reshape(2, 3),
        "complex_array": np.array([1 + 1j, -2.5j]),
        "aware": datetime(2023, 6, 20, 12, 0, 0, 123456, tzinfo=UTC),
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}, "none": None},
        "big": 2**70,
        "text": 'héllo \u2603 "quoted" \\ url',
    }
    job = service.run("echo", inputs=inputs, options=opts())
    assert_same(job.result(), inputs)


# ----------------------------------------------------------------------------------------------
# Failures, timeouts, cancellation
# ----------------------------------------------------------------------------------------------


def test_failing_program(service: QiskitRuntimeService) -> None:
    message = f"compat failure {uuid.uuid4().hex[:8]}"
    job = service.run("fail", inputs={"message": message}, options=opts())
    assert wait_final(job) is JobStatus.ERROR
    error = job.error_message()
    assert error is not None
    assert error.startswith(f"Job {job.job_id()} has failed")
    assert "Traceback" in error
    assert message in error
    with pytest.raises(RuntimeJobFailureError):
        job.result()
    assert service.job(job.job_id()).status() is JobStatus.ERROR


def test_max_execution_time_exceeded(service: QiskitRuntimeService) -> None:
    started = time.monotonic()
    job = service.run("sleep", inputs={"seconds": 20}, options=opts(max_execution_time=1))
    assert wait_final(job, timeout=15) is JobStatus.ERROR
    assert time.monotonic() - started < 15
    with pytest.raises(RuntimeJobMaxTimeoutError):
        job.result()
    error = job.error_message()
    assert error is not None
    assert "ran longer than maximum execution time" in error


def test_cancel_running_job(service: QiskitRuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 30}, options=opts())
    try:
        wait_until(lambda: job.status() is JobStatus.RUNNING, 20, "the sleep job to run")
        job.cancel()
    finally:
        if job.status() not in JOB_FINAL_STATES:
            service.job(job.job_id()).cancel()
    assert job.status() is JobStatus.CANCELLED
    fetched = service.job(job.job_id())
    assert fetched.status() is JobStatus.CANCELLED
    with pytest.raises(RuntimeInvalidStateError):
        fetched.result()


def test_wait_for_final_state_times_out_then_cancel(service: QiskitRuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 30}, options=opts())
    try:
        # The websocket stays open and quiet while the job runs; the wait gives up.
        with pytest.raises(RuntimeJobTimeoutError):
            job.wait_for_final_state(timeout=1)
        assert job.status() in PENDING
    finally:
        job.cancel()
    assert service.job(job.job_id()).status() is JobStatus.CANCELLED


def test_cancel_finished_job_is_rejected(service: QiskitRuntimeService) -> None:
    job = service.run("echo", inputs={"x": 1}, options=opts())
    assert job.result() == {"x": 1}
    with pytest.raises(RuntimeInvalidStateError):
        job.cancel()  # the server must answer 409
    assert service.job(job.job_id()).status() is JobStatus.DONE


# ----------------------------------------------------------------------------------------------
# Listing, retrieving, deleting
# ----------------------------------------------------------------------------------------------


def test_jobs_listing_and_filters(service: QiskitRuntimeService) -> None:
    tag = new_tag()
    first = service.run("echo", inputs={"n": 1}, options=opts(job_tags=[tag, f"{tag}-a"]))
    second = service.run("echo", inputs={"n": 2}, options=opts(job_tags=[tag]))
    assert first.result() == {"n": 1}
    assert second.result() == {"n": 2}
    a, b = first.job_id(), second.job_id()

    everything = ids(service.jobs(limit=None))
    assert a in everything and b in everything
    assert everything.index(b) < everything.index(a), "newest first by default"

    assert ids(service.jobs(limit=None, job_tags=[tag])) == [b, a]
    assert ids(service.jobs(limit=None, job_tags=[tag], descending=False)) == [a, b]
    assert ids(service.jobs(limit=None, job_tags=[tag, f"{tag}-a"])) == [a]
    assert ids(service.jobs(limit=1, job_tags=[tag])) == [b]
    assert ids(service.jobs(limit=1, skip=1, job_tags=[tag])) == [a]
    assert ids(service.jobs(limit=None, job_tags=[tag], program_id="echo")) == [b, a]
    assert ids(service.jobs(limit=None, job_tags=[tag], program_id="stream")) == []
    assert ids(service.jobs(limit=None, job_tags=[tag], backend_name=BACKEND)) == [b, a]
    assert ids(service.jobs(limit=None, job_tags=[tag], pending=False)) == [b, a]
    assert ids(service.jobs(limit=None, job_tags=[tag], pending=True)) == []
    assert ids(service.jobs(limit=None, job_tags=[tag], instance=INSTANCE)) == [b, a]

    # Time filters go out as UTC ISO strings (the reference treats naive times as local).
    second_ago = timedelta(seconds=1)
    a_created, b_created = first.creation_date, second.creation_date
    assert a_created <= b_created
    window = {"created_after": a_created - second_ago, "created_before": b_created + second_ago}
    assert ids(service.jobs(limit=None, job_tags=[tag], **window)) == [b, a]
    too_early = {"created_before": a_created - second_ago}
    too_late = {"created_after": b_created + second_ago}
    assert ids(service.jobs(limit=None, job_tags=[tag], **too_early)) == []
    assert ids(service.jobs(limit=None, job_tags=[tag], **too_late)) == []
    naive_minute_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    assert ids(service.jobs(limit=None, job_tags=[tag], created_after=naive_minute_ago)) == [b, a]

    echo_jobs = service.jobs(limit=None, program_id="echo")
    assert a in ids(echo_jobs)
    assert {job.program_id for job in echo_jobs} == {"echo"}

    listed = {job.job_id(): job for job in service.jobs(limit=None, job_tags=[tag])}
    assert sorted(listed[a].tags) == sorted([tag, f"{tag}-a"])
    assert listed[b].tags == [tag]
    assert listed[a].inputs == {"n": 1}
    assert listed[a].creation_date is not None
    assert listed[a].backend().name == BACKEND


def test_jobs_pending_filter(service: QiskitRuntimeService) -> None:
    tag = new_tag()
    job = service.run("sleep", inputs={"seconds": 30}, options=opts(job_tags=[tag]))
    try:
        wait_until(lambda: job.status() is JobStatus.RUNNING, 20, "the sleep job to run")
        assert ids(service.jobs(limit=None, job_tags=[tag], pending=True)) == [job.job_id()]
        assert ids(service.jobs(limit=None, job_tags=[tag], pending=False)) == []
        assert job.job_id() in ids(service.jobs(limit=None, pending=True))
        assert job.job_id() not in ids(service.jobs(limit=None, pending=False))
    finally:
        job.cancel()
    assert ids(service.jobs(limit=None, job_tags=[tag], pending=False)) == [job.job_id()]


def test_retrieve_and_delete_job(service: QiskitRuntimeService) -> None:
    tag = new_tag()
    job = service.run("echo", inputs={"keep": False}, options=opts(job_tags=[tag]))
    assert job.result() == {"keep": False}
    fetched = service.job(job.job_id())
    assert fetched.job_id() == job.job_id()
    assert fetched.tags == [tag]

    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job(job.job_id())
    assert ids(service.jobs(limit=None, job_tags=[tag])) == []
    with pytest.raises(RuntimeJobNotFound):
        service.delete_job(job.job_id())


# ----------------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------------


def test_session_runs_jobs_and_closes(service: QiskitRuntimeService) -> None:
    with Session(service=service, backend=BACKEND, max_time=600) as session:
        first = session.run("echo", inputs={"step": 1})
        second = session.run("echo", inputs={"step": 2})
        assert session.session_id == first.job_id()
        assert first.result() == {"step": 1}
        assert second.result() == {"step": 2}
        assert second.session_id == first.job_id()
        in_session = ids(service.jobs(limit=None, session_id=first.job_id()))
        assert second.job_id() in in_session
        session.close()
    assert first.session_id == first.job_id(), "the first job of a session names it"
    assert sorted(in_session) == sorted([first.job_id(), second.job_id()])


# ----------------------------------------------------------------------------------------------
# Paging (last: it queues many jobs)
# ----------------------------------------------------------------------------------------------


def test_jobs_paging_terminates_and_is_complete(service: QiskitRuntimeService) -> None:
    tag = new_tag()
    created = [
        service.run("echo", inputs={"i": i}, options=opts(job_tags=[tag])).job_id()
        for i in range(23)
    ]
    newest_first = created[::-1]
    assert ids(service.jobs(limit=None, job_tags=[tag])) == newest_first
    assert ids(service.jobs(limit=None, job_tags=[tag], descending=False)) == created
    assert ids(service.jobs(limit=15, skip=5, job_tags=[tag])) == newest_first[5:20]
    assert ids(service.jobs(job_tags=[tag])) == newest_first[:10]
    wait_until(
        lambda: not service.jobs(limit=None, job_tags=[tag], pending=True),
        60,
        "the 23 echo jobs to finish",
    )
    last = service.job(created[-1])
    assert last.status() is JobStatus.DONE
    assert last.result() == {"i": 22}
