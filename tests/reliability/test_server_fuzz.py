"""The local server's HTTP API, fuzzed with schemathesis against its own OpenAPI document.

Every operation gets valid and invalid inputs (positive and negative generation), with a
valid token, a bounded number of examples each. The server must never answer 5xx, and every
error must carry a JSON body of the documented shape: ``{"errors": [...]}`` at the root,
``{"error": {...}}`` under ``/api``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from runtime_job.server import LocalRuntimeServer
from tests.support.server import server_fixture

from .appspec import openapi_document

TOKEN = "fuzz-token-93b1c2d4"
EXAMPLES = 20


fuzz_server = server_fixture(scope="module", name="fuzz", tokens=[TOKEN], workers=1, programs={})


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
}


def header(response: Any, name: str) -> str:
    value = response.headers.get(name, "")
    return str(value[0] if isinstance(value, list) and value else value)


def check_response(path: str, response: Any) -> None:
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:300]}"
    if status < 400:
        return
    content_type = header(response, "content-type")
    assert content_type.startswith("application/json"), (status, content_type, response.text)
    body = json.loads(response.text)
    if path.startswith("/api"):
        error = body["error"]
        assert isinstance(error["message"], str) and error["status"] == status
    else:
        errors = body["errors"]
        assert isinstance(errors, list) and errors
        assert isinstance(errors[0]["message"], str) and isinstance(errors[0]["code"], str)


def test_every_route_is_fuzzed() -> None:
    from .appspec import http_routes

    assert sorted(OPERATIONS) == sorted(f"{m} {p}" for m, p in http_routes())


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_fuzz_no_5xx_and_every_error_is_json(
    operation: str, fuzz_server: LocalRuntimeServer
) -> None:
    op = OPERATIONS[operation]
    cases = st.one_of(
        op.as_strategy(generation_mode=GenerationMode.POSITIVE),
        op.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    headers = {"X-Access-Token": TOKEN}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, headers=headers, timeout=10)
        check_response(case.path, response)

    run()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[" * 100_000,
        b'{"program_id": "echo", "params": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"program_id": "echo", "params": "' + b"\\ud800" + b'"}',
        b'{"program_id": 12}',
        b'{"program_id": "echo", "tags": ["' + b"x" * 300 + b'"]}',
        b'{"program_id": "echo", "cost": -1}',
        b'{"program_id": "echo", "cost": 1e400}',
        b'{"program_id": "echo", "session_id": "../../etc/passwd"}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_fuzz_hand_picked_bodies(body: bytes, fuzz_server: LocalRuntimeServer) -> None:
    import requests

    response = requests.post(
        fuzz_server.url + "/jobs",
        data=body,
        headers={"X-Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=10,
    )
    check_response("/jobs", response)
