"""The login API, backends, authentication and error shapes of the local server."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest
import requests

from runtime_job.server import LocalRuntimeServer
from runtime_job.server.config import MAX_BODY_BYTES
from tests.integration.helpers import ALICE, Api, ws_refused

JOB = "abcdefghij0123456789"
ROUTES = [
    ("GET", "/api/users/me"),
    ("GET", "/api/Network"),
    ("GET", "/backends"),
    ("GET", "/backends/local_simulator/status"),
    ("GET", "/backends/local_simulator/configuration"),
    ("GET", "/backends/local_simulator/properties"),
    ("GET", "/backends/local_simulator/defaults"),
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", f"/jobs/{JOB}"),
    ("DELETE", f"/jobs/{JOB}"),
    ("GET", f"/jobs/{JOB}/results"),
    ("GET", f"/jobs/{JOB}/interim_results"),
    ("GET", f"/jobs/{JOB}/logs"),
    ("GET", f"/jobs/{JOB}/metrics"),
    ("POST", f"/jobs/{JOB}/cancel"),
    ("DELETE", f"/sessions/{JOB}/close"),
]


def test_version_needs_no_token(anon: Api) -> None:
    response = anon.get("/api/version")
    assert response.status_code == 200
    body = response.json()
    assert body["new_api"] is True and "api-auth" in body
    assert response.headers["X-Idempotency-Supported"] == "true"


def test_login_gives_an_access_token_that_works(anon: Api, server: LocalRuntimeServer) -> None:
    response = anon.post("/api/users/loginWithToken", json={"apiToken": ALICE})
    assert response.status_code == 200
    access = response.json()["id"]
    assert access and access != ALICE
    me = anon.get("/api/users/me", headers={"X-Access-Token": access})
    assert me.status_code == 200
    urls = me.json()["urls"]
    assert urls["http"] == server.url + "/api"
    assert urls["services"]["runtime"] == server.url
    assert anon.get("/backends", headers={"X-Access-Token": access}).status_code == 200


def test_login_accepts_a_body_without_content_type(anon: Api) -> None:
    body = json.dumps({"apiToken": ALICE})
    response = anon.post("/api/users/loginWithToken", data=body)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body", [{"apiToken": "wrong"}, {"apiToken": 5}, {}, [], {"apiToken": "\ud800"}]
)
def test_login_failure_is_a_legacy_401(anon: Api, body: object) -> None:
    response = anon.post("/api/users/loginWithToken", data=json.dumps(body))
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "Login failed.",
            "code": "LOGIN_FAILED",
            "name": "LOGIN_FAILED",
            "status": 401,
        }
    }


def test_login_with_bad_json_is_422(anon: Api) -> None:
    response = anon.post("/api/users/loginWithToken", data=b"{nope")
    assert response.status_code == 422
    assert "error" in response.json()


def test_network_has_one_default_project(alice: Api) -> None:
    hubs = alice.get("/api/Network").json()
    assert len(hubs) == 1
    hub = hubs[0]
    assert hub["name"] == "local"
    group = hub["groups"]["default"]
    assert group["projects"]["main"]["isDefault"] is True


def test_backends(alice: Api) -> None:
    assert alice.get("/backends").json() == {"devices": ["local_simulator"]}
    assert alice.get("/backends", params={"provider": "local/default/main"}).json() == {
        "devices": ["local_simulator"]
    }
    assert alice.get("/backends", params={"provider": "a/b/c"}).json() == {"devices": []}
    status = alice.get("/backends/local_simulator/status").json()
    assert status["state"] is True and status["status"] == "active"
    assert isinstance(status["length_queue"], int)
    assert status["backend_version"] == "1.0.0"
    assert alice.get("/backends/local_simulator/properties").json() == {}
    assert alice.get("/backends/local_simulator/defaults").status_code == 404
    assert alice.get("/backends/nope/status").status_code == 404
    assert alice.get("/backends/nope/configuration").status_code == 404


def test_backend_configuration_is_complete(alice: Api) -> None:
    config = alice.get("/backends/local_simulator/configuration").json()
    for key in (
        "backend_name",
        "backend_version",
        "n_qubits",
        "basis_gates",
        "gates",
        "local",
        "simulator",
        "conditional",
        "open_pulse",
        "memory",
        "max_shots",
        "coupling_map",
        "max_experiments",
        "online_date",
    ):
        assert key in config, key
    assert config["simulator"] is True and config["open_pulse"] is False
    assert all({"name", "parameters", "qasm_def"} <= set(gate) for gate in config["gates"])


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token(anon: Api, method: str, path: str) -> None:
    missing = anon.request(method, path)
    wrong = anon.request(method, path, headers={"X-Access-Token": "not-a-token"})
    for response in (missing, wrong):
        assert response.status_code == 401, response.text
        assert response.headers["X-Idempotency-Supported"] == "true"
        body = response.json()
        if path.startswith("/api/"):
            assert body["error"]["status"] == 401
        else:
            assert body["errors"][0]["message"]
            assert "trace" in body


def test_websocket_needs_a_token(server: LocalRuntimeServer) -> None:
    assert ws_refused(server.url, JOB, {}) == 401
    assert ws_refused(server.url, JOB, {"X-Access-Token": "wrong"}) == 401


def test_ibm_cloud_headers_authenticate(anon: Api) -> None:
    headers = {"Authorization": f"apikey {ALICE}", "Service-CRN": "crn:v1:anything"}
    assert anon.get("/backends", headers=headers).status_code == 200
    bad = {"Authorization": "apikey wrong", "Service-CRN": "crn:v1:anything"}
    assert anon.get("/backends", headers=bad).status_code == 401


def test_unknown_route_is_a_runtime_404(alice: Api) -> None:
    response = alice.get("/nothing/here")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "NOT_FOUND"


def test_wrong_method_is_405(alice: Api) -> None:
    response = alice.request("PUT", "/jobs")
    assert response.status_code == 405


def test_declared_oversized_body_is_413(server: LocalRuntimeServer) -> None:
    url = urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", "/jobs")
        conn.putheader("X-Access-Token", ALICE)
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert response.getheader("X-Idempotency-Supported") == "true"
        assert json.loads(response.read())["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"
    finally:
        conn.close()


def test_streamed_oversized_body_is_413(alice: Api) -> None:
    chunk = b" " * (8 * 1024 * 1024)

    def body():  # type: ignore[no-untyped-def]
        for _ in range(MAX_BODY_BYTES // len(chunk)):
            yield chunk
        yield b" "

    try:
        response = alice.post("/jobs", data=body())
    except requests.ConnectionError:  # pragma: no cover - the server may close first
        return
    assert response.status_code == 413
