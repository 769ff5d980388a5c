"""Scripted stand-ins for the REST client and the stream hub, for state-logic tests."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime_job.api.models import JobResponse, parse
from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame, StreamListener
from runtime_job.exceptions import ConflictError, NotFoundError, RequestsApiError
from runtime_job.timing import Deadline, clock

FINAL_API_STATUSES = {"COMPLETED", "FAILED", "CANCELLED"}


@dataclass
class FakeJob:
    """A job whose status follows a script, one step per ``job_get``."""

    job_id: str
    program_id: str = "my-program"
    params: Any = field(default_factory=dict)
    backend: str | None = "fake_backend"
    statuses: list[Any] = field(default_factory=lambda: ["QUEUED", "RUNNING", "COMPLETED"])
    result: str = '"foo"'
    interim: str = '["foo"]'
    logs: str = "log line\n"
    metrics: str = '{"timestamps": {}}'
    created: str | None = "2023-06-20T12:00:25.000000Z"
    session_id: str | None = None
    tags: list[str] | None = None
    reason: str | None = None
    cancel_error: int | None = None
    step: int = 0

    @property
    def current(self) -> str:
        return str(self.statuses[min(self.step, len(self.statuses) - 1)])

    def advance(self) -> None:
        self.step += 1

    def to_dict(self, exclude_params: bool = False) -> dict[str, Any]:
        state: dict[str, Any] = {"status": self.current}
        if self.reason is not None:
            state["reason"] = self.reason
        body: dict[str, Any] = {
            "id": self.job_id,
            "state": state,
            "program": {"id": self.program_id},
            "created": self.created,
            "session_id": self.session_id,
            "tags": self.tags,
        }
        if self.backend is not None:
            body["backend"] = self.backend
        if not exclude_params:
            body["params"] = self.params
        return body


def not_found(what: str = "Job not found") -> RequestsApiError:
    return NotFoundError(f"404 Client Error: Not Found. {what}", 404)


def http_error(code: int, text: str = "Error") -> RequestsApiError:
    """The typed error the real transport raises for ``code``."""
    if code == 404:
        return NotFoundError(f"{code} {text}", code)
    if code == 409:
        return ConflictError(f"{code} {text}", code)
    return RequestsApiError(f"{code} {text}", code)


class FakeRuntimeClient:
    """Implements the job and service calls of ``RuntimeClient`` from scripted jobs."""

    def __init__(self, backends: tuple[str, ...] = ("fake_backend", "other_backend")) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.calls: list[tuple[str, Any]] = []
        self.backends = list(backends)
        self.programs = {"my-program", "hello-world", "sampler"}
        self.external: dict[str, bytes] = {}
        self.runs: list[dict[str, Any]] = []
        self.raw_job_override: dict[str, Any] | None = None
        self.deadlines: list[tuple[str, Deadline | None]] = []  # (call, deadline) given
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def add_job(self, job_id: str | None = None, **kwargs: Any) -> FakeJob:
        job = FakeJob(job_id or f"job-{next(self._counter)}", **kwargs)
        self.jobs[job.job_id] = job
        return job

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    def _job(self, job_id: str) -> FakeJob:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise not_found() from None

    # --- JobApi ---------------------------------------------------------------------------

    def fetch_job(
        self,
        job_id: str,
        *,
        exclude_params: bool | None = None,
        deadline: Deadline | None = None,
    ) -> JobResponse:
        """``job_get`` validated, as the real client does (a test that overrides ``job_get``
        shapes both; each counts as one ``job_get``: one ``GET /jobs/{id}``)."""
        self.deadlines.append(("fetch_job", deadline))
        body = self.job_get(job_id, exclude_params)
        return parse(JobResponse, body, "job", job_id)

    def job_get(self, job_id: str, exclude_params: bool | None = None) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("job_get", job_id))
            if self.raw_job_override is not None:
                return self.raw_job_override
            job = self._job(job_id)
            body = job.to_dict(bool(exclude_params))
            job.advance()
            return body

    def job_results(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        self.calls.append(("job_results", job_id))
        self.deadlines.append(("job_results", deadline))
        return self._job(job_id).result

    def job_interim_results(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        self.calls.append(("job_interim_results", job_id))
        return self._job(job_id).interim

    def job_cancel(self, job_id: str, *, deadline: Deadline | None = None) -> None:
        self.calls.append(("job_cancel", job_id))
        job = self._job(job_id)
        if job.cancel_error:
            raise http_error(job.cancel_error, "Error: cannot cancel")
        job.statuses = ["CANCELLED"]
        job.step = 0

    def job_logs(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        self.calls.append(("job_logs", job_id))
        return self._job(job_id).logs

    def job_metadata(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        self.calls.append(("job_metadata", job_id))
        return self._job(job_id).metrics

    def external_result(self, url: str) -> bytes:
        self.calls.append(("external_result", url))
        return self.external[url]

    # --- service calls --------------------------------------------------------------------

    def program_run(self, program_id: str, backend_name: str | None, params: Any, **kw: Any) -> Any:
        self.calls.append(("program_run", program_id))
        if program_id not in self.programs:
            raise not_found("Program not found")
        self.runs.append(
            {"program_id": program_id, "backend": backend_name, "params": params, **kw}
        )
        job = self.add_job(
            uuid.uuid4().hex,
            program_id=program_id,
            params=json.loads(json.dumps(params)),
            backend=backend_name or self.backends[0],
            tags=kw.get("job_tags"),
        )
        return {"id": job.job_id, "backend": job.backend}

    def jobs_get(self, limit: int | None = None, skip: int | None = None, **filters: Any) -> Any:
        self.calls.append(("jobs_get", (limit, skip)))
        found = list(self.jobs.values())
        if filters.get("pending") is not None:
            want = filters["pending"]
            found = [j for j in found if (j.current not in FINAL_API_STATUSES) == want]
        if filters.get("program_id"):
            found = [j for j in found if j.program_id == filters["program_id"]]
        if not filters.get("descending", True):
            found.reverse()
        start = skip or 0
        page = found[start : start + limit] if limit else found[start:]
        return {"jobs": [j.to_dict() for j in page], "count": len(found)}

    def job_delete(self, job_id: str) -> None:
        self.calls.append(("job_delete", job_id))
        self._job(job_id)
        del self.jobs[job_id]

    def list_backends(self, hgp: str | None = None) -> list[str]:
        return list(self.backends)

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        return {
            "backend_name": backend_name,
            "backend_version": "1.0",
            "operational": True,
            "pending_jobs": 0,
            "status_msg": "active",
        }

    def backend_configuration(self, backend_name: str) -> dict[str, Any]:
        return {"backend_name": backend_name}

    def close(self) -> None:
        pass


class FakeSubscription:
    """A stream the test drives by hand: ``push`` frames, then ``end``.

    Its :meth:`wait` really waits, as the hub's does: on a condition that each frame, end
    and :meth:`wake` signal, with the time bound through ``timing.clock`` (so a fake clock
    drives it). The frames are handed to the listener on the test's thread.
    """

    def __init__(self, listener: StreamListener) -> None:
        self.listener = listener
        self._ended = False
        self.cancelled = False
        self.failing = False  # set by a test: the stream is reconnecting
        self.wakes = 0
        self.waits = 0  # calls of wait() (a thread waited on the stream)
        self._cond = threading.Condition()
        self.waiting = 0  # threads in wait() right now

    def push(self, payload: str, **kwargs: Any) -> None:
        self.listener.on_frame(StreamFrame(payload, **kwargs))
        self._signal()

    def end(self, end: StreamEnd = StreamEnd.COMPLETED, error: BaseException | None = None) -> None:
        if not self._ended:
            self._ended = True
            self.listener.on_end(end, error)
            self._signal()

    def set_failing(self, failing: bool) -> None:
        """Say the stream is (or no longer is) reconnecting, as the hub would tell a waiter."""
        self.failing = failing
        self._signal()

    def cancel(self) -> None:
        self.cancelled = True
        self.end(StreamEnd.CANCELLED)

    @property
    def active(self) -> bool:
        return not self._ended

    @property
    def reconnecting(self) -> bool:
        return self.failing and not self._ended

    def wait(self, until: Callable[[], bool], timeout: float) -> bool:
        self.waits += 1
        end = Deadline(timeout)
        with self._cond:
            self.waiting += 1
            self._cond.notify_all()
            try:
                while not until():
                    left = end.remaining()
                    if left is not None and left <= 0:
                        break
                    clock.wait_condition(self._cond, left)
            finally:
                self.waiting -= 1
        return until()

    def wake(self) -> None:
        self.wakes += 1
        self._signal()

    def wait_for_waiter(self, timeout: float = 10.0) -> None:
        """Block until a thread waits on this stream (real seconds at most)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.waiting > 0, timeout):
                raise AssertionError("no thread waited on the stream")

    def _signal(self) -> None:
        with self._cond:
            self._cond.notify_all()


class StreamingFakeClient(FakeRuntimeClient):
    """A fake client that can also open (scripted) streams."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: list[FakeSubscription] = []
        self.reconnecting_streams = False  # new streams say they are reconnecting

    def prepare_streams(self) -> None:
        self.calls.append(("prepare_streams", None))

    def open_stream(self, job_id: str, listener: StreamListener) -> FakeSubscription:
        self.calls.append(("open_stream", job_id))
        sub = FakeSubscription(listener)
        sub.failing = self.reconnecting_streams
        self.subscriptions.append(sub)
        return sub


def params() -> ClientParameters:
    return ClientParameters(channel="local", token="secret-token", url="http://127.0.0.1:1")


def delivered(job: Any, timeout: float = 10.0) -> None:
    """Wait until the job's stream consumers (e.g. its callback) had every frame pushed."""
    from runtime_job._job_stream import core_of

    if not core_of(job).stream.wait_delivered(timeout):
        raise AssertionError(f"the stream of job {job.job_id()} was not delivered in time")
