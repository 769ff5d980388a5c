"""Fixtures of the platform-dialect tests: one embedded local server with two users.

``platform``: a :class:`Platform` helper bound to that server, logged in (IAM) as ``alice``
on her default instance; ``platform.as_user(...)`` and ``platform.on(crn)`` give helpers for
another user or instance.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from runtime_job.server import LocalRuntimeServer
from tests.support.server import server_fixture
from tests.support.waiting import wait_until

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
TOKENS = ("alice-api-key", "bob-api-key")
FINAL = ("Completed", "Failed", "Cancelled")


def claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


@dataclass
class Platform:
    """Requests of one user on one instance of the platform dialect."""

    url: str
    apikey: str
    crn: str = ""
    token: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def login(self) -> Platform:
        response = self.session.post(
            self.url + "/identity/token",
            data={"grant_type": APIKEY_GRANT, "apikey": self.apikey},
            timeout=10,
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        if not self.crn:
            self.crn = self.instances()[0]["crn"]
        return self

    def instances(self) -> list[dict[str, Any]]:
        response = self.session.post(
            self.url + "/v3/resources/search?limit=100",
            json={"query": "service_name:quantum-computing", "fields": ["crn"]},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["items"]  # type: ignore[no-any-return]

    def on(self, crn: str) -> Platform:
        return Platform(self.url, self.apikey, crn, self.token)

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Service-CRN": self.crn,
            "IBM-API-Version": "2026-04-15",
        }

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.session.request(
            method, self.url + "/api/v1" + path, headers=headers, timeout=30, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def submit(self, program_id: str, params: Any = None, **fields: Any) -> str:
        body = {"program_id": program_id, "params": params or {}, "backend": "local_device"}
        body.update(fields)
        response = self.request("POST", "/jobs", json=body)
        assert response.status_code == 200, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}?exclude_params=true")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_final(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"]["status"] in FINAL else None

        return wait_until(final, timeout, f"job {job_id} final")

    def wait_status(self, job_id: str, status: str, timeout: float = 60.0) -> None:
        wait_until(
            lambda: self.job(job_id)["state"]["status"] == status, timeout, f"{job_id} {status}"
        )


platform_server = server_fixture(
    scope="package", name="platform-data", tokens=list(TOKENS), workers=2, programs={}
)


@pytest.fixture
def platform(platform_server: LocalRuntimeServer) -> Platform:
    return Platform(platform_server.url, TOKENS[0]).login()


@pytest.fixture
def bob(platform_server: LocalRuntimeServer) -> Platform:
    return Platform(platform_server.url, TOKENS[1]).login()
