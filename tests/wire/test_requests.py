"""What goes on the wire: bodies, headers per channel, queries, paths, timeouts."""

from __future__ import annotations

import json
import math
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from responses import matchers

from runtime_job.api.client import AuthClient, RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.session import CLIENT_APPLICATION, HttpSession
from runtime_job.exceptions import ApiIBMProtocolError, IBMInputValueError, RequestsApiError

from .conftest import (
    ACCESS_TOKEN,
    API_TOKEN,
    AUTH_URL,
    CLOUD_BASE,
    CLOUD_URL,
    CRN,
    LOCAL_URL,
    QUANTUM_URL,
    TOKEN,
    local_params,
)

JOB = {"id": "j1", "state": {"status": "QUEUED"}}


# --------------------------------------------------------------------------- POST /jobs


def test_post_jobs_body_matches_the_reference_example(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", json={"id": "j1", "backend": "bk", "extra": 1})
    response = client.program_run(
        program_id="sampler",
        backend_name="bk",
        params={"a": complex(1, 2)},
        image="img:tag",
        hgp="h/g/p",
        log_level="INFO",
        session_id="s1",
        job_tags=["t1", "t2"],
        max_execution_time=100,
        start_session=True,
        session_time=None,
    )
    assert response == {"id": "j1", "backend": "bk", "extra": 1}  # unknown fields survive
    request = rsps.calls[0].request
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    sent = json.loads(body)
    expected = json.loads(
        '{"program_id": "sampler", "params": {"a": {"__type__": "complex", "__value__": '
        '[1.0, 2.0]}}, "runtime": "img:tag", "log_level": "INFO", "backend": "bk", '
        '"session_id": "s1", "tags": ["t1", "t2"], "cost": 100, "start_session": true, '
        '"session_time": null, "hub": "h", "group": "g", "project": "p"}'
    )
    assert sent == expected
    assert list(sent) == list(expected)  # key order too
    assert request.headers["Content-Type"] == "application/json"
    assert uuid.UUID(request.headers["Idempotency-Key"]).version == 4


@pytest.mark.parametrize(
    ("kwargs", "keys"),
    [
        ({}, ["program_id", "params"]),
        ({"max_execution_time": 0, "job_tags": [], "image": ""}, ["program_id", "params"]),
        (
            {"start_session": True, "session_time": 600},
            ["program_id", "params", "start_session", "session_time"],
        ),
        ({"start_session": False, "session_time": 600}, ["program_id", "params"]),
        ({"hgp": "h//p"}, ["program_id", "params"]),
        (
            {"backend_name": "bk", "hgp": "h/g/p"},
            ["program_id", "params", "backend", "hub", "group", "project"],
        ),
    ],
)
def test_post_jobs_inclusion_rules(
    rsps: responses.RequestsMock, client: RuntimeClient, kwargs: dict[str, Any], keys: list[str]
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    args: dict[str, Any] = {
        "program_id": "p",
        "backend_name": None,
        "params": {"x": 1},
        "image": None,
        "hgp": None,
        "log_level": None,
        "session_id": None,
    }
    client.program_run(**{**args, **kwargs})
    assert list(json.loads(rsps.calls[0].request.body)) == keys


def test_post_jobs_bad_instance(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    with pytest.raises(IBMInputValueError) as info:
        client.program_run("p", "bk", {}, None, "foo", None, None)
    assert info.value.message == (
        "Input instance value foo is not in the correct hub/group/project format."
    )
    assert len(rsps.calls) == 0


def test_post_jobs_given_idempotency_key(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.post(
        f"{LOCAL_URL}/jobs",
        json={"id": "j1"},
        match=[matchers.header_matcher({"Idempotency-Key": "k-1"})],
    )
    client.program_run("p", None, {}, None, None, None, None, idempotency_key="k-1")


# ------------------------------------------------------------------- headers per channel


def channel_params() -> list[tuple[ClientParameters, str, dict[str, str], tuple[str, ...]]]:
    return [
        (
            ClientParameters(channel="ibm_quantum", token=ACCESS_TOKEN, url=QUANTUM_URL),
            QUANTUM_URL,
            {"X-Access-Token": ACCESS_TOKEN},
            ("Authorization", "Service-CRN"),
        ),
        (
            ClientParameters(channel="ibm_cloud", token=TOKEN, url=CLOUD_URL, instance=CRN),
            CLOUD_BASE,
            {"Service-CRN": CRN, "Authorization": f"apikey {TOKEN}"},
            ("X-Access-Token",),
        ),
        (
            local_params(),
            LOCAL_URL,
            {"X-Access-Token": TOKEN},
            ("Authorization", "Service-CRN"),
        ),
    ]


@pytest.mark.parametrize(
    ("params", "base", "expected", "absent"),
    channel_params(),
    ids=["ibm_quantum", "ibm_cloud", "local"],
)
def test_auth_headers_per_channel(
    rsps: responses.RequestsMock,
    make_client: Callable[..., RuntimeClient],
    params: ClientParameters,
    base: str,
    expected: dict[str, str],
    absent: tuple[str, ...],
) -> None:
    client = make_client(params)
    rsps.get(f"{base}/jobs/j1", json=JOB, match=[matchers.header_matcher(expected)])
    rsps.post(f"{base}/jobs/j1/cancel", match=[matchers.header_matcher(expected)])
    client.job_get("j1")
    client.job_cancel("j1")
    for call in rsps.calls:
        headers = call.request.headers
        assert headers["X-Qx-Client-Application"] == CLIENT_APPLICATION
        assert headers["User-Agent"] == CLIENT_APPLICATION
        for name in absent:
            assert name not in headers


def test_client_application_value() -> None:
    assert CLIENT_APPLICATION.startswith("runtime-job/")
    assert CLIENT_APPLICATION != "runtime-job/"


def test_token_change_after_construction_is_used(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    params = local_params()
    client = make_client(params)
    params.token = "new-token-value"
    rsps.get(
        f"{LOCAL_URL}/jobs/j1",
        json=JOB,
        match=[matchers.header_matcher({"X-Access-Token": "new-token-value"})],
    )
    client.job_get("j1")


@pytest.mark.parametrize(
    ("env", "suffix"),
    [
        ({"QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER": "batman"}, "/batman"),
        ({"QE_CUSTOM_CLIENT_APP_HEADER": "robin"}, "/robin"),
        (
            {
                "QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER": "batman",
                "QE_CUSTOM_CLIENT_APP_HEADER": "x",
            },
            "/batman",
        ),
        ({}, ""),
    ],
)
def test_custom_client_app_header_is_on_the_wire(
    rsps: responses.RequestsMock,
    make_client: Callable[..., RuntimeClient],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    suffix: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = make_client()
    rsps.get(f"{LOCAL_URL}/jobs/j1", json=JOB)
    client.job_get("j1")
    header = rsps.calls[0].request.headers["X-Qx-Client-Application"]
    assert header == CLIENT_APPLICATION + suffix


def test_reference_60_session_headers(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., RuntimeClient]
) -> None:
    monkeypatch.setenv("QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER", "batman")
    client = make_client()
    client._session._set_custom_header()
    assert "batman" in client._session.headers["X-Qx-Client-Application"]
    monkeypatch.delenv("QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER")
    other = make_client()
    other._session.custom_header = None
    other._session._set_custom_header()
    assert "batman" not in other._session.headers["X-Qx-Client-Application"]


def test_credentials_dropped_on_cross_host_redirect(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(
        f"{LOCAL_URL}/jobs/j1/results",
        status=302,
        headers={"Location": "http://elsewhere.test/blob"},
    )
    rsps.get("http://elsewhere.test/blob", body="result")
    assert client.job_results("j1") == b"result"
    assert rsps.calls[0].request.headers["X-Access-Token"] == TOKEN
    assert "X-Access-Token" not in rsps.calls[1].request.headers


# ------------------------------------------------------------------------------ GET /jobs


def query_of(mock: responses.RequestsMock, index: int = 0) -> str:
    return urlsplit(mock.calls[index].request.url).query


def test_jobs_get_query_matches_the_reference(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [JOB], "count": 1, "more": True})
    page = client.jobs_get(
        limit=5,
        skip=2,
        backend_name="bk",
        pending=False,
        program_id="sampler",
        hub="h",
        group="g",
        project="p",
        job_tags=["a", "b"],
        session_id="s",
        created_after=datetime(2023, 1, 1, 12, 0, tzinfo=UTC),
        descending=False,
    )
    assert page == {"jobs": [JOB], "count": 1, "more": True}
    assert query_of(rsps) == (
        "limit=5&offset=2&backend=bk&pending=false&program=sampler&tags=a&tags=b&session_id=s"
        "&created_after=2023-01-01T12%3A00%3A00%2B00%3A00&sort=ASC&provider=h%2Fg%2Fp"
    )


def test_jobs_get_defaults_send_no_query(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [], "count": 0})
    client.jobs_get()
    assert query_of(rsps) == ""


def test_jobs_get_falsy_values(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [], "count": 0})
    client.jobs_get(limit=0, skip=0, pending=True, hub="h", group="g", descending=True)
    assert query_of(rsps) == "pending=true"


def test_jobs_get_extensions_are_sent_only_when_asked(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [JOB], "count": 3, "next_cursor": "41"})
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [], "count": 3})
    page = client.jobs_get(limit=1, exclude_params=True)
    assert query_of(rsps) == "limit=1&exclude_params=true"
    assert page["next_cursor"] == "41"
    client.jobs_get(limit=1, exclude_params=False, cursor=page["next_cursor"])
    assert query_of(rsps, 1) == "limit=1&cursor=41"


@pytest.fixture
def eastern_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("eastern_time")
def test_jobs_get_converts_datetimes_to_utc(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [], "count": 0})
    client.jobs_get(
        created_after=datetime(2023, 1, 1, 7, 0),  # naive: local time (UTC-5)
        created_before=datetime(2023, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert query_of(rsps) == (
        "created_after=2023-01-01T12%3A00%3A00%2B00%3A00"
        "&created_before=2023-01-01T12%3A00%3A00%2B00%3A00"
    )


# ------------------------------------------------------------------------ paths, quoting


@pytest.mark.parametrize(
    ("call", "args", "method", "path"),
    [
        ("job_get", ("a/b c?",), "GET", "/jobs/a%2Fb%20c%3F"),
        ("job_results", ("a/b",), "GET", "/jobs/a%2Fb/results"),
        ("job_interim_results", ("j#1",), "GET", "/jobs/j%231/interim_results"),
        ("job_cancel", ("../x",), "POST", "/jobs/..%2Fx/cancel"),
        ("job_delete", ("j 1",), "DELETE", "/jobs/j%201"),
        ("job_logs", ("j1",), "GET", "/jobs/j1/logs"),
        ("job_metadata", ("j1",), "GET", "/jobs/j1/metrics"),
        ("close_session", ("s/1",), "DELETE", "/sessions/s%2F1/close"),
        ("backend_configuration", ("ibm q",), "GET", "/backends/ibm%20q/configuration"),
        ("backend_status", ("a/b",), "GET", "/backends/a%2Fb/status"),
        ("backend_properties", ("bk",), "GET", "/backends/bk/properties"),
        ("backend_pulse_defaults", ("bk",), "GET", "/backends/bk/defaults"),
    ],
)
def test_paths_are_quoted(
    rsps: responses.RequestsMock,
    client: RuntimeClient,
    call: str,
    args: tuple[str, ...],
    method: str,
    path: str,
) -> None:
    body = JOB if call == "job_get" else {}
    rsps.add(responses.Response(method, f"{LOCAL_URL}{path}", json=body))
    getattr(client, call)(*args)
    assert urlsplit(rsps.calls[0].request.url).path == path


def test_text_endpoints_return_text(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    for name in ("results", "interim_results", "logs", "metrics"):
        rsps.get(f"{LOCAL_URL}/jobs/j1/{name}", body=f"text of {name}")
    assert client.job_results("j1") == b"text of results"
    assert client.job_interim_results("j1") == "text of interim_results"
    assert client.job_logs("j1") == "text of logs"
    assert client.job_metadata("j1") == "text of metrics"


def test_job_get_exclude_params(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(
        f"{LOCAL_URL}/jobs/j1",
        json={**JOB, "unknown": {"kept": True}},
        match=[matchers.query_string_matcher("exclude_params=true")],
    )
    assert client.job_get("j1", exclude_params=True)["unknown"] == {"kept": True}


def test_cancel_and_delete_send_no_body(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.post(f"{LOCAL_URL}/jobs/j1/cancel", status=204)
    rsps.delete(f"{LOCAL_URL}/jobs/j1", status=204)
    client.job_cancel("j1")
    client.job_delete("j1")
    for call in rsps.calls:
        assert not call.request.body
        assert call.request.headers.get("Content-Length") == "0"


# -------------------------------------------------------------------------- backends


def test_list_backends(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(
        f"{LOCAL_URL}/backends",
        json={"devices": ["a", "b"]},
        match=[matchers.query_string_matcher("provider=h%2Fg%2Fp")],
    )
    rsps.get(f"{LOCAL_URL}/backends", json={"devices": ["c"]})
    assert client.list_backends("h/g/p") == ["a", "b"]
    assert client.list_backends() == ["c"]
    assert query_of(rsps, 1) == ""


def test_backends_by_instance_in_order(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    for hgp, names in (("h2/g2/p2", ["x"]), ("h1/g1/p1", ["y"])):
        rsps.get(
            f"{LOCAL_URL}/backends",
            json={"devices": names},
            match=[matchers.query_param_matcher({"provider": hgp})],
        )
    assert list(client.backends_by_instance(["h2/g2/p2", "h1/g1/p1"]).items()) == [
        ("h2/g2/p2", ["x"]),
        ("h1/g1/p1", ["y"]),
    ]
    assert [query_of(rsps, i) for i in range(2)] == [
        "provider=h2%2Fg2%2Fp2",
        "provider=h1%2Fg1%2Fp1",
    ]


@pytest.mark.parametrize(
    ("body", "mapped"),
    [
        (
            {"state": True, "status": "active", "length_queue": 3, "backend_version": "1.2"},
            {
                "operational": True,
                "status_msg": "active",
                "pending_jobs": 3,
                "backend_version": "1.2",
            },
        ),
        (
            {},
            {"operational": False, "status_msg": "", "pending_jobs": 0, "backend_version": "0.0.0"},
        ),
        (
            {"state": True, "length_queue": -4},
            {"operational": True, "status_msg": "", "pending_jobs": 0, "backend_version": "0.0.0"},
        ),
    ],
)
def test_backend_status_mapping(
    rsps: responses.RequestsMock,
    client: RuntimeClient,
    body: dict[str, Any],
    mapped: dict[str, Any],
) -> None:
    rsps.get(f"{LOCAL_URL}/backends/bk/status", json=body)
    assert client.backend_status("bk") == {"backend_name": "bk", **mapped}


def test_backend_properties(rsps: responses.RequestsMock, client: RuntimeClient) -> None:
    rsps.get(f"{LOCAL_URL}/backends/bk/properties", json={"backend_name": "x", "qubits": []})
    rsps.get(f"{LOCAL_URL}/backends/empty/properties", json={})
    assert client.backend_properties("bk") == {"backend_name": "bk", "qubits": []}
    assert client.backend_properties("empty") == {}
    with pytest.raises(NotImplementedError):
        client.backend_properties("bk", datetime=datetime.now())


def test_backend_configuration_and_defaults(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    rsps.get(f"{LOCAL_URL}/backends/bk/configuration", json={"n_qubits": 5, "x": [1]})
    rsps.get(f"{LOCAL_URL}/backends/bk/defaults", json={"pulse_library": []})
    assert client.backend_configuration("bk") == {"n_qubits": 5, "x": [1]}
    assert client.backend_pulse_defaults("bk") == {"pulse_library": []}


# -------------------------------------------------------------------- external results


def test_external_result_has_no_auth_and_checks_status(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    client = make_client(local_params(verify=False, proxies={"urls": {"https": "http://proxy:1"}}))
    rsps.get("https://blob.test/r1", body=b"\x00payload")
    rsps.get("https://blob.test/missing", status=404, body="NoSuchKey")
    assert client.external_result("https://blob.test/r1") == b"\x00payload"
    request = rsps.calls[0].request
    assert "X-Access-Token" not in request.headers
    assert "Authorization" not in request.headers
    kwargs = request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["verify"] is False
    assert kwargs["proxies"]["https"] == "http://proxy:1"
    assert kwargs["timeout"] == (5.0, 60.0)
    with pytest.raises(RequestsApiError) as info:
        client.external_result("https://blob.test/missing")
    assert info.value.status_code == 404


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", ""])
def test_external_result_rejects_other_schemes(client: RuntimeClient, url: str) -> None:
    with pytest.raises(ApiIBMProtocolError):
        client.external_result(url)


# ------------------------------------------------------------------------ every request


def test_every_request_has_a_finite_timeout_and_the_tls_settings(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    params = local_params(connect_timeout=2.5, read_timeout=7.0, verify="/ca.pem")
    client = make_client(params)
    rsps.add_callback(
        responses.GET, f"{LOCAL_URL}/jobs/j1", callback=lambda r: (200, {}, json.dumps(JOB))
    )
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [], "count": 0})
    for name in ("results", "interim_results", "logs", "metrics"):
        rsps.get(f"{LOCAL_URL}/jobs/j1/{name}", body="")
    rsps.post(f"{LOCAL_URL}/jobs", json={"id": "j1"})
    rsps.post(f"{LOCAL_URL}/jobs/j1/cancel")
    rsps.delete(f"{LOCAL_URL}/jobs/j1")
    rsps.delete(f"{LOCAL_URL}/sessions/s1/close")
    rsps.get(f"{LOCAL_URL}/backends", json={"devices": []})
    for name in ("configuration", "status", "properties", "defaults"):
        rsps.get(f"{LOCAL_URL}/backends/bk/{name}", json={})
    rsps.get("https://blob.test/r", body="x")

    client.job_get("j1")
    client.jobs_get()
    client.job_results("j1")
    client.job_interim_results("j1")
    client.job_logs("j1")
    client.job_metadata("j1")
    client.program_run("p", None, {}, None, None, None, None)
    client.job_cancel("j1")
    client.job_delete("j1")
    client.close_session("s1")
    client.list_backends()
    client.backend_configuration("bk")
    client.backend_status("bk")
    client.backend_properties("bk")
    client.backend_pulse_defaults("bk")
    client.external_result("https://blob.test/r")

    assert len(rsps.calls) == 16
    for call in rsps.calls:
        kwargs = call.request.req_kwargs  # type: ignore[attr-defined]
        connect, read = kwargs["timeout"]
        assert (connect, read) == (2.5, 7.0)
        assert math.isfinite(connect) and math.isfinite(read)
        assert kwargs["verify"] == "/ca.pem"


def test_per_request_timeout_must_be_finite() -> None:
    with HttpSession(local_params()) as session, pytest.raises(ValueError):
        session.request("GET", "/jobs", timeout=(1.0, float("inf")))


def test_closed_session_refuses_requests() -> None:
    session = HttpSession(local_params())
    session.close()
    assert session.closed
    with pytest.raises(RequestsApiError):
        session.request("GET", "/jobs")


# ------------------------------------------------------------------------ open_stream


def test_open_stream_delegates_to_the_hub(
    monkeypatch: pytest.MonkeyPatch, client: RuntimeClient
) -> None:
    calls: list[dict[str, Any]] = []
    subscription = object()

    class Hub:
        def subscribe(self, **kwargs: Any) -> object:
            calls.append(kwargs)
            return subscription

    fake = types.ModuleType("runtime_job.api.stream")
    fake.default_hub = Hub  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime_job.api.stream", fake)
    listener = object()
    assert client.open_stream("j1", listener) is subscription  # type: ignore[arg-type]
    assert calls == [
        {
            "job_id": "j1",
            "url": "ws://runtime.test/stream/jobs/j1",
            "params": client._params,
            "listener": listener,
            "sequenced": False,  # the server never said it offers the extension
        }
    ]


# ----------------------------------------------------------------- ibm_quantum bootstrap


def test_ibm_quantum_bootstrap(rsps: responses.RequestsMock, auth_client: AuthClient) -> None:
    rsps.get(f"{AUTH_URL}/version", json={"api-auth": "0.1", "other": 1})
    rsps.post(
        f"{AUTH_URL}/users/loginWithToken",
        json={"id": ACCESS_TOKEN, "ttl": 1209600},
        match=[
            matchers.json_params_matcher({"apiToken": API_TOKEN}),
            matchers.header_matcher({"Content-Type": "application/json"}),
        ],
    )
    rsps.get(
        f"{AUTH_URL}/users/me",
        json={
            "urls": {
                "http": "https://api.quantum.test",
                "ws": "wss://ignored",
                "services": {"runtime": QUANTUM_URL},
            },
            "extra": "kept",
        },
        match=[matchers.header_matcher({"X-Access-Token": ACCESS_TOKEN})],
    )
    rsps.get(
        "https://api.quantum.test/Network",
        json=[
            {
                "name": "ibm-q",
                "groups": {"open": {"projects": {"main": {"isDefault": False}}}},
            },
            {
                "name": "hub2",
                "groups": {"group2": {"projects": {"project2": {"isDefault": True}}}},
            },
        ],
        match=[matchers.header_matcher({"X-Access-Token": ACCESS_TOKEN})],
    )

    info = auth_client.version()
    assert info["new_api"] is True
    assert auth_client.login(API_TOKEN) == ACCESS_TOKEN
    user = auth_client.user_info()
    assert user["urls"]["services"]["runtime"] == QUANTUM_URL
    assert user["extra"] == "kept"
    assert auth_client.network(user["urls"]["http"]) == ["ibm-q/open/main", "hub2/group2/project2"]

    version_call, login_call = rsps.calls[0], rsps.calls[1]
    for call in (version_call, login_call):
        assert "X-Access-Token" not in call.request.headers
    # The API token is sent exactly once, in the login body.
    sent_anywhere = [
        call
        for call in rsps.calls
        if API_TOKEN in str(call.request.headers) or API_TOKEN in str(call.request.url)
    ]
    assert sent_anywhere == []


@pytest.mark.parametrize(
    ("hubs", "order"),
    [
        ([("h", "g", "p", False)], ["h/g/p"]),
        ([("a", "g", "p", False), ("b", "g", "p", False)], ["b/g/p", "a/g/p"]),
        (
            [("a", "g", "p", False), ("b", "g", "p", True), ("c", "g", "p", False)],
            ["a/g/p", "c/g/p", "b/g/p"],
        ),
        ([], []),
    ],
)
def test_network_ordering(
    rsps: responses.RequestsMock,
    auth_client: AuthClient,
    hubs: list[tuple[str, str, str, bool]],
    order: list[str],
) -> None:
    body = [{"name": h, "groups": {g: {"projects": {p: {"isDefault": d}}}}} for h, g, p, d in hubs]
    rsps.get("https://api.test/Network", json=body)
    assert auth_client.network("https://api.test/") == order


def test_login_5xx_is_retried(
    ordered: responses.RequestsMock, auth_client: AuthClient, sleeps: list[float]
) -> None:
    ordered.post(f"{AUTH_URL}/users/loginWithToken", status=502)
    ordered.post(f"{AUTH_URL}/users/loginWithToken", json={"id": ACCESS_TOKEN})
    assert auth_client.login(API_TOKEN) == ACCESS_TOKEN
    assert sleeps == [0.5]


def test_runtime_client_implements_the_job_protocols(client: RuntimeClient) -> None:
    from runtime_job.api.protocol import ExternalResultApi, StreamingApi

    assert isinstance(client, ExternalResultApi)
    assert isinstance(client, StreamingApi)
    for name in ("job_get", "job_results", "job_interim_results", "job_cancel", "job_logs"):
        assert callable(getattr(client, name))


def test_fetch_jobs_validates_each_job_once_and_names_a_bad_one(
    rsps: responses.RequestsMock, client: RuntimeClient
) -> None:
    good = {"id": "j1", "state": {"status": "DONE"}, "unknown": 1}
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [good], "count": 2, "next_cursor": "7"})
    rsps.get(f"{LOCAL_URL}/jobs", json={"jobs": [{"id": "j2", "tags": "not-a-list"}], "count": 2})
    page = client.fetch_jobs(limit=1, exclude_params=True)
    assert query_of(rsps) == "limit=1&exclude_params=true"
    assert (page.count, page.next_cursor) == (2, "7")
    assert page.jobs == [{"id": "j1", "state": {"status": "DONE"}}]  # known fields only
    with pytest.raises(ApiIBMProtocolError) as caught:
        client.fetch_jobs(limit=1, cursor="7")
    assert "job j2" in str(caught.value) and "tags" in str(caught.value)
    assert caught.value.status_code == 200 and caught.value.url is not None
