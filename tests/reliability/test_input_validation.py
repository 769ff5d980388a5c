"""Input the server must refuse with a clear error (issue 18, items 1, 8 and 9).

- params with NaN, Infinity or 1e400 are not JSON once echoed back: 400 on input;
- params with a lone surrogate (sent as the JSON escape ``\\ud800``) cannot be stored or
  printed: 400 naming the problem;
- a websocket path that matches no route (``/stream/jobs/..%2F..%2Fx``) gets the documented
  404 JSON body (401 without a token), not a bare 403.
"""

from __future__ import annotations

import json

import pytest
import requests
import websocket

from runtime_job.server import LocalRuntimeServer

from .conftest import ALICE


def _post_raw(server: LocalRuntimeServer, body: str) -> requests.Response:
    return requests.post(
        server.url + "/jobs",
        data=body.encode("ascii"),
        headers={"X-Access-Token": ALICE, "Content-Type": "application/json"},
        timeout=10,
    )


def _job_count(server: LocalRuntimeServer) -> int:
    response = requests.get(
        server.url + "/jobs", params={"limit": 1}, headers={"X-Access-Token": ALICE}, timeout=10
    )
    assert response.status_code == 200
    return int(response.json()["count"])


@pytest.mark.parametrize(
    "params",
    [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": 1e400}',
        '{"x": [1, {"y": -1e999}]}',
        '"{\\"x\\": NaN}"',  # params given as a JSON string
    ],
)
def test_non_finite_numbers_in_params_are_refused(server: LocalRuntimeServer, params: str) -> None:
    before = _job_count(server)
    response = _post_raw(server, f'{{"program_id": "echo", "params": {params}}}')
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "INVALID_PARAMS"
    assert "NaN" in error["message"] and "Infinity" in error["message"]
    assert _job_count(server) == before


@pytest.mark.parametrize(
    "params",
    [
        '{"\\ud800": 1}',
        '{"x": "a\\udfffb"}',
        '{"x": ["\\udc00\\ud800"]}',  # a low surrogate before a high one is no pair
        '"{\\"\\\\ud800\\": 1}"',  # params given as a JSON string
    ],
)
def test_lone_surrogates_in_params_are_refused(server: LocalRuntimeServer, params: str) -> None:
    before = _job_count(server)
    response = _post_raw(server, f'{{"program_id": "echo", "params": {params}}}')
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "INVALID_PARAMS"
    assert "not valid Unicode" in error["message"] and "surrogate" in error["message"]
    assert _job_count(server) == before


@pytest.mark.parametrize(
    "params",
    [
        '{"x": "\\ud83d\\ude00"}',  # a surrogate pair: one valid character
        '{"x": "\\\\ud800"}',  # a backslash, then the text "ud800"
        '{"x": 1.5e308, "y": -0.0}',
    ],
)
def test_valid_params_near_the_limits_are_accepted(server: LocalRuntimeServer, params: str) -> None:
    response = _post_raw(server, f'{{"program_id": "echo", "params": {params}}}')
    assert response.status_code == 200, response.text
    job_id = response.json()["id"]
    stored = requests.get(
        f"{server.url}/jobs/{job_id}", headers={"X-Access-Token": ALICE}, timeout=10
    )
    assert stored.status_code == 200
    assert stored.json()["params"] == json.loads(params)


def _handshake_status(url: str, headers: list[str]) -> websocket.WebSocketBadStatusException:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        ws = websocket.create_connection(url, header=headers, timeout=5)
        ws.close()  # pragma: no cover - only if the handshake wrongly succeeds
    return caught.value


@pytest.mark.parametrize(
    "path",
    ["/stream/jobs/..%2F..%2Fx", "/stream/jobs/a/b", "/stream/jobs/%2Fetc%2Fpasswd", "/stream/x"],
)
def test_unrouted_websocket_paths_get_the_documented_404(
    server: LocalRuntimeServer, path: str
) -> None:
    url = server.url.replace("http://", "ws://") + path
    refused = _handshake_status(url, [f"X-Access-Token: {ALICE}"])
    assert refused.status_code == 404
    body = json.loads(refused.resp_body)
    expected = "JOB_NOT_FOUND" if path.startswith("/stream/jobs/") else "NOT_FOUND"
    assert body["errors"][0]["code"] == expected
    assert "passwd" not in refused.resp_body.decode()
    assert _handshake_status(url, []).status_code == 401
