"""Bad input on the platform routes is a 4xx with a JSON error body, never a 5xx: the same
limits as the 2023 routes (body size, ids, tags, nesting), checked through this dialect."""

from __future__ import annotations

import http.client
import json

import pytest
import requests

from runtime_job.server import config

from .conftest import APIKEY_GRANT, Platform

BAD_REQUESTS = [
    ("GET", "/jobs/..%2Fetc", None),
    ("GET", "/jobs/" + "x" * 65, None),
    ("GET", "/sessions/%00", None),
    ("POST", "/jobs", b"[" * 100_000),
    ("POST", "/jobs", b'{"program_id": "echo", "backend": "local_device", "params": NaN}'),
    ("POST", "/jobs", b'{"program_id": "../x", "backend": "local_device"}'),
    ("POST", "/jobs", b'{"program_id": "echo", "backend": "local_device", "cost": -1}'),
    ("POST", "/jobs", b'{"program_id": "echo", "backend": "local_device", "tags": [""]}'),
    ("POST", "/jobs", b'{"program_id": "echo", "backend": "local_device", "session_id": "zz"}'),
    ("POST", "/sessions", b'{"backend": "local_device", "max_ttl": true}'),
    ("POST", "/sessions", b"\xff\xfe"),
    ("GET", "/jobs?offset=-1", None),
    ("GET", "/jobs?created_after=yesterday", None),
    ("GET", "/jobs?pending=maybe", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_requests_are_4xx_with_a_json_body(
    platform: Platform, method: str, path: str, body: bytes | None
) -> None:
    response = platform.request(method, path, data=body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["errors"][0]["message"]


def test_a_body_over_the_limit_is_413(platform: Platform) -> None:
    """The size guard answers from the announced length, before any body is read."""
    host, port = platform.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/api/v1/jobs")
        for name, value in platform.headers().items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(config.MAX_BODY_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"
    finally:
        connection.close()


def test_tags_over_the_limits_are_refused(platform: Platform) -> None:
    job_id = platform.submit("echo", {})
    platform.wait_final(job_id)
    too_many = [f"t{i}" for i in range(config.MAX_TAGS + 1)]
    too_long = ["x" * (config.MAX_TAG_LENGTH + 1)]
    for tags in (too_many, too_long, [1]):
        response = platform.request("PUT", f"/jobs/{job_id}/tags", json={"tags": tags})
        assert response.status_code == 400


def test_iam_and_search_refuse_oversized_or_garbled_input(platform: Platform) -> None:
    token_url = platform.url + "/identity/token"
    big = requests.post(
        token_url, data={"grant_type": APIKEY_GRANT, "apikey": "k" * 20_000}, timeout=10
    )
    assert big.status_code == 413
    garbled = requests.post(token_url, data=b"\xff\xfe=\xff", timeout=10)
    assert garbled.status_code == 400
    headers = {"Authorization": f"Bearer {platform.token}"}
    search = platform.url + "/v3/resources/search"
    for body in (b"[", b"[1]", b'{"search_cursor": "%%%"}'):
        response = requests.post(search, data=body, headers=headers, timeout=10)
        assert response.status_code == 400, response.text
    assert (
        requests.post(search + "?limit=0", json={}, headers=headers, timeout=10).status_code == 400
    )
