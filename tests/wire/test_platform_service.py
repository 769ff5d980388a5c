"""RuntimeService on the platform channels, on the wire: construction, submissions, backends,
and the error mapping of platform.md 6.3, operation by operation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from responses import matchers

from runtime_job import RuntimeService
from runtime_job.api.platform_client import PlatformClient
from runtime_job.exceptions import (
    IBMInputValueError,
    IBMNotAuthorizedError,
    IBMRuntimeError,
    RuntimeInvalidStateError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
)

from .test_platform_auth import API_KEY, CRN_US, grant_reply, jwt
from .test_platform_client import assert_key_only_sent_to_iam

API = "https://quantum.cloud.ibm.com/api/v1"
TOKEN = jwt(3600, serial=3)
ERROR = {"errors": [{"code": "x", "message": "no", "more_info": ""}], "trace": "t"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "IAM_URL",
        "GLOBAL_SEARCH_URL",
        "GLOBAL_CATALOG_URL",
        "QISKIT_IBM_CHANNEL",
        "QISKIT_IBM_URL",
        "QISKIT_IBM_TOKEN",
        "QISKIT_IBM_INSTANCE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def service(rsps: responses.RequestsMock) -> Iterator[RuntimeService]:
    grant_reply(rsps, TOKEN)
    with RuntimeService(
        channel="ibm_quantum_platform", token=API_KEY, instance=CRN_US, filename="/nonexistent"
    ) as svc:
        yield svc


def job_body(status: str = "Running", **extra: Any) -> dict[str, Any]:
    return {"id": "j1", "state": {"status": status}, "program": {"id": "sampler"}, **extra}


def test_construction_sends_nothing_and_shows_the_account(rsps: responses.RequestsMock) -> None:
    with RuntimeService(
        channel="ibm_cloud", token=API_KEY, instance=CRN_US, filename="/nonexistent"
    ) as svc:
        assert svc.channel == "ibm_cloud" and isinstance(svc._api_client, PlatformClient)
        account = svc.active_account()
        assert account["instance"] == CRN_US and account["channel"] == "ibm_cloud"
        assert API_KEY not in repr(svc) and API_KEY not in repr(svc._api_client)
    assert len(rsps.calls) == 0


def test_a_token_is_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved account either
    with pytest.raises(IBMInputValueError, match="needs a token"):
        RuntimeService(channel="ibm_quantum_platform", instance=CRN_US)


def test_run_sequence(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(
        responses.GET,
        f"{API}/backends",
        match=[matchers.query_param_matcher({"include_mocks": "True"})],
        json={"devices": [{"name": "ibm_a"}]},
    )
    rsps.add(
        responses.GET,
        f"{API}/backends/ibm_a/status",
        json={"state": True, "status": "active", "length_queue": 0},
    )
    rsps.add(responses.GET, f"{API}/instances/usage", json={"usage_limit_reached": False})
    rsps.add(responses.POST, f"{API}/jobs", json={"id": "j1", "backend": "ibm_a"})
    job = service.run(
        "sampler",
        inputs={"pubs": [], "version": 2, "support_qiskit": True},
        options={"backend": "ibm_a", "job_tags": ["t"]},
    )
    assert job.job_id() == "j1" and job.backend().name == "ibm_a"
    urls = [call.request.url.split("?")[0] for call in rsps.calls[1:]]
    assert urls == [
        f"{API}/backends",
        f"{API}/backends/ibm_a/status",
        f"{API}/instances/usage",
        f"{API}/jobs",
    ]
    body = json.loads(rsps.calls[-1].request.body)
    assert body["program_id"] == "sampler" and body["tags"] == ["t"] and "hub" not in body
    assert_key_only_sent_to_iam(rsps)


def test_backend_calls(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(responses.GET, f"{API}/backends", json={"devices": [{"name": "ibm_a"}]})
    rsps.add(responses.GET, f"{API}/backends/ibm_a/configuration", json={"backend_name": "ibm_a"})
    rsps.add(
        responses.GET,
        f"{API}/backends/ibm_a/properties",
        match=[matchers.query_param_matcher({"updated_before": "2026-03-01T12:00:00+00:00"})],
        json={"last_update_date": "2026-03-01T11:00:00Z", "qubits": []},
    )
    backend = service.backend("ibm_a")
    assert backend.configuration().backend_name == "ibm_a"
    props = service._api_client.backend_properties("ibm_a", datetime="2026-03-01T12:00:00+00:00")
    assert props["backend_name"] == "ibm_a"


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (404, RuntimeProgramNotFound, "Program not found"),
        (409, IBMRuntimeError, "Failed to run program"),
        (400, IBMRuntimeError, "Failed to run program"),
    ],
)
def test_submit_errors(
    rsps: responses.RequestsMock,
    service: RuntimeService,
    status: int,
    error: type[Exception],
    match: str,
) -> None:
    rsps.add(responses.GET, f"{API}/backends", json={"devices": [{"name": "ibm_a"}]})
    rsps.add(responses.GET, f"{API}/instances/usage", json={})
    rsps.add(responses.POST, f"{API}/jobs", json=ERROR, status=status)
    with pytest.raises(error, match=match):
        service.run("sampler", inputs={}, options={"backend": None})


def test_job_lookup_errors(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(responses.GET, f"{API}/jobs/gone", json=ERROR, status=404)
    rsps.add(responses.GET, f"{API}/jobs/secret", json=ERROR, status=403)
    with pytest.raises(RuntimeJobNotFound, match="Job not found"):
        service.job("gone")
    with pytest.raises(IBMRuntimeError, match="Failed to retrieve job"):
        service.job("secret")


def test_delete_errors(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(responses.DELETE, f"{API}/jobs/gone", json=ERROR, status=404)
    rsps.add(responses.DELETE, f"{API}/jobs/locked", json=ERROR, status=409)
    rsps.add(responses.DELETE, f"{API}/jobs/ok", status=204)
    with pytest.raises(RuntimeJobNotFound):
        service.delete_job("gone")
    with pytest.raises(IBMRuntimeError, match="Failed to delete job"):
        service.delete_job("locked")
    service.delete_job("ok")


def test_job_call_errors(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(responses.GET, f"{API}/jobs/j1", json=job_body(backend=None))
    rsps.add(responses.POST, f"{API}/jobs/j1/cancel", json=ERROR, status=409)
    rsps.add(responses.GET, f"{API}/jobs/j1/logs", json=ERROR, status=404)
    rsps.add(responses.GET, f"{API}/jobs/j1/metrics", json=ERROR, status=400)
    job = service.job("j1")
    with pytest.raises(RuntimeInvalidStateError, match="cannot be cancelled"):
        job.cancel()
    assert job.logs() == ""
    with pytest.raises(IBMRuntimeError, match="Failed to get job metadata"):
        job.metrics()
    with pytest.raises(IBMRuntimeError, match="Failed to get job metadata"):
        job.usage()


def test_401_is_terminal(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(responses.GET, f"{API}/jobs/j1", json=ERROR, status=401)
    with pytest.raises(IBMNotAuthorizedError):
        service.job("j1")
    assert sum("identity/token" in call.request.url for call in rsps.calls) == 1


def test_service_usage(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    rsps.add(
        responses.GET,
        f"{API}/instances/usage",
        json={"usage_limit_seconds": 600, "usage_consumed_seconds": 123},
    )
    assert service.usage()["usage_remaining_seconds"] == 477


def test_jobs_of_another_instance(rsps: responses.RequestsMock, service: RuntimeService) -> None:
    other = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acc:inst-2::"
    eu = "https://eu-de.quantum.cloud.ibm.com/api/v1"
    rsps.add(
        responses.GET,
        f"{eu}/jobs",
        match=[matchers.header_matcher({"Service-CRN": other})],
        json={"jobs": [job_body()], "count": 1},
    )
    rsps.add(responses.GET, f"{eu}/jobs/j1", json=job_body("Completed"))
    rsps.add(responses.GET, f"{eu}/jobs/j1/logs", body="from eu")
    (job,) = service.jobs(instance=other)
    assert job.job_id() == "j1" and job.instance == other
    assert job.logs() == "from eu"  # asked under the job's instance


def test_private_endpoints(rsps: responses.RequestsMock) -> None:
    private = "https://private.us-east.quantum.cloud.ibm.com/api/v1"
    rsps.add(
        responses.POST,
        "https://private.iam.cloud.ibm.com/identity/token",
        json={"access_token": TOKEN},
    )
    rsps.add(responses.GET, f"{private}/jobs/j1", json=job_body())
    with RuntimeService(
        channel="ibm_quantum_platform",
        token=API_KEY,
        instance=CRN_US,
        filename="/nonexistent",
        private_endpoint=True,
    ) as svc:
        assert svc.job("j1").job_id() == "j1"
