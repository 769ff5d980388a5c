"""Retries (wire.md section 7): what is retried, how often, how long we wait."""

from __future__ import annotations

import email.utils
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from runtime_job.api.client import RuntimeClient
from runtime_job.api.retry import DEFAULT_RETRY_POLICY, RetryPolicy, parse_retry_after
from runtime_job.api.session import IDEMPOTENCY_SUPPORTED_HEADER, HttpSession
from runtime_job.exceptions import (
    IBMNotAuthorizedError,
    RequestsApiError,
)

from .conftest import LOCAL_URL, NO_JITTER, local_params

JOB = {"id": "j1", "state": {"status": "RUNNING"}}
JOB_URL = f"{LOCAL_URL}/jobs/j1"
SUPPORTED = {IDEMPOTENCY_SUPPORTED_HEADER: "true"}
RUN_ARGS = {
    "program_id": "sampler",
    "backend_name": "bk",
    "params": {},
    "image": None,
    "hgp": None,
    "log_level": None,
    "session_id": None,
}


def keys_of(mock: responses.RequestsMock) -> list[str | None]:
    """The ``Idempotency-Key`` header of every POST sent."""
    return [
        call.request.headers.get("Idempotency-Key")
        for call in mock.calls
        if call.request.method == "POST"
    ]


# ------------------------------------------------------------------- the wire.md table


def test_get_503_twice_then_200(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, status=503)
    ordered.get(JOB_URL, status=503)
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert len(ordered.calls) == 3
    assert sleeps == [0.5, 1.0]


def test_get_500_forever_is_bounded(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.get(JOB_URL, status=500, json={"errors": [{"code": 1, "message": "boom"}]})
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert len(rsps.calls) == DEFAULT_RETRY_POLICY.max_attempts == 6
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert info.value.status_code == 500  # the last status, not -1 as in the reference
    assert "Gave up after 6 attempts" in info.value.message
    assert "boom, Error code: 1." in info.value.message


@pytest.mark.parametrize("learned_from", ["earlier GET", "the 502 itself"])
def test_post_jobs_502_retried_when_server_honours_keys(
    ordered: responses.RequestsMock,
    client: RuntimeClient,
    sleeps: list[float],
    learned_from: str,
) -> None:
    if learned_from == "earlier GET":
        ordered.get(JOB_URL, json=JOB, headers=SUPPORTED)
        client.job_get("j1")
        ordered.post(f"{LOCAL_URL}/jobs", status=502)
    else:
        ordered.post(f"{LOCAL_URL}/jobs", status=502, headers=SUPPORTED)
    ordered.post(f"{LOCAL_URL}/jobs", json={"id": "j1", "backend": "bk"}, headers=SUPPORTED)
    assert client.program_run(**RUN_ARGS)["id"] == "j1"  # type: ignore[arg-type]
    keys = keys_of(ordered)
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert keys[0] is not None and uuid.UUID(keys[0]).version == 4
    assert sleeps == [0.5]


def test_post_jobs_502_not_retried_without_key_support(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(RequestsApiError) as info:
        client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    assert len(rsps.calls) == 1
    assert sleeps == []
    assert info.value.status_code == 502
    assert info.value.message.startswith(f"502 Server Error: Bad Gateway for url: {LOCAL_URL}/jobs")


def test_idempotency_support_is_per_base_url(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    other = make_client(local_params(url="http://other.test"))
    rsps.get("http://other.test/jobs/j1", json=JOB, headers=SUPPORTED)
    other.job_get("j1")
    rsps.post(f"{LOCAL_URL}/jobs", status=503)
    fresh = make_client()
    with pytest.raises(RequestsApiError):
        fresh.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    assert other._session.idempotency_supported("http://other.test/jobs")
    assert not fresh._session.idempotency_supported(f"{LOCAL_URL}/jobs")
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]


def test_each_program_run_gets_a_fresh_key(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    first, second = keys_of(rsps)
    assert first != second


def test_post_cancel_500_once_is_retried(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.post(f"{JOB_URL}/cancel", status=500)
    ordered.post(f"{JOB_URL}/cancel", status=204)
    client.job_cancel("j1")
    assert len(ordered.calls) == 2
    assert sleeps == [0.5]


def test_delete_504_once_is_retried(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.delete(JOB_URL, status=504)
    ordered.delete(JOB_URL, status=204)
    client.job_delete("j1")
    assert len(ordered.calls) == 2
    assert sleeps == [0.5]


def test_5xx_with_html_body_is_retried_like_any_5xx(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, status=520, body="<html><body>origin error</body></html>")
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert sleeps == [0.5]


def test_429_with_retry_after_waits_what_the_server_asks(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, status=429, headers={"Retry-After": "1"})
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert sleeps == [1.0]


def test_503_with_retry_after_replaces_the_backoff(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, status=503, headers={"Retry-After": "2"})
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert sleeps == [2.0]


def test_retry_after_as_http_date(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    ordered.get(JOB_URL, status=429, headers={"Retry-After": when})
    ordered.get(JOB_URL, json=JOB)
    client.job_get("j1")
    assert len(sleeps) == 1
    assert 3.0 <= sleeps[0] <= 5.0


def test_429_without_retry_after_backs_off_then_gives_up(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.get(JOB_URL, status=429, json={"errors": [{"code": 9, "message": "slow down"}]})
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert info.value.status_code == 429
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(rsps.calls) == 6
    assert "Gave up after 6 attempts" in info.value.message


def test_429_once_then_success(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, status=429)
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert sleeps == [0.5]


def test_post_jobs_429_is_retried_with_the_same_key(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    # A 429 means the server did not act on the request, so even an unkeyed POST is safe.
    ordered.post(f"{LOCAL_URL}/jobs", status=429, headers={"Retry-After": "1"})
    ordered.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    first, second = keys_of(ordered)
    assert first == second
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_above_the_cap_fails_without_sleeping(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float], status: int
) -> None:
    rsps.get(JOB_URL, status=status, headers={"Retry-After": "3600"})
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert sleeps == []
    assert len(rsps.calls) == 1
    assert info.value.status_code == status
    assert info.value.retry_after == 3600.0
    assert "retry after 3600 s, longer than the 30 s" in info.value.message


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, RequestsApiError),
        (401, IBMNotAuthorizedError),
        (403, RequestsApiError),
        (404, RequestsApiError),
        (409, RequestsApiError),
    ],
)
def test_client_errors_are_never_retried(
    rsps: responses.RequestsMock,
    client: RuntimeClient,
    sleeps: list[float],
    status: int,
    error: type[Exception],
) -> None:
    rsps.get(JOB_URL, status=status, json={"errors": [{"code": 1, "message": "no"}]})
    rsps.post(f"{JOB_URL}/cancel", status=status)
    with pytest.raises(error) as info:
        client.job_get("j1")
    with pytest.raises(error):
        client.job_cancel("j1")
    assert len(rsps.calls) == 2
    assert sleeps == []
    if isinstance(info.value, RequestsApiError):
        assert info.value.status_code == status
        assert info.value.method == "GET"
        assert info.value.url == JOB_URL


def test_401_is_not_a_requests_api_error(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(JOB_URL, status=401, json={"errors": [{"code": 4, "message": "expired"}]})
    with pytest.raises(IBMNotAuthorizedError) as info:
        client.job_get("j1")
    assert not isinstance(info.value, RequestsApiError)
    assert info.value.message == (
        f"401 Client Error: Unauthorized for url: {JOB_URL}. expired, Error code: 4."
    )


# -------------------------------------------------------------------- network failures


def test_connection_refused_is_retried_then_fails_with_minus_one(
    make_client: Callable[..., RuntimeClient], refused_url: str, sleeps: list[float]
) -> None:
    client = make_client(local_params(url=refused_url))
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert info.value.status_code == -1
    assert sleeps == [0.5, 1.0, 2.0]  # connect_retries=3
    assert "Gave up after 4 attempts" in info.value.message
    assert "refused" in info.value.message.lower()
    assert isinstance(info.value.__cause__, requests.ConnectionError)


def test_connection_refused_is_retried_for_post_jobs_too(
    make_client: Callable[..., RuntimeClient], refused_url: str, sleeps: list[float]
) -> None:
    client = make_client(local_params(url=refused_url))
    with pytest.raises(RequestsApiError):
        client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    assert sleeps == [0.5, 1.0, 2.0]  # the request was provably never sent


def test_read_timeout_on_get_is_retried(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(JOB_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    ordered.get(JOB_URL, json=JOB)
    assert client.job_get("j1") == JOB
    assert sleeps == [0.5]


def test_read_timeout_on_post_jobs_is_not_retried_without_key_support(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(RequestsApiError) as info:
        client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    assert len(rsps.calls) == 1
    assert sleeps == []
    assert info.value.status_code == -1
    assert "read timeout" in info.value.message


def test_read_timeout_on_post_jobs_is_retried_with_key_support(
    ordered: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    ordered.get(f"{LOCAL_URL}/backends", json={"devices": []}, headers=SUPPORTED)
    client.list_backends()
    ordered.post(f"{LOCAL_URL}/jobs", body=requests.exceptions.ReadTimeout("read timed out"))
    ordered.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    first, second = keys_of(ordered)
    assert first == second
    assert sleeps == [0.5]


def test_read_timeouts_on_get_are_bounded(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.get(JOB_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert len(rsps.calls) == 1 + DEFAULT_RETRY_POLICY.read_retries
    assert info.value.status_code == -1
    assert "Gave up after 3 attempts" in info.value.message


def test_ssl_errors_are_not_retried(
    rsps: responses.RequestsMock, client: RuntimeClient, sleeps: list[float]
) -> None:
    rsps.get(JOB_URL, body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert len(rsps.calls) == 1
    assert sleeps == []
    assert info.value.status_code == -1


def test_never_policy_sends_once(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    client = make_client(policy=RetryPolicy.never())
    rsps.get(JOB_URL, status=503)
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    assert len(rsps.calls) == 1
    assert "Gave up" not in info.value.message


def test_explicit_idempotent_override(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    with HttpSession(local_params(), retry_policy=NO_JITTER) as session:
        rsps.post(f"{LOCAL_URL}/anything", status=502)
        with pytest.raises(RequestsApiError):
            session.request("POST", "/anything", idempotent=True)
        assert len(rsps.calls) == 6
        rsps.get(f"{LOCAL_URL}/other", status=502)
        with pytest.raises(RequestsApiError):
            session.request("GET", "/other", idempotent=False)
        assert len(rsps.calls) == 7


# -------------------------------------------------------------------------- the policy


def test_default_policy_values() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 6
    assert policy.connect_retries == 3
    assert policy.retry_after_max == 30.0
    assert policy.retry_statuses == {500, 502, 503, 504, 520, 521, 522, 524}
    assert policy.idempotent_methods == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_jitter_only_shortens_waits() -> None:
    policy = RetryPolicy(jitter=0.25)
    assert policy.backoff(2, 0.0) == 1.0
    assert policy.backoff(2, 0.999) == pytest.approx(0.75, abs=1e-3)


def test_default_jitter_in_a_real_retry(
    ordered: responses.RequestsMock, make_client: Callable[..., RuntimeClient], sleeps: list[float]
) -> None:
    client = make_client(policy=None)  # the library default, with jitter
    ordered.get(JOB_URL, status=503)
    ordered.get(JOB_URL, status=503)
    ordered.get(JOB_URL, json=JOB)
    client.job_get("j1")
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"connect_retries": -1},
        {"jitter": 1.5},
        {"backoff_factor": 0.5},
        {"retry_after_max": float("inf")},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0


def test_bodies_are_resent_identically(
    ordered: responses.RequestsMock, client: RuntimeClient
) -> None:
    ordered.post(f"{LOCAL_URL}/jobs", status=429)
    ordered.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    client.program_run(**RUN_ARGS)  # type: ignore[arg-type]
    assert ordered.calls[0].request.body == ordered.calls[1].request.body
