"""PlatformClient on the wire (platform.md 4-5): every request's method, path, query,
headers and body, the IAM token refreshed mid-run, the API key only ever sent to IAM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from responses import matchers

from runtime_job.api.platform_client import (
    JOB_POLL_POLICY,
    SESSION_POLL_POLICY,
    PlatformClient,
    fold_reason_code,
)
from runtime_job.api.protocol import StreamingApi
from runtime_job.exceptions import (
    ConflictError,
    IBMAccountError,
    IBMApiError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    NotFoundError,
    RequestsApiError,
)
from tests.support.clock import FakeClock

from .test_platform_auth import (
    API_KEY,
    CATALOG,
    CRN_EU,
    CRN_US,
    IAM,
    SEARCH,
    catalog_entry,
    grant_reply,
    jwt,
    search_item,
)

API_US = "https://quantum.cloud.ibm.com/api/v1"
API_EU = "https://eu-de.quantum.cloud.ibm.com/api/v1"
TOKEN = jwt(3600, serial=7)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client() -> Iterator[PlatformClient]:
    with PlatformClient(API_KEY, CRN_US) as made:
        yield made


def platform_headers(crn: str = CRN_US, token: str = TOKEN) -> Any:
    return matchers.header_matcher(
        {"Authorization": f"Bearer {token}", "Service-CRN": crn, "IBM-API-Version": "2026-04-15"}
    )


def assert_key_only_sent_to_iam(rsps: responses.RequestsMock) -> None:
    for call in rsps.calls:
        request = call.request
        text = json.dumps(dict(request.headers)) + str(request.url) + str(request.body or "")
        if request.url == f"{IAM}/identity/token":
            assert "Authorization" not in request.headers
            continue
        assert API_KEY not in text, request.url
        assert "apikey" not in request.headers.get("Authorization", "").lower()


class TestConstruction:
    def test_explicit_crn_sends_nothing(self, rsps: responses.RequestsMock) -> None:
        with PlatformClient(API_KEY, CRN_US) as made:
            assert made.instance == CRN_US and not isinstance(made, StreamingApi)
        assert len(rsps.calls) == 0

    def test_wrong_channel(self) -> None:
        with pytest.raises(IBMInputValueError, match="ibm_quantum_platform"):
            PlatformClient(API_KEY, CRN_US, channel="ibm_quantum")

    def test_discovery_picks_the_free_plan_first(self, rsps: responses.RequestsMock) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            json={
                "items": [
                    search_item(CRN_US, "premium", "plan-p"),
                    search_item(CRN_EU, "open", "plan-o"),
                ]
            },
        )
        rsps.add(responses.GET, f"{CATALOG}/plan-p", json=catalog_entry("Premium", "paid"))
        rsps.add(responses.GET, f"{CATALOG}/plan-o", json=catalog_entry("Open", "free"))
        rsps.add(
            responses.GET,
            f"{API_EU}/backends",
            match=[
                platform_headers(CRN_EU),
                matchers.query_param_matcher({"include_mocks": "True"}),
            ],
            json={
                "devices": [{"name": "ibm_a", "class": "real"}, {"name": "mock_a", "class": "mock"}]
            },
        )
        rsps.add(
            responses.GET,
            f"{API_US}/backends",
            match=[platform_headers(CRN_US)],
            json={"devices": [{"name": "ibm_a"}, {"name": "ibm_b"}]},
        )
        rsps.add(
            responses.GET,
            f"{API_US}/backends/ibm_b/status",
            match=[platform_headers(CRN_US)],
            json={"state": True, "status": "active", "length_queue": 3},
        )
        with PlatformClient(API_KEY) as made:
            assert made.instance == CRN_EU  # the preferred (free) instance, not the last one
            assert made.list_backends() == ["ibm_a", "ibm_b"]
            assert made.backend_status("ibm_b")["pending_jobs"] == 3  # asked under premium
        assert_key_only_sent_to_iam(rsps)
        assert sum(call.request.url.startswith(IAM) for call in rsps.calls) == 1

    def test_validated_crn_not_in_the_account(self, rsps: responses.RequestsMock) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            json={"items": [search_item(CRN_EU, "open", "plan-o")]},
        )
        rsps.add(responses.GET, f"{CATALOG}/plan-o", json=catalog_entry("Open", "free"))
        with pytest.raises(IBMInputValueError, match="does not have access"):
            PlatformClient(API_KEY, CRN_US, validate_instance=True)


class TestJobs:
    def test_submit(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.GET,
            f"{API_US}/instances/usage",
            match=[platform_headers()],
            json={
                "usage_limit_reached": False,
                "usage_limit_seconds": 600,
                "usage_consumed_seconds": 123,
            },
        )
        rsps.add(
            responses.POST,
            f"{API_US}/jobs",
            match=[
                platform_headers(),
                matchers.header_matcher({"Content-Type": "application/json"}),
            ],
            json={"id": "job-1", "backend": "ibm_a"},
        )
        out = client.program_run(
            "sampler",
            "ibm_a",
            {"pubs": [], "version": 2, "support_qiskit": True},
            image=None,
            hgp="ignored/for/platform",
            log_level=None,
            session_id="sess-1",
            job_tags=["t1"],
            max_execution_time=5,
            private=True,
        )
        assert out == {"id": "job-1", "backend": "ibm_a"}
        body = json.loads(rsps.calls[2].request.body)
        assert list(body) == [
            "program_id",
            "params",
            "log_level",
            "backend",
            "session_id",
            "tags",
            "cost",
            "private",
        ]
        assert body["log_level"] == "WARNING" and body["cost"] == 5 and body["private"] is True
        assert "hub" not in body
        assert_key_only_sent_to_iam(rsps)

    def test_usage_limit_warns_and_still_submits(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(responses.GET, f"{API_US}/instances/usage", json={"usage_limit_reached": True})
        rsps.add(responses.POST, f"{API_US}/jobs", json={"id": "job-2"})
        with pytest.warns(UserWarning, match="usage limit"):
            client.program_run("sampler", "ibm_a", {}, None, None, None, None)

    def test_status_get_and_reason_codes(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.GET,
            f"{API_US}/jobs/job-1",
            match=[platform_headers(), matchers.query_param_matcher({"exclude_params": "true"})],
            json={
                "id": "job-1",
                "state": {"status": "Cancelled", "reason": "Ran too long", "reasonCode": 1305},
            },
        )
        rsps.add(
            responses.GET,
            f"{API_US}/jobs/job-1",
            match=[matchers.query_param_matcher({})],
            json={"id": "job-1", "state": {"status": "Completed"}, "params": {"x": 1}},
        )
        model = client.fetch_job("job-1")
        assert model.state is not None and model.state.reason == "Error code 1305; Ran too long"
        assert client.fetch_job("job-1", exclude_params=False).params == {"x": 1}

    def test_fold_reason_code_forms(self) -> None:
        snake = fold_reason_code(
            {"state": {"status": "Failed", "reason": "bad", "reason_code": 1517}}
        )
        assert snake["state"]["reason"] == "Error code 1517; bad"
        camel_first = fold_reason_code(
            {"state": {"reasonCode": 1, "reason_code": 2, "reason": "r"}}
        )
        assert camel_first["state"]["reason"] == "Error code 1; r"
        assert fold_reason_code({"state": {"status": "Queued"}}) == {"state": {"status": "Queued"}}

    def test_other_job_calls(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        results = (
            '{"__type__": "PrimitiveResult", "__value__": {"pub_results": [], "metadata": {}}}'
        )
        rsps.add(
            responses.GET, f"{API_US}/jobs/j/results", match=[platform_headers()], body=results
        )
        rsps.add(responses.POST, f"{API_US}/jobs/j/cancel", match=[platform_headers()], status=204)
        rsps.add(responses.GET, f"{API_US}/jobs/j/logs", body="line 1\n")
        rsps.add(responses.GET, f"{API_US}/jobs/j/metrics", json={"usage": {"quantum_seconds": 2}})
        rsps.add(
            responses.PUT,
            f"{API_US}/jobs/j/tags",
            match=[platform_headers(), matchers.json_params_matcher({"tags": ["a", "b"]})],
            status=204,
        )
        rsps.add(responses.DELETE, f"{API_US}/jobs/j", match=[platform_headers()], status=204)
        assert client.job_results("j") == results.encode()
        assert client.job_interim_results("j") == "null"  # nothing sent
        client.job_cancel("j")
        assert client.job_logs("j") == "line 1\n"
        assert json.loads(client.job_metadata("j")) == {"usage": {"quantum_seconds": 2}}
        client.update_tags("j", ["a", "b"])
        client.job_delete("j")
        cancel = next(c for c in rsps.calls if c.request.url.endswith("/cancel")).request
        assert cancel.body in (None, b"", "") and cancel.method == "POST"
        assert_key_only_sent_to_iam(rsps)

    def test_tags_expect_204(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(responses.PUT, f"{API_US}/jobs/j/tags", json={}, status=200)
        with pytest.raises(IBMApiError, match="not 204"):
            client.update_tags("j", ["a"])

    def test_errors_are_mapped_by_status(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        grant_reply(rsps, TOKEN)
        body = {
            "errors": [{"code": "x", "message": "nope", "more_info": ""}],
            "trace": "t",
            "status_code": 409,
        }
        rsps.add(responses.POST, f"{API_US}/jobs/j/cancel", json=body, status=409)
        rsps.add(responses.GET, f"{API_US}/jobs/j/logs", status=404)
        rsps.add(responses.GET, f"{API_US}/jobs/j/metrics", status=401)
        with pytest.raises(ConflictError):
            client.job_cancel("j")
        with pytest.raises(NotFoundError):
            client.job_logs("j")
        with pytest.raises(IBMNotAuthorizedError) as info:
            client.job_metadata("j")
        assert API_KEY not in str(info.value) and TOKEN not in str(info.value)
        # a 401 is terminal: no new token is asked for
        assert sum(call.request.url.startswith(IAM) for call in rsps.calls) == 1

    def test_listing_query_order(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.GET,
            f"{API_US}/jobs",
            json={
                "jobs": [
                    {"id": "a", "state": {"status": "Failed", "reason": "x", "reason_code": 7}}
                ],
                "count": 1,
            },
        )
        page = client.jobs_get(
            limit=5,
            skip=2,
            backend_name="ibm_a",
            pending=False,
            program_id="sampler",
            hub="h",
            group="g",
            project="p",
            job_tags=["a", "b"],
            session_id="s",
            created_after="2026-01-02T00:00:00+00:00",
            descending=False,
        )
        assert page["jobs"][0]["state"]["reason"] == "Error code 7; x"
        query = parse_qsl(urlsplit(rsps.calls[1].request.url).query)
        assert query == [
            ("exclude_params", "true"),
            ("limit", "5"),
            ("offset", "2"),
            ("backend", "ibm_a"),
            ("pending", "false"),
            ("program", "sampler"),
            ("tags", "a"),
            ("tags", "b"),
            ("session_id", "s"),
            ("created_after", "2026-01-02T00:00:00+00:00"),
            ("sort", "ASC"),
        ]

    def test_multi_instance_lookup_on_404(self, rsps: responses.RequestsMock) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            json={
                "items": [search_item(CRN_US, "open", "plan-o"), search_item(CRN_EU, "p", "plan-p")]
            },
        )
        rsps.add(responses.GET, f"{CATALOG}/plan-o", json=catalog_entry("Open", "free"))
        rsps.add(responses.GET, f"{CATALOG}/plan-p", json=catalog_entry("Premium", "paid"))
        rsps.add(responses.GET, f"{API_US}/jobs/j", match=[platform_headers(CRN_US)], status=404)
        rsps.add(
            responses.GET,
            f"{API_EU}/jobs/j",
            match=[platform_headers(CRN_EU)],
            json={"id": "j", "state": {"status": "Running"}},
        )
        rsps.add(
            responses.GET, f"{API_EU}/jobs/j/results", match=[platform_headers(CRN_EU)], body="{}"
        )
        with PlatformClient(API_KEY) as made:
            assert made.fetch_job("j").id == "j"
            assert made.instance_of_job("j") == CRN_EU
            assert made.job_results("j") == b"{}"  # asked under the job's instance at once

    def test_not_found_anywhere(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(responses.GET, f"{API_US}/jobs/nope", status=404)
        with pytest.raises(NotFoundError):
            client.fetch_job("nope")


class TestSessions:
    def test_session_calls(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(
            responses.POST,
            f"{API_US}/sessions",
            match=[
                platform_headers(),
                matchers.json_params_matcher(
                    {"mode": "batch", "backend": "ibm_a", "instance": CRN_US, "max_ttl": 600}
                ),
            ],
            json={"id": "sess-1"},
        )
        rsps.add(responses.GET, f"{API_US}/sessions/sess-1", json={"id": "sess-1", "state": "open"})
        rsps.add(
            responses.PATCH,
            f"{API_US}/sessions/sess-1",
            match=[matchers.json_params_matcher({"accepting_jobs": False})],
        )
        rsps.add(responses.DELETE, f"{API_US}/sessions/sess-1/close", status=204)
        assert client.create_session("ibm_a", max_time=600, mode="batch")["id"] == "sess-1"
        assert client.session_details("sess-1")["state"] == "open"
        client.close_session("sess-1")
        client.cancel_session("sess-1")

    def test_close_ignores_404(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        grant_reply(rsps, TOKEN)
        rsps.add(responses.PATCH, f"{API_US}/sessions/gone", status=404)
        client.close_session("gone")

    def test_poll_policies(self, client: PlatformClient) -> None:
        assert client.poll_policy_for(None) is JOB_POLL_POLICY
        assert client.poll_policy_for("sess-1") is SESSION_POLL_POLICY
        job = JOB_POLL_POLICY.intervals()
        assert job.next() == 0.5
        session = SESSION_POLL_POLICY.intervals()
        assert session.next() == 0.1


class TestTokenRefreshMidRun:
    def test_expiring_token_is_replaced_before_a_request_without_a_401(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        first, second = jwt(60, serial=1), jwt(60, serial=2)
        grant_reply(rsps, first)
        grant_reply(rsps, second)
        rsps.add(
            responses.GET,
            f"{API_US}/jobs/j",
            match=[platform_headers(token=first)],
            json={"id": "j"},
        )
        rsps.add(
            responses.GET,
            f"{API_US}/jobs/j",
            match=[platform_headers(token=second)],
            json={"id": "j"},
        )
        client.fetch_job("j")
        fake_clock.advance(30)  # 50 % of the lifetime: the same token
        client.fetch_job("j")
        fake_clock.advance(20)  # 10 s before exp: a new grant first
        client.fetch_job("j")
        urls = [call.request.url.split("?")[0] for call in rsps.calls]
        assert urls == [
            f"{IAM}/identity/token",
            f"{API_US}/jobs/j",
            f"{API_US}/jobs/j",
            f"{IAM}/identity/token",
            f"{API_US}/jobs/j",
        ]
        assert all(call.response.status_code == 200 for call in rsps.calls)


def test_a_job_without_a_backend_gets_the_first_listed(
    rsps: responses.RequestsMock, client: PlatformClient
) -> None:
    grant_reply(rsps, TOKEN)
    rsps.add(responses.GET, f"{API_US}/backends", json={"devices": [{"name": "ibm_x"}]})
    rsps.add(responses.GET, f"{API_US}/instances/usage", json={})
    rsps.add(
        responses.POST,
        f"{API_US}/jobs",
        match=[matchers.json_params_matcher({"backend": "ibm_x"}, strict_match=False)],
        json={"id": "j"},
    )
    client.program_run("hello-world", None, {}, None, None, None, None)
    client.program_run("hello-world", None, {}, None, None, None, None)
    assert (
        sum(call.request.url.endswith("/backends?include_mocks=True") for call in rsps.calls) == 1
    )


def test_an_echoed_access_token_is_redacted_from_errors(
    rsps: responses.RequestsMock, client: PlatformClient
) -> None:
    grant_reply(rsps, TOKEN)
    echo = {"errors": [{"message": f"bad token {TOKEN} and key {API_KEY}"}]}
    rsps.add(responses.GET, f"{API_US}/jobs/j/metrics", json=echo, status=400)
    with pytest.raises(RequestsApiError) as info:
        client.job_metadata("j")
    text = str(info.value) + repr(info.value) + str(vars(info.value))
    assert TOKEN not in text and API_KEY not in text and "<redacted>" in text


def test_iam_failure_after_init_never_sends_the_key_to_the_quantum_host(
    ordered: responses.RequestsMock, fake_clock: FakeClock
) -> None:
    """platform.md 2.4: the official client falls back to ``Authorization: apikey``; not us."""
    grant_reply(ordered, jwt(60, serial=1))
    ordered.add(responses.GET, f"{API_US}/jobs/j", json={"id": "j"})
    grant_reply(ordered, "", status=400)  # the key was revoked meanwhile
    with PlatformClient(API_KEY, CRN_US) as made:
        made.fetch_job("j")
        fake_clock.advance(55)  # within 10 s of exp: a new grant is needed, and refused
        with pytest.raises(IBMAccountError, match="IAM refused the API key") as info:
            made.fetch_job("j")
    assert API_KEY not in str(info.value)
    assert len(ordered.calls) == 3  # nothing else went to the quantum host
    assert_key_only_sent_to_iam(ordered)


def test_no_instance_available(rsps: responses.RequestsMock) -> None:
    grant_reply(rsps, TOKEN)
    rsps.add(responses.POST, f"{SEARCH}/v3/resources/search", json={"items": []})
    with pytest.raises(IBMAccountError, match="No IBM Quantum Platform instance"):
        PlatformClient(API_KEY)
    rsps.add(
        responses.POST,
        f"{SEARCH}/v3/resources/search",
        json={"items": [search_item(CRN_EU, "open", "plan-o")]},
    )
    rsps.add(responses.GET, f"{CATALOG}/plan-o", json=catalog_entry("Open", "free"))
    with pytest.raises(IBMAccountError, match="with the given filters"):
        PlatformClient(API_KEY, region="us-south")
