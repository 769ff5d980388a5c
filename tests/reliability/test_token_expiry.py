"""Access tokens expire after the ttl the login announces (issue 18, item 6).

The server's wall clock is :attr:`Authenticator.now` (the seam): the tests move it, they
never sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from runtime_job import RuntimeService
from runtime_job.exceptions import IBMNotAuthorizedError
from runtime_job.server import LocalRuntimeServer
from runtime_job.server.auth import ACCESS_TOKEN_TTL, Authenticator, token_digest
from runtime_job.server.store import Store
from tests.support.server import server_fixture

API_TOKEN = "expiry-api-token-0a1b2c"
START = 1_900_000_000.0


class WallClock:
    """A settable wall clock (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


server = server_fixture(scope="module", name="expiry", tokens=[API_TOKEN], workers=1, programs={})
"""A server of its own: the tests move its authenticator's wall clock."""


@pytest.fixture
def clock(server: LocalRuntimeServer) -> Iterator[WallClock]:
    auth = server.authenticator
    original = auth.now
    fake = WallClock(START)
    auth.now = fake
    yield fake
    auth.now = original


def _login(server: LocalRuntimeServer) -> dict[str, object]:
    response = requests.post(
        server.api_url + "/users/loginWithToken", json={"apiToken": API_TOKEN}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _jobs_status(server: LocalRuntimeServer, access: str) -> requests.Response:
    return requests.get(server.url + "/jobs", headers={"X-Access-Token": access}, timeout=10)


def test_login_announces_the_ttl_it_enforces(server: LocalRuntimeServer, clock: WallClock) -> None:
    body = _login(server)
    assert body["ttl"] == int(ACCESS_TOKEN_TTL) == 1209600
    created = datetime.fromisoformat(str(body["created"]).replace("Z", "+00:00"))
    assert created == datetime.fromtimestamp(START, UTC)
    access = str(body["id"])

    assert _jobs_status(server, access).status_code == 200
    clock.now = START + ACCESS_TOKEN_TTL - 1
    assert _jobs_status(server, access).status_code == 200
    clock.now = START + ACCESS_TOKEN_TTL
    expired = _jobs_status(server, access)
    assert expired.status_code == 401
    assert expired.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert access not in expired.text
    # Forgotten for good: the clock going back does not revive it.
    clock.now = START
    assert _jobs_status(server, access).status_code == 401
    # Under /api too, and over every credential header.
    clock.now = START + ACCESS_TOKEN_TTL
    me = requests.get(server.api_url + "/users/me", headers={"X-Access-Token": access}, timeout=10)
    assert me.status_code == 401
    bearer = requests.get(
        server.url + "/jobs", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )
    assert bearer.status_code == 401
    # Logging in again gives a token that works; the API token itself never expires.
    fresh = str(_login(server)["id"])
    assert _jobs_status(server, fresh).status_code == 200
    assert _jobs_status(server, API_TOKEN).status_code == 200


def test_a_stored_token_expires_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "runtime.sqlite3")
    try:
        clock = WallClock(START)
        access = Authenticator([API_TOKEN], store, now=clock).login(API_TOKEN)
        assert access is not None
        # A new server (no cache) over the same database, within and past the ttl.
        later = WallClock(START + ACCESS_TOKEN_TTL - 1)
        assert Authenticator([API_TOKEN], store, now=later).user_for_token(access) is not None
        later.now = START + ACCESS_TOKEN_TTL + 1
        assert Authenticator([API_TOKEN], store, now=later).user_for_token(access) is None
        assert store.access_token_record(token_digest(access)) is None
    finally:
        store.close()


def test_the_client_logs_in_again_when_its_access_token_expires(
    server: LocalRuntimeServer, clock: WallClock
) -> None:
    with RuntimeService(channel="ibm_quantum", url=server.api_url, token=API_TOKEN) as service:
        job = service.run(
            "hello-world", inputs={"iterations": 1}, options={"backend": "local_simulator"}
        )
        first = service._client_params.token
        assert first != API_TOKEN
        clock.now = START + ACCESS_TOKEN_TTL + 60
        # Every call refused with 401 logs in again once and goes on.
        assert job.job_id() in [listed.job_id() for listed in service.jobs(limit=5)]
        assert job.result(timeout=60) == "Hello, World!"
        second = service._client_params.token
        assert second not in (first, API_TOKEN)
        assert _jobs_status(server, first).status_code == 401
        assert _jobs_status(server, second).status_code == 200


def test_a_refused_login_again_surfaces_the_401(
    server: LocalRuntimeServer, clock: WallClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RuntimeService(channel="ibm_quantum", url=server.api_url, token=API_TOKEN) as service:
        clock.now = START + ACCESS_TOKEN_TTL + 60
        # The API token was revoked meanwhile: the login fails, the 401 is raised.
        monkeypatch.setattr(server.authenticator, "login", lambda token: None)
        with pytest.raises(IBMNotAuthorizedError):
            service.jobs(limit=1)
