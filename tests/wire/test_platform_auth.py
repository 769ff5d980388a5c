"""IBM Quantum Platform plumbing on the wire (platform.md 1-4): IAM, endpoints, discovery."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from responses import matchers

from runtime_job.api.iam import IamTokenManager, jwt_claims
from runtime_job.api.platform import (
    API_VERSION,
    PlatformInstance,
    discover_instances,
    order_instances,
    platform_headers,
    quantum_api_base,
    resolve_endpoints,
)
from runtime_job.exceptions import (
    ApiConnectionError,
    IBMAccountError,
    IBMNotAuthorizedError,
    UserTimeoutExceededError,
)
from runtime_job.timing import Deadline
from tests.support.clock import FakeClock

API_KEY = "apikey-SECRET-0123456789abcdef"
IAM = "https://iam.cloud.ibm.com"
SEARCH = "https://api.global-search-tagging.cloud.ibm.com"
CATALOG = "https://globalcatalog.cloud.ibm.com/api/v1"
CRN_US = "crn:v1:bluemix:public:quantum-computing:us-east:a/acc:inst-1::"
CRN_EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/acc:inst-2::"


def jwt(lifetime: float, iat: float | None = None, serial: int = 0) -> str:
    """A three-part JWT with ``iat`` and ``exp`` (the signature is never checked)."""
    issued = time.time() if iat is None else iat
    claims = {"iat": int(issued), "exp": int(issued + lifetime), "n": serial}

    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def grant_reply(rsps: responses.RequestsMock, token: str, status: int = 200) -> None:
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
    if status != 200:
        body = {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}
    rsps.add(responses.POST, f"{IAM}/identity/token", json=body, status=status)


class HeldGrant:
    """IAM's answer to a grant, held back until the test lets it go."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.entered.set()
        self.release.wait(30)
        return 200, {}, json.dumps({"access_token": self.token})

    @contextlib.contextmanager
    def in_flight(self, manager: IamTokenManager) -> Iterator[list[str]]:
        """A thread asks ``manager`` for a token; the block runs while IAM holds the grant.
        Yields the list that gets the thread's token once the block has let IAM answer."""
        got: list[str] = []
        thread = threading.Thread(target=lambda: got.append(manager.token()), name="grant")
        thread.start()
        try:
            assert self.entered.wait(10)
            yield got
        finally:
            self.release.set()
            thread.join(10)


class TestIamTokenManager:
    def test_the_grant_request(self, rsps: responses.RequestsMock) -> None:
        token = jwt(3600)
        grant_reply(rsps, token)
        manager = IamTokenManager(API_KEY)
        assert manager.token() == token
        request = rsps.calls[0].request
        assert request.method == "POST" and request.url == f"{IAM}/identity/token"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.headers["Accept"] == "application/json"
        assert parse_qs(str(request.body)) == {
            "grant_type": ["urn:ibm:params:oauth:grant-type:apikey"],
            "apikey": [API_KEY],
            "response_type": ["cloud_iam"],
        }
        assert "Authorization" not in request.headers

    def test_token_is_reused_then_refreshed_10s_before_exp(
        self, rsps: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        """R: 18 with expires_in 15 s: reused at +2.5 s, a new grant before a use at +6.5 s."""
        first, second = jwt(15, serial=1), jwt(15, serial=2)
        grant_reply(rsps, first)
        grant_reply(rsps, second)
        manager = IamTokenManager(API_KEY)
        assert manager.token() == first
        fake_clock.advance(2.5)
        assert manager.token() == first and manager.grants == 1
        fake_clock.advance(4.0)
        assert manager.token() == second and manager.grants == 2

    def test_refresh_after_80_percent_of_the_lifetime(
        self, rsps: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        first, second = jwt(3600, serial=1), jwt(3600, serial=2)
        grant_reply(rsps, first)
        grant_reply(rsps, second)
        manager = IamTokenManager(API_KEY)
        manager.token()
        fake_clock.advance(0.8 * 3600 - 1)
        assert manager.token() == first
        fake_clock.advance(2)
        assert manager.token() == second

    def test_failed_early_refresh_keeps_the_valid_token(
        self, ordered: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        first = jwt(3600, serial=1)
        grant_reply(ordered, first)
        for _ in range(3):
            ordered.add(responses.POST, f"{IAM}/identity/token", status=503)
        manager = IamTokenManager(API_KEY)
        manager.token()
        fake_clock.advance(3000)  # past 80 %, far from exp
        assert manager.token() == first  # three tries failed: kept
        assert manager.token() == first  # no new try before RETRY_LATER
        assert len(ordered.calls) == 4

    def test_short_lifetime_means_a_grant_per_use(
        self, rsps: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        for serial in range(3):
            grant_reply(rsps, jwt(8, serial=serial))
        manager = IamTokenManager(API_KEY)
        tokens = {manager.token() for _ in range(3)}
        assert len(tokens) == 3

    def test_refused_key_is_a_clear_error_without_the_key(
        self, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
    ) -> None:
        grant_reply(rsps, "", status=400)
        manager = IamTokenManager(API_KEY)
        with caplog.at_level(logging.DEBUG), pytest.raises(IBMAccountError) as info:
            manager.token()
        text = str(info.value)
        assert "BXNIM0415E" in text and "400" in text and API_KEY not in text
        assert API_KEY not in repr(manager) and API_KEY not in caplog.text

    def test_unreachable_iam_is_retried_then_raised(
        self, rsps: responses.RequestsMock, sleeps: list[float]
    ) -> None:
        import requests

        rsps.add(responses.POST, f"{IAM}/identity/token", body=requests.ConnectionError("down"))
        manager = IamTokenManager(API_KEY)
        with pytest.raises(ApiConnectionError, match="IAM") as info:
            manager.token()
        assert API_KEY not in str(info.value)
        assert len(rsps.calls) == 3 and sleeps == [0.5, 1.0]

    def test_not_a_jwt(self, rsps: responses.RequestsMock) -> None:
        grant_reply(rsps, "opaque-token")
        with pytest.raises(IBMAccountError, match="not a JWT"):
            IamTokenManager(API_KEY).token()
        with pytest.raises(ValueError, match="not a JWT"):
            jwt_claims("a.b")

    def test_threads_share_one_grant(self, rsps: responses.RequestsMock) -> None:
        token = jwt(3600)
        grant_reply(rsps, token)
        manager = IamTokenManager(API_KEY)
        got: list[str] = []
        threads = [
            threading.Thread(target=lambda: got.append(manager.token()), name=f"t{n}")
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert got == [token] * 8 and manager.grants == 1

    def test_a_deadline_bounds_the_wait_for_a_grant_in_flight(
        self, rsps: responses.RequestsMock
    ) -> None:
        grant = HeldGrant(jwt(3600))
        rsps.add_callback(responses.POST, f"{IAM}/identity/token", callback=grant)
        manager = IamTokenManager(API_KEY)
        with (
            grant.in_flight(manager) as got,
            pytest.raises(UserTimeoutExceededError, match="waiting for the IAM grant in flight"),
        ):
            manager.token(Deadline(0.05))
        assert got == [grant.token] and manager.token(Deadline(0.05)) == grant.token

    def test_others_use_the_good_token_while_one_caller_refreshes_it(
        self, ordered: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        first, grant = jwt(3600, serial=1), HeldGrant(jwt(3600, serial=2))
        grant_reply(ordered, first)
        ordered.add_callback(responses.POST, f"{IAM}/identity/token", callback=grant)
        manager = IamTokenManager(API_KEY)
        assert manager.token() == first
        fake_clock.advance(0.9 * 3600)  # past 80 %: the next call refreshes
        with grant.in_flight(manager) as refreshed:
            assert manager.token() == first  # no wait behind the refresh
        assert refreshed == [grant.token] and manager.token() == grant.token
        assert manager.grants == 2

    def test_a_retry_that_would_pass_the_deadline_is_not_made(
        self, ordered: responses.RequestsMock, sleeps: list[float]
    ) -> None:
        ordered.add(
            responses.POST, f"{IAM}/identity/token", status=503, headers={"Retry-After": "30"}
        )
        manager = IamTokenManager(API_KEY)
        with pytest.raises(UserTimeoutExceededError, match="a retry would wait longer") as info:
            manager.token(Deadline(5))
        assert "503" in str(info.value) and API_KEY not in str(info.value)
        assert sleeps == [] and len(ordered.calls) == 1

    def test_a_deadline_cut_early_refresh_keeps_the_token_and_tries_again(
        self, ordered: responses.RequestsMock, fake_clock: FakeClock, sleeps: list[float]
    ) -> None:
        first, second = jwt(3600, serial=1), jwt(3600, serial=2)
        grant_reply(ordered, first)
        ordered.add(
            responses.POST, f"{IAM}/identity/token", status=503, headers={"Retry-After": "30"}
        )
        grant_reply(ordered, second)
        manager = IamTokenManager(API_KEY)
        manager.token()
        fake_clock.advance(0.9 * 3600)
        assert manager.token(Deadline(5)) == first  # the refresh could not finish in time
        assert manager.token() == second  # and is tried again at once, not RETRY_LATER on
        assert sleeps == []

    def test_no_api_key(self) -> None:
        with pytest.raises(IBMAccountError, match="API key"):
            IamTokenManager("  ")


class TestEndpoints:
    def test_regions_and_private_endpoints(self) -> None:
        assert quantum_api_base(None, CRN_US) == "https://quantum.cloud.ibm.com/api/v1"
        assert quantum_api_base(None, CRN_EU) == "https://eu-de.quantum.cloud.ibm.com/api/v1"
        assert (
            quantum_api_base(None, CRN_US, private_endpoint=True)
            == "https://private.us-east.quantum.cloud.ibm.com/api/v1"
        )
        assert quantum_api_base("https://test.cloud.ibm.com", CRN_EU) == (
            "https://eu-de.quantum.test.cloud.ibm.com/api/v1"
        )
        assert quantum_api_base(None, None) == ""

    def test_direct_urls_are_the_api(self) -> None:
        assert quantum_api_base("http://127.0.0.1:8080", CRN_EU) == "http://127.0.0.1:8080/api/v1"
        assert quantum_api_base("https://quantum.cloud.ibm.com/api/v1", CRN_EU) == (
            "https://quantum.cloud.ibm.com/api/v1"
        )
        assert quantum_api_base("https://experimental.example", CRN_EU) == (
            "https://experimental.example/api/v1"
        )
        local = resolve_endpoints("http://localhost:9000/", CRN_US, environ={})
        assert (local.api, local.iam, local.search, local.catalog) == (
            "http://localhost:9000/api/v1",
            "http://localhost:9000",
            "http://localhost:9000",
            "http://localhost:9000/catalog",
        )

    def test_cloud_services_and_environment_overrides(self) -> None:
        cloud = resolve_endpoints(None, CRN_US, environ={})
        assert (cloud.iam, cloud.search, cloud.catalog) == (IAM, SEARCH, CATALOG)
        private = resolve_endpoints(None, CRN_US, private_endpoint=True, environ={})
        assert private.iam == "https://private.iam.cloud.ibm.com"
        staging = "crn:v1:staging:public:quantum-computing:us-east:a/acc:inst::"
        assert resolve_endpoints(None, staging, environ={}).iam == "https://iam.test.cloud.ibm.com"
        env = {
            "IAM_URL": "http://iam.x/",
            "GLOBAL_SEARCH_URL": "http://s.x",
            "GLOBAL_CATALOG_URL": "http://c.x",
        }
        over = resolve_endpoints(None, CRN_US, environ=env)
        assert (over.iam, over.search, over.catalog) == ("http://iam.x", "http://s.x", "http://c.x")
        assert over.api_for(CRN_EU) == "https://eu-de.quantum.cloud.ibm.com/api/v1"

    def test_headers(self) -> None:
        assert platform_headers("jwt-value", CRN_US) == {
            "Authorization": "Bearer jwt-value",
            "Service-CRN": CRN_US,
            "IBM-API-Version": API_VERSION,
        }
        assert API_VERSION == "2026-04-15"


def search_item(crn: str, name: str, plan: str, allocated: bool = True, tags: Any = ()) -> Any:
    doc: dict[str, Any] = {"extensions": {"virtual_private_endpoints": {}}} if allocated else {}
    return {
        "crn": crn,
        "name": name,
        "service_plan_unique_id": plan,
        "doc": doc,
        "tags": list(tags),
    }


def catalog_entry(name: str, pricing: str) -> Any:
    return {
        "overview_ui": {"en": {"display_name": name}},
        "metadata": {"pricing": {"type": pricing}},
    }


class TestDiscovery:
    def test_search_with_cursor_and_catalog(self, rsps: responses.RequestsMock) -> None:
        endpoints = resolve_endpoints(None, None, environ={})
        fields = ["crn", "service_plan_unique_id", "name", "doc", "tags"]
        first_body = {"query": "service_name:quantum-computing", "fields": fields}
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            match=[
                matchers.query_param_matcher({"limit": "100"}),
                matchers.json_params_matcher(first_body),
                matchers.header_matcher(
                    {"Authorization": "Bearer tok", "content-type": "application/json"}
                ),
            ],
            json={
                "items": [
                    search_item(CRN_US, "premium-1", "plan-premium", tags=["team"]),
                    search_item(
                        "crn:v1:bluemix:public:quantum-computing:us-east:a/acc:x::",
                        "x",
                        "p",
                        allocated=False,
                    ),
                ],
                "search_cursor": "page-2",
            },
        )
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            match=[matchers.json_params_matcher({**first_body, "search_cursor": "page-2"})],
            json={"items": [search_item(CRN_EU, "open-1", "plan-open")]},
        )
        rsps.add(
            responses.GET,
            f"{CATALOG}/plan-premium",
            match=[matchers.header_matcher({"Authorization": "Bearer tok"})],
            json=catalog_entry("Premium", "Paid"),
        )
        rsps.add(responses.GET, f"{CATALOG}/plan-open", json=catalog_entry("Open", "free"))
        found = discover_instances(endpoints, lambda: "tok")
        assert found == [
            PlatformInstance(CRN_US, "premium-1", "premium", "paid", ("team",)),
            PlatformInstance(CRN_EU, "open-1", "open", "free", ()),
        ]
        ordered = order_instances(found)
        assert [i.name for i in ordered] == ["open-1", "premium-1"]
        assert [i.name for i in order_instances(found, plans_preference=["Premium"])] == [
            "premium-1"
        ]
        assert [i.name for i in order_instances(found, tags=["team"])] == ["premium-1"]
        assert [i.name for i in order_instances(found, region="eu-de")] == ["open-1"]

    def test_catalog_failure_gives_unknown_plan(
        self, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
    ) -> None:
        endpoints = resolve_endpoints(None, None, environ={})
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            json={
                "items": [search_item(CRN_US, "a", "plan-a"), search_item(CRN_EU, "b", "plan-a")]
            },
        )
        rsps.add(responses.GET, f"{CATALOG}/plan-a", status=500)  # asked once per plan
        with caplog.at_level(logging.WARNING):
            found = discover_instances(endpoints, lambda: "tok")
        assert [(i.plan, i.pricing) for i in found] == [("unknown", "unknown")] * 2
        assert "plan-a" in caplog.text

    def test_a_repeated_cursor_ends_the_loop(self, rsps: responses.RequestsMock) -> None:
        endpoints = resolve_endpoints(None, None, environ={})
        rsps.add(
            responses.POST,
            f"{SEARCH}/v3/resources/search",
            json={"items": [], "search_cursor": "same"},
        )
        assert discover_instances(endpoints, lambda: "tok") == []
        assert len(rsps.calls) == 2

    @pytest.mark.parametrize(
        ("status", "error"), [(401, IBMNotAuthorizedError), (403, IBMAccountError)]
    )
    def test_search_errors(
        self, rsps: responses.RequestsMock, status: int, error: type[Exception]
    ) -> None:
        endpoints = resolve_endpoints(None, None, environ={})
        rsps.add(responses.POST, f"{SEARCH}/v3/resources/search", status=status)
        with pytest.raises(error, match="Unable to retrieve instances"):
            discover_instances(endpoints, lambda: "tok")
