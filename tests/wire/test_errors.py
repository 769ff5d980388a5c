"""Error mapping: HTTP errors, login errors, malformed bodies (wire.md sections 3 and 7)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
import requests
import responses

from runtime_job.api.client import AuthClient, RuntimeClient
from runtime_job.api.errors import server_error_detail
from runtime_job.api.models import JobResponse
from runtime_job.api.params import ClientParameters
from runtime_job.api.retry import RetryPolicy
from runtime_job.exceptions import (
    ApiConnectionError,
    ApiIBMProtocolError,
    AuthenticationLicenseError,
    ConflictError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    NotFoundError,
    RateLimitError,
    RequestsApiError,
    ServerError,
)

from .conftest import AUTH_URL, LOCAL_URL, local_params

STATUS_URL = f"{LOCAL_URL}/backends/bk/status"
JOB_URL = f"{LOCAL_URL}/jobs/j1"


# --------------------------------------------------------------------- message format


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": "Bad client input"}),
        json.dumps({"bad request": "Bad client input"}),
        json.dumps("Bad client input"),
        "Bad client input",
    ],
)
def test_reference_59_server_text_is_in_the_message(
    rsps: responses.RequestsMock, client: RuntimeClient, body: str
) -> None:
    rsps.get(STATUS_URL, status=400, body=body)
    with pytest.raises(RequestsApiError) as info:
        client.backend_status("bk")
    assert "Bad client input" in info.value.message
    assert info.value.status_code == 400
    assert "Bad client input" in info.value.body_excerpt


def test_reference_59_empty_object_also_raises(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(STATUS_URL, status=400, json={})
    with pytest.raises(RequestsApiError) as info:
        client.backend_status("bk")
    assert info.value.message == f"400 Client Error: Bad Request for url: {STATUS_URL}. {{}}"


def test_legacy_error_shape_appears_once(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(JOB_URL, status=400, json={"error": {"message": "nope", "code": 1234}})
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert info.value.message == (
        f"400 Client Error: Bad Request for url: {JOB_URL}. nope, Error code: 1234."
    )


def test_runtime_error_shape_and_trace(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(
        JOB_URL,
        status=404,
        json={
            "errors": [{"code": 1211, "message": "Job not found", "more_info": "x"}],
            "trace": "trace-42",
        },
    )
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    err = info.value
    assert err.message == (
        f"404 Client Error: Not Found for url: {JOB_URL}. Job not found, Error code: 1211."
    )
    assert err.status_code == 404
    assert err.method == "GET"
    assert err.url == JOB_URL
    assert err.request_id == "trace-42"
    assert str(err) == err.message


def test_request_id_header_wins_over_trace(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(
        JOB_URL,
        status=409,
        json={"errors": [{"code": 1, "message": "m"}], "trace": "t"},
        headers={"X-Request-Id": "req-7"},
    )
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert info.value.request_id == "req-7"


def test_server_error_word_and_empty_body(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.delete(JOB_URL, status=404)
    with pytest.raises(RequestsApiError) as info:
        client.job_delete("j1")
    assert info.value.message == f"404 Client Error: Not Found for url: {JOB_URL}"


def test_long_bodies_are_cut(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(JOB_URL, status=400, body="x" * 5000)
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert len(info.value.message) < 700
    assert info.value.message.endswith("x...")
    assert len(info.value.body_excerpt) == 503


def test_error_detail_parser() -> None:
    assert server_error_detail('{"error": {"message": "m", "code": "C"}}') == (
        "m, Error code: C.",
        None,
    )
    assert server_error_detail('{"errors": [{"message": "m"}]}') == ("m.", None)
    assert server_error_detail('{"errors": []}') == ('{"errors": []}', None)
    assert server_error_detail("") == ("", None)
    assert server_error_detail("<html>x</html>") == ("<html>x</html>", None)


# ----------------------------------------------------------------------------- login


def test_login_401_is_a_requests_api_error(
    rsps: responses.RequestsMock, auth_client: AuthClient
) -> None:
    rsps.post(
        f"{AUTH_URL}/users/loginWithToken",
        status=401,
        json={
            "error": {"name": "LOGIN_FAILED", "message": "Login failed.", "code": "LOGIN_FAILED"}
        },
    )
    with pytest.raises(RequestsApiError) as info:
        auth_client.login("bad-token-value")
    assert not isinstance(info.value, IBMNotAuthorizedError)
    assert info.value.status_code == 401
    assert info.value.message == (
        f"401 Client Error: Unauthorized for url: {AUTH_URL}/users/loginWithToken. "
        "Login failed., Error code: LOGIN_FAILED."
    )
    assert len(rsps.calls) == 1


def test_login_license_required(rsps: responses.RequestsMock, auth_client: AuthClient) -> None:
    rsps.post(
        f"{AUTH_URL}/users/loginWithToken",
        status=401,
        json={
            "error": {
                "name": "ACCEPT_LICENSE_REQUIRED",
                "message": "You must accept the license.",
                "code": "ACCEPT_LICENSE_REQUIRED",
            }
        },
    )
    with pytest.raises(AuthenticationLicenseError) as info:
        auth_client.login("some-api-token")
    assert info.value.message == "You must accept the license."


def test_user_info_401_is_not_authorized(
    rsps: responses.RequestsMock, auth_client: AuthClient
) -> None:
    rsps.get(f"{AUTH_URL}/users/me", status=401, json={"error": {"message": "x", "code": 1}})
    with pytest.raises(IBMNotAuthorizedError):
        auth_client.user_info()


def test_user_info_without_runtime_service(
    rsps: responses.RequestsMock, auth_client: AuthClient
) -> None:
    rsps.get(f"{AUTH_URL}/users/me", json={"urls": {"http": "https://api.test", "services": {}}})
    with pytest.raises(IBMNotAuthorizedError) as info:
        auth_client.user_info()
    assert info.value.message == (
        "This account is not authorized to use ``ibm_quantum`` runtime service."
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"new_api": True}},
        {"body": "<html>not an API</html>"},
        {"json": ["api-auth"]},
    ],
)
def test_version_check_rejects_other_urls(
    rsps: responses.RequestsMock, auth_client: AuthClient, kwargs: dict[str, object]
) -> None:
    rsps.get(f"{AUTH_URL}/version", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(IBMInputValueError) as info:
        auth_client.version()
    assert info.value.message == (
        f"The URL specified ({AUTH_URL}) is not an IBM Quantum authentication URL. "
        "Valid authentication URL: https://auth.quantum-computing.ibm.com/api."
    )


# ------------------------------------------------------------------ malformed bodies


@pytest.mark.parametrize(
    "body",
    [
        "<!DOCTYPE html><html><body>Maintenance</body></html>",
        '{"id": "j1", "state": {"status": "RUN',
        "",
    ],
)
def test_non_json_success_is_a_protocol_error(
    rsps: responses.RequestsMock, client: RuntimeClient, body: str
) -> None:
    rsps.get(JOB_URL, status=200, body=body, content_type="text/html")
    with pytest.raises(ApiIBMProtocolError) as info:
        client.job_get("j1")
    err = info.value
    assert err.status_code == 200
    assert err.url == JOB_URL
    assert err.body_excerpt == body.strip()
    assert "HTTP 200" in err.message
    assert JOB_URL in err.message
    # Chained from the parser's error (issue 17: every re-raise keeps its cause).
    assert isinstance(err.__cause__, json.JSONDecodeError)


def test_wrong_shape_is_a_protocol_error_naming_the_field(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(JOB_URL, json={"state": {"status": "QUEUED"}})
    with pytest.raises(ApiIBMProtocolError) as info:
        client.job_get("j1")
    assert "job j1" in info.value.message
    assert "'id'" in info.value.message
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    ("call", "url", "body"),
    [
        ("jobs_get", f"{LOCAL_URL}/jobs", {"jobs": "nope", "count": 1}),
        ("list_backends", f"{LOCAL_URL}/backends", {"names": []}),
        ("backend_configuration", f"{LOCAL_URL}/backends/bk/configuration", [1, 2]),
        ("backend_status", STATUS_URL, {"length_queue": "many"}),
    ],
)
def test_other_shapes_are_checked(
    rsps: responses.RequestsMock, client: RuntimeClient, call: str, url: str, body: object
) -> None:
    rsps.get(url, json=body)
    with pytest.raises(ApiIBMProtocolError):
        if call in ("backend_configuration", "backend_status"):
            getattr(client, call)("bk")
        else:
            getattr(client, call)()


def test_program_run_response_without_id(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", json={"backend": "bk"})
    with pytest.raises(ApiIBMProtocolError):
        client.program_run("p", None, {}, None, None, None, None)


def test_network_malformed(rsps: responses.RequestsMock, auth_client: AuthClient) -> None:
    rsps.get("https://api.test/Network", json=[{"name": "h", "groups": ["g"]}])
    with pytest.raises(ApiIBMProtocolError):
        auth_client.network("https://api.test")


def test_error_url_includes_the_query_without_secrets(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/backends", status=403)
    with pytest.raises(RequestsApiError) as info:
        client.list_backends("h/g/p")
    assert info.value.url == f"{LOCAL_URL}/backends?provider=h%2Fg%2Fp"
    assert info.value.message == (
        f"403 Client Error: Forbidden for url: {LOCAL_URL}/backends?provider=h%2Fg%2Fp"
    )


# --------------------------------------------------------------- typed leaves (issue 17)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, RequestsApiError, False),
        (403, RequestsApiError, False),
        (404, NotFoundError, False),
        (408, RequestsApiError, True),
        (409, ConflictError, False),
        (422, RequestsApiError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (501, ServerError, False),
        (503, ServerError, True),
        (505, ServerError, False),
        (599, ServerError, True),
    ],
)
def test_each_status_is_its_typed_leaf(
    rsps: responses.RequestsMock,
    make_client: Callable[..., RuntimeClient],
    status: int,
    kind: type[RequestsApiError],
    retryable: bool,
) -> None:
    client = make_client(policy=RetryPolicy.never())
    rsps.get(JOB_URL, status=status, json={"errors": [{"message": "nope", "code": 7}]})
    with pytest.raises(RequestsApiError) as caught:
        client.job_get("j1")
    err = caught.value
    assert type(err) is kind
    assert err.status_code == status
    assert err.retryable is retryable
    assert "nope" in str(err)


def test_fetch_job_is_the_typed_job_of_the_same_request(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    body = {"id": "j1", "state": {"status": "RUNNING"}, "backend": "bk", "extra": [1]}
    rsps.get(JOB_URL, json=body)
    rsps.get(JOB_URL, json=body)
    job = client.fetch_job("j1")
    assert isinstance(job, JobResponse)
    assert (job.id, job.backend) == ("j1", "bk")
    assert job.state is not None and job.state.status == "RUNNING"
    assert job.model_extra == {"extra": [1]}
    assert client.job_get("j1") == body  # the dict layer: the server's JSON, as sent


def test_a_refused_connection_is_a_retryable_connection_error(
    make_client: Callable[..., RuntimeClient],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(local_params(url=f"http://127.0.0.1:{port}"), policy=RetryPolicy.never())
    with pytest.raises(ApiConnectionError) as caught:
        client.job_get("j1")
    assert caught.value.status_code == -1 and caught.value.retryable
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectionError)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(local_params(url="http://[::1"), id="invalid-url"),
        pytest.param(
            local_params(url="https://runtime.test", verify="/nonexistent/ca.pem"),
            id="missing-ca-bundle",
        ),
    ],
)
def test_failures_a_retry_cannot_fix_are_not_retryable(
    make_client: Callable[..., RuntimeClient], params: ClientParameters, sleeps: list[float]
) -> None:
    client = make_client(params)
    with pytest.raises(ApiConnectionError) as caught:
        client.job_get("j1")
    assert not caught.value.retryable
    assert caught.value.__cause__ is not None
    assert sleeps == []


def test_a_closed_client_raises_a_connection_error(client: RuntimeClient) -> None:
    client.close()
    with pytest.raises(ApiConnectionError) as caught:
        client.job_get("j1")
    assert not caught.value.retryable
