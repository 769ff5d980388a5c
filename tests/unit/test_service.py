"""RuntimeService run/job/jobs/delete_job against a scripted fake client."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

import pytest

from runtime_job import QiskitRuntimeService, RuntimeJob, RuntimeOptions, RuntimeService
from runtime_job.api.params import ClientParameters
from runtime_job.backend import IBMRetiredBackend
from runtime_job.exceptions import (
    ApiIBMProtocolError,
    IBMInputValueError,
    IBMRuntimeError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
)
from runtime_job.status import JobStatus
from tests.support import FakeClock

from .fakes import FakeRuntimeClient, StreamingFakeClient

HGPS = {
    "hub0/group0/project0": ["common_backend", "unique_backend_0"],
    "hub1/group1/project1": ["common_backend", "unique_backend_1"],
}


def quantum(client: FakeRuntimeClient | None = None) -> RuntimeService:
    client = client or FakeRuntimeClient(backends=("common_backend",))
    params = ClientParameters(channel="ibm_quantum", token="t", url="https://127.0.0.1:1")
    return RuntimeService._with_client(client, params, channel="ibm_quantum", hgps=HGPS)


def cloud(client: FakeRuntimeClient | None = None) -> RuntimeService:
    client = client or FakeRuntimeClient(backends=("common_backend", "unique_backend_0"))
    params = ClientParameters(channel="ibm_cloud", token="t", url="https://c", instance="crn:x")
    return RuntimeService._with_client(client, params, channel="ibm_cloud")


SERVICES = [pytest.param(quantum, id="quantum"), pytest.param(cloud, id="cloud")]


def run(service: RuntimeService, **opts: Any) -> RuntimeJob:
    options = {"backend": "common_backend", **opts}
    return service.run("my-program", inputs={"a": 1, "b": [1.5, "x"]}, options=options)


def test_alias() -> None:
    assert QiskitRuntimeService is RuntimeService


@pytest.mark.parametrize("make", SERVICES)
def test_run_returns_a_job(make: Any) -> None:
    service = make()
    job = run(service)
    assert isinstance(job, RuntimeJob) and job.job_id()
    assert isinstance(job.status(), JobStatus)
    assert job.inputs == {"a": 1, "b": [1.5, "x"]}
    assert job.program_id == "my-program"
    job.wait_for_final_state(timeout=5)
    assert job.status() is JobStatus.DONE and job.result() == "foo"


@pytest.mark.parametrize("make", SERVICES)
def test_unknown_program_and_backend(make: Any) -> None:
    service = make()
    with pytest.raises(RuntimeProgramNotFound, match="^Program not found: 404"):
        service.run("nope", inputs={}, options={"backend": "common_backend"})
    with pytest.raises(QiskitBackendNotFoundError):
        service.run("my-program", inputs={}, options={"backend": "no_such_backend"})


def test_quantum_requires_backend_cloud_does_not() -> None:
    with pytest.raises(IBMInputValueError, match='"backend" is required field'):
        quantum().run("my-program", inputs={}, options={"backend": ""})
    job = cloud().run("my-program", inputs={}, options={})
    backend = job.backend()
    assert backend is not None and backend.name == "common_backend"


def test_quantum_backend_instances() -> None:
    service = quantum(FakeRuntimeClient(backends=("common_backend", "unique_backend_1")))
    job = run(service)
    backend = job.backend()
    assert backend is not None and backend._instance == "hub0/group0/project0"
    job = run(service, backend="unique_backend_1")
    backend = job.backend()
    assert backend is not None and backend._instance == "hub1/group1/project1"
    job = run(service, instance="hub1/group1/project1")
    backend = job.backend()
    assert backend is not None and backend._instance == "hub1/group1/project1"
    with pytest.raises(QiskitBackendNotFoundError):
        run(service, backend="unique_backend_0", instance="hub1/group1/project1")
    with pytest.raises(IBMInputValueError, match="could not be found"):
        run(service, instance="h/g/p")
    with pytest.raises(IBMInputValueError, match="hub/group/project format"):
        run(service, instance="foo")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"image": "bad image"}, '"image" needs to be in form of image_name:tag'),
        ({"log_level": "LOUD"}, "LOUD is not a valid log level"),
        ({"job_tags": "tag"}, "job_tags needs to be a list of strings."),
        ({"job_tags": [1]}, "job_tags needs to be a list of strings."),
    ],
)
def test_option_validation_messages(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(IBMInputValueError, match="^" + message.replace("(", r"\(")):
        run(cloud(), **opts)


def test_instance_is_quantum_only_and_unknown_options_fail() -> None:
    with pytest.raises(IBMInputValueError, match='"instance" is only supported'):
        run(cloud(), instance="h/g/p")
    with pytest.raises(TypeError, match="unexpected option"):
        run(cloud(), colour="blue")


def test_retired_programs() -> None:
    with pytest.raises(IBMInputValueError, match="have been retired"):
        cloud().run("vqe", inputs={})


@pytest.mark.parametrize("make", SERVICES)
def test_run_passes_options_and_keeps_them_on_the_job(make: Any) -> None:
    client = FakeRuntimeClient(backends=("common_backend",))
    service = make(client)
    options = RuntimeOptions(
        backend="common_backend",
        image="name:tag",
        log_level="DEBUG",
        job_tags=["t1"],
        max_execution_time=30,
    )
    job = service.run("my-program", inputs={"x": 1}, options=options, session_id="s1")
    sent = client.runs[-1]
    assert sent["log_level"] == "DEBUG" and sent["image"] == "name:tag"
    assert sent["job_tags"] == ["t1"] and sent["max_execution_time"] == 30
    assert sent["session_id"] == "s1"
    assert job.image == "name:tag" and job.tags == ["t1"] and job.session_id == "s1"
    first = service.run(
        "my-program", inputs={}, options={"backend": "common_backend"}, start_session=True
    )
    assert client.runs[-1]["start_session"] is True
    assert first.session_id == first.job_id()


def test_run_failure_other_than_404() -> None:
    class Broken(FakeRuntimeClient):
        def program_run(self, *args: Any, **kwargs: Any) -> Any:
            raise RequestsApiError("500 Server Error", 500)

    with pytest.raises(IBMRuntimeError, match="^Failed to run program: 500 Server Error$"):
        run(cloud(Broken(backends=("common_backend",))))


@pytest.mark.parametrize("make", SERVICES)
def test_job_retrieval_and_delete(make: Any) -> None:
    service = make()
    job = run(service)
    again = service.job(job.job_id())
    assert again.job_id() == job.job_id() and again.program_id == "my-program"
    # The fake advances one step per GET: the retrieval itself was the first (QUEUED).
    assert again.status() is JobStatus.RUNNING
    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound, match="^Job not found: "):
        service.job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.delete_job(job.job_id())


def test_job_retrieval_other_error_says_retrieve() -> None:
    class Broken(FakeRuntimeClient):
        def job_get(self, job_id: str, exclude_params: bool | None = None) -> Any:
            raise RequestsApiError("503 Server Error", 503)

    with pytest.raises(IBMRuntimeError, match="^Failed to retrieve job: 503"):
        cloud(Broken()).job("x")


def test_retrieved_job_with_unknown_backend_gets_placeholder() -> None:
    client = FakeRuntimeClient(backends=("common_backend",))
    client.add_job("old", backend="retired_one")
    backend = cloud(client).job("old").backend()
    assert isinstance(backend, IBMRetiredBackend) and backend.name == "retired_one"


def many(count: int, **kwargs: Any) -> FakeRuntimeClient:
    client = FakeRuntimeClient(backends=("common_backend",))
    for _ in range(count):
        client.add_job(**kwargs)
    return client


@pytest.mark.parametrize("make", SERVICES)
def test_jobs_paging(make: Any) -> None:
    client = many(25)
    service = make(client)
    assert len(service.jobs(limit=None)) == 25
    assert client.calls[-1] == ("jobs_get", (1000, 0))
    assert len(service.jobs(limit=21)) == 21
    assert len(service.jobs(limit=30)) == 25
    assert len(service.jobs()) == 10
    assert len(make(many(5)).jobs(skip=4)) == 1
    assert len(make(many(10)).jobs(skip=4, limit=2)) == 2


def test_jobs_skip_past_the_end_terminates() -> None:
    client = many(3)
    assert cloud(client).jobs(skip=10) == []
    assert client.count("jobs_get") == 1


def test_jobs_terminates_when_server_pages_run_dry() -> None:
    class Lying(FakeRuntimeClient):
        def jobs_get(self, limit: int | None = None, skip: int | None = None, **kw: Any) -> Any:
            self.calls.append(("jobs_get", (limit, skip)))
            if skip:
                return {"jobs": [], "count": 100}
            return {"jobs": [j.to_dict() for j in self.jobs.values()], "count": 100}

    client = Lying()
    for _ in range(3):
        client.add_job()
    assert len(cloud(client).jobs(limit=None)) == 3
    assert client.count("jobs_get") == 2


def test_jobs_pending_filters() -> None:
    client = FakeRuntimeClient(backends=("common_backend",))
    for status, count in [
        ("RUNNING", 3),
        ("COMPLETED", 4),
        ("QUEUED", 2),
        ("FAILED", 3),
        ("CANCELLED", 2),
    ]:
        for _ in range(count):
            client.add_job(statuses=[status])
    service = quantum(client)
    assert len(service.jobs(pending=True)) == 5
    assert len(service.jobs(limit=4, pending=True)) == 4
    assert len(service.jobs(skip=4, pending=True)) == 1
    assert len(service.jobs(limit=2, skip=3, pending=True)) == 2
    assert len(service.jobs(pending=False)) == 9
    assert len(service.jobs(limit=6, pending=False)) == 6
    assert len(service.jobs(skip=4, pending=False)) == 5
    assert len(service.jobs(limit=6, skip=2, pending=False)) == 6


def test_jobs_by_program_and_order() -> None:
    client = many(3)
    client.add_job(program_id="other")
    service = quantum(client)
    found = service.jobs(program_id="other")
    assert [j.program_id for j in found] == ["other"]
    down = [j.job_id() for j in service.jobs(limit=None)]
    up = [j.job_id() for j in service.jobs(limit=None, descending=False)]
    assert up == list(reversed(down))


def test_jobs_instance_rules() -> None:
    with pytest.raises(IBMInputValueError, match="only supported for ``ibm_quantum``"):
        cloud().jobs(instance="h/g/p")
    with pytest.raises(IBMInputValueError):
        quantum().jobs(instance="foo")


@pytest.mark.parametrize(("limit", "skip"), [(-1, 0), (5, -2), (5, "1")])
def test_jobs_bad_paging_arguments(limit: Any, skip: Any) -> None:
    with pytest.raises(IBMInputValueError):
        cloud().jobs(limit=limit, skip=skip)


def test_jobs_follow_a_server_that_caps_its_pages() -> None:
    class Capped(FakeRuntimeClient):
        def jobs_get(self, limit: int | None = None, skip: int | None = None, **kw: Any) -> Any:
            return super().jobs_get(limit=min(limit or 10, 10), skip=skip, **kw)

    client = Capped()
    for _ in range(25):
        client.add_job()
    assert len(cloud(client).jobs(limit=None)) == 25
    assert client.count("jobs_get") == 3


def test_listed_jobs_decode_their_inputs_when_asked() -> None:
    client = many(0)
    client.add_job("j", params={"z": {"__type__": "complex", "__value__": [1, 2]}})
    (job,) = cloud(client).jobs(limit=None)
    gets = client.count("job_get")
    assert job.inputs == {"z": 1 + 2j}
    assert client.count("job_get") == gets


# -- the backend status asked before run() ------------------------------------------------


class StatusClient(FakeRuntimeClient):
    """Counts status requests; ``messages`` sets a backend's ``status_msg``."""

    def __init__(self) -> None:
        super().__init__(backends=("common_backend", "unique_backend_0"))
        self.messages: dict[str, str] = {}

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        self.calls.append(("backend_status", backend_name))
        status = super().backend_status(backend_name)
        status["status_msg"] = self.messages.get(backend_name, "active")
        return status


def run_quietly(service: RuntimeService, **opts: Any) -> RuntimeJob:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return run(service, **opts)


@pytest.mark.parametrize("make", SERVICES)
def test_a_burst_of_runs_asks_an_active_backend_once(make: Any, fake_clock: FakeClock) -> None:
    client = StatusClient()
    service = make(client)
    for _ in range(5):
        run_quietly(service)
    assert client.count("backend_status") == 1
    assert client.count("program_run") == 5
    fake_clock.now += 29.9
    run_quietly(service)
    assert client.count("backend_status") == 1
    fake_clock.now += 0.1
    run_quietly(service)
    run_quietly(service)
    assert client.count("backend_status") == 2
    run_quietly(service, backend="unique_backend_0")
    assert client.calls.count(("backend_status", "unique_backend_0")) == 1


def test_the_status_is_kept_per_instance(fake_clock: FakeClock) -> None:
    client = StatusClient()
    service = quantum(client)
    run_quietly(service, instance="hub0/group0/project0")
    run_quietly(service, instance="hub1/group1/project1")
    run_quietly(service, instance="hub1/group1/project1")
    assert client.count("backend_status") == 2


@pytest.mark.parametrize("make", SERVICES)
def test_a_backend_not_active_warns_at_every_run(make: Any, fake_clock: FakeClock) -> None:
    client = StatusClient()
    client.messages["common_backend"] = "maintenance"
    service = make(client)
    message = "^The backend common_backend currently has a status of maintenance.$"
    for asked in (1, 2, 3):
        with pytest.warns(UserWarning, match=message):
            run(service)
        assert client.count("backend_status") == asked
    # Active again: no warning from the next run on, and the status is then reused.
    del client.messages["common_backend"]
    run_quietly(service)
    run_quietly(service)
    assert client.count("backend_status") == 4
    # Not active again: noticed once the active status is 30 s old.
    client.messages["common_backend"] = "internal"
    fake_clock.now += 29.0
    run_quietly(service)
    fake_clock.now += 1.0
    with pytest.warns(UserWarning, match="currently has a status of internal"):
        run(service)
    assert client.count("backend_status") == 5
    assert client.count("program_run") == 7


def test_a_backend_not_operational_does_not_warn_and_is_asked_again(fake_clock: FakeClock) -> None:
    class Down(StatusClient):
        def backend_status(self, backend_name: str) -> dict[str, Any]:
            return {**super().backend_status(backend_name), "operational": False}

    client = Down()
    client.messages["common_backend"] = "down"
    service = cloud(client)
    run_quietly(service)
    run_quietly(service)
    assert client.count("backend_status") == 2


# -- listings: every job checked in one pass, built from its fields ----------------------


class ListingClient(FakeRuntimeClient):
    """Answers ``jobs_get`` with one fixed page."""

    def __init__(self, page: Any) -> None:
        super().__init__(backends=("common_backend",))
        self.page = page

    def jobs_get(self, limit: int | None = None, skip: int | None = None, **kw: Any) -> Any:
        self.calls.append(("jobs_get", (limit, skip)))
        return self.page


def listed(**fields: Any) -> dict[str, Any]:
    return {
        "id": "j1",
        "state": {"status": "COMPLETED", "reason": None, "queue_position": 2},
        "status": "Completed",
        "backend": "common_backend",
        "program": {"id": "sampler", "name": "Sampler"},
        "created": "2023-06-20T12:00:25.000000Z",
        "session_id": "s1",
        "tags": ["a", "b"],
        "hub": "hub1",
        "group": "group1",
        "project": "project1",
        "runtime": "img:1",
        "cost": 30,
        "interim_results_count": 0,
        "params": {"z": {"__type__": "complex", "__value__": [1, 2]}},
        **fields,
    }


@pytest.mark.parametrize("make", SERVICES)
def test_listed_jobs_carry_the_listing_fields(make: Any) -> None:
    client = ListingClient({"jobs": [listed(), listed(id="j2", params=None)], "count": 2})
    first, second = make(client).jobs(limit=None)
    assert (first.job_id(), second.job_id()) == ("j1", "j2")
    assert first.program_id == "sampler" and first.image == "img:1"
    assert first.tags == ["a", "b"] and first.session_id == "s1"
    assert first.creation_date == datetime(2023, 6, 20, 12, 0, 25, tzinfo=UTC)
    backend = first.backend()
    assert backend is not None and backend.name == "common_backend"
    assert second.backend() is backend
    expected_instance = "hub1/group1/project1" if make is quantum else None
    assert backend._instance == expected_instance
    assert first.inputs == {"z": 1 + 2j}
    assert client.count("job_get") == 0


def test_listed_jobs_without_optional_fields() -> None:
    client = ListingClient({"jobs": [{"id": "bare"}], "count": 1})
    (job,) = cloud(client).jobs(limit=None)
    assert job.job_id() == "bare" and job.program_id == ""
    assert job.tags is None and job.image == ""
    client.add_job("bare", backend=None, session_id=None, created=None)
    assert job.backend() is None


@pytest.mark.parametrize(
    ("page", "message"),
    [
        pytest.param(
            {"jobs": [listed(), listed(id="j2", state={"status": 7})], "count": 2},
            "Malformed job j2 response from the server: field 'state.status'",
            id="job-field",
        ),
        pytest.param(
            {"jobs": [listed(), listed(id="j3", tags="a")], "count": 2},
            "Malformed job j3 response from the server: field 'tags'",
            id="job-tags",
        ),
        pytest.param(
            {"jobs": [listed(), {"state": {}}], "count": 2},
            "Malformed job list response from the server: field 'jobs.1.id'",
            id="no-id",
        ),
        pytest.param(
            {"jobs": [listed(), "j2"], "count": 2},
            "Malformed job list response from the server: field 'jobs.1'",
            id="not-an-object",
        ),
        pytest.param(
            {"jobs": [listed()], "count": "many"},
            "Malformed job list response from the server: field 'count'",
            id="count",
        ),
        pytest.param(
            {"jobs": {}, "count": 1},
            "Malformed job list response from the server: field 'jobs'",
            id="jobs-not-a-list",
        ),
    ],
)
def test_malformed_listings_name_the_job_and_field(page: Any, message: str) -> None:
    with pytest.raises(ApiIBMProtocolError) as caught:
        quantum(ListingClient(page)).jobs(limit=None)
    assert str(caught.value.message).startswith(message + ": ")


def test_run_with_a_callback_warms_the_streams_before_submitting() -> None:
    """The hub is readied before the POST: the job publishes as soon as it is accepted."""
    client = StreamingFakeClient()
    client.backends = ["common_backend"]
    service = quantum(client)
    job = service.run(
        "my-program", inputs={}, options={"backend": "common_backend"}, callback=lambda j, m: None
    )
    names = [call[0] for call in client.calls]
    assert names.index("prepare_streams") < names.index("program_run") < names.index("open_stream")
    assert ("open_stream", job.job_id()) in client.calls


def test_run_without_a_callback_does_not_touch_the_streams() -> None:
    """No callback, no stream: nothing is warmed (``result()`` opens its stream when asked)."""
    client = StreamingFakeClient()
    client.backends = ["common_backend"]
    run(quantum(client))
    assert not [call for call in client.calls if call[0] in ("prepare_streams", "open_stream")]
