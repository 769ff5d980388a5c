"""The local server keeps users apart and keeps secrets; it binds safely.

- user A cannot see, cancel, stream or delete user B's jobs (404, as for a job that does not
  exist);
- every endpoint and the websocket refuse a missing or wrong token (401), enumerated from
  the application's own route table so no route is forgotten;
- tokens never appear in logs (client and server, at DEBUG), reprs, exception messages or
  the SQLite files (main database, ``-wal`` and ``-shm``);
- the server binds 127.0.0.1 unless told otherwise, and then refuses to start without TLS
  or an explicit ``--insecure-bind``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from runtime_job import RuntimeService
from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.stream import default_hub
from runtime_job.exceptions import RequestsApiError, RuntimeJobNotFound, WebsocketError
from runtime_job.server import LocalRuntimeServer
from tests.stream.streamkit import LoopThread, Recorder
from tests.tlscert import make_cert

from .appspec import http_routes, websocket_routes
from .conftest import ALICE, BOB, wait_until
from .faultproxy import FaultProxy, Respond
from .serverproc import ServeProcess, free_port, python_path

PUBLIC = {("GET", "/api/version"), ("POST", "/api/users/loginWithToken")}


@pytest.fixture(scope="module")
def alice_jobs(server: LocalRuntimeServer) -> Iterator[dict[str, str]]:
    """Alice's jobs: one finished (with a session), one still running."""
    params = ClientParameters(channel="local", token=ALICE, url=server.url)
    with RuntimeClient(params) as client:
        done = client.program_run(
            "chatty", None, {"n": 2}, None, None, None, None, start_session=True
        )["id"]
        running = client.program_run("sleep", None, {"seconds": 60}, None, None, None, None)["id"]
        assert wait_until(lambda: client.job_get(done)["state"]["status"] == "COMPLETED")
        yield {"done": done, "running": running, "session": done}
        client.job_cancel(running)


def fill(path: str, jobs: dict[str, str]) -> str:
    return (
        path.replace("{job_id}", jobs["done"])
        .replace("{name}", "local_simulator")
        .replace("{session_id}", jobs["session"])
    )


# -- isolation ---------------------------------------------------------------------------------


def test_another_user_cannot_see_cancel_stream_or_delete(
    server: LocalRuntimeServer, alice_jobs: dict[str, str], connect: Callable[..., RuntimeService]
) -> None:
    bob = connect(server.url, token=BOB)
    for job_id in (alice_jobs["done"], alice_jobs["running"]):
        with pytest.raises(RuntimeJobNotFound):
            bob.job(job_id)
        with pytest.raises(RuntimeJobNotFound):
            bob.delete_job(job_id)
        client = bob._api_client
        calls: list[Callable[[str], Any]] = [
            client.job_get,
            client.job_results,
            client.job_interim_results,
            client.job_logs,
            client.job_metadata,
            client.job_cancel,
            client.job_delete,
        ]
        for call in calls:
            with pytest.raises(RequestsApiError) as caught:
                call(job_id)
            assert caught.value.status_code == 404
        recorder = Recorder()
        handle = default_hub().subscribe(
            job_id=job_id,
            url=f"{bob._client_params.get_websocket_base_url()}/stream/jobs/{job_id}",
            params=bob._client_params,
            listener=recorder,
        )
        recorder.wait(10)
        assert handle.wait(5)
        assert recorder.frames == []
        _end, error = recorder.ends[0]
        assert isinstance(error, WebsocketError) and "404" in str(error)
    with pytest.raises(RequestsApiError) as caught:
        bob._api_client.close_session(alice_jobs["session"])
    assert caught.value.status_code == 404
    listed = {job.job_id() for job in bob.jobs(limit=None)}
    assert not listed & set(alice_jobs.values())

    # Alice's jobs are untouched.
    alice = connect(server.url, token=ALICE)
    assert alice.job(alice_jobs["running"]).status().name in ("RUNNING", "QUEUED")
    assert alice.job(alice_jobs["done"]).result() == {"n": 2}


@pytest.mark.parametrize(("method", "path"), [r for r in http_routes() if "{job_id}" in r[1]])
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda t: {"X-Access-Token": t}, id="x-access-token"),
        pytest.param(lambda t: {"Authorization": f"Bearer {t}"}, id="bearer"),
        pytest.param(lambda t: {"Authorization": f"apikey {t}", "Service-CRN": "x"}, id="apikey"),
    ],
)
def test_every_job_route_is_a_404_for_another_user(
    server: LocalRuntimeServer,
    alice_jobs: dict[str, str],
    method: str,
    path: str,
    header: Callable[[str], dict[str, str]],
) -> None:
    for which in ("done", "running"):
        url = server.url + path.replace("{job_id}", alice_jobs[which])
        response = requests.request(method, url, headers=header(BOB), timeout=10)
        assert response.status_code == 404, (which, response.text)
        assert response.json()["errors"][0]["code"] == "JOB_NOT_FOUND"
        # ...exactly what a job that does not exist gets.
        ghost = server.url + path.replace("{job_id}", "nosuchjob0123456789")
        assert (
            requests.request(method, ghost, headers=header(BOB), timeout=10).json()["errors"][0][
                "code"
            ]
            == "JOB_NOT_FOUND"
        )
    assert wait_until(
        lambda: (
            requests.get(
                f"{server.url}/jobs/{alice_jobs['running']}",
                headers={"X-Access-Token": ALICE},
                timeout=10,
            ).json()["state"]["status"]
            == "RUNNING"
        )
    )


# -- authentication ----------------------------------------------------------------------------

BAD_CREDENTIALS = {
    "none": {},
    "empty": {"X-Access-Token": ""},
    "wrong": {"X-Access-Token": "not-a-token-at-all"},
    "almost": {"X-Access-Token": ALICE[:-1]},
    "bearer-wrong": {"Authorization": "Bearer not-a-token"},
    "apikey-wrong": {"Authorization": "apikey not-a-token", "Service-CRN": "crn:v1"},
    "basic": {"Authorization": "Basic " + "YWxpY2U6eA=="},
    "scheme-only": {"Authorization": "Bearer"},
}
PROTECTED = [r for r in http_routes() if r not in PUBLIC]


def test_the_route_table_has_every_documented_route() -> None:
    assert len(PROTECTED) >= 17
    assert ("POST", "/jobs") in PROTECTED and ("GET", "/api/users/me") in PROTECTED
    assert websocket_routes() == ["/stream/jobs/{job_id}"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_refuses_a_missing_or_wrong_token(
    server: LocalRuntimeServer, alice_jobs: dict[str, str], method: str, path: str
) -> None:
    body = json.dumps({"program_id": "echo", "params": {}}) if method == "POST" else None
    for name, headers in BAD_CREDENTIALS.items():
        for target in (fill(path, alice_jobs), path.replace("{job_id}", "unknown0123")):
            response = requests.request(
                method, server.url + target, headers=headers, data=body, timeout=10
            )
            assert response.status_code == 401, (name, target, response.status_code)
            error = response.json()
            assert ("error" in error) if path.startswith("/api") else ("errors" in error)
    # Nothing was created or cancelled by all that.
    status = requests.get(
        f"{server.url}/jobs/{alice_jobs['running']}",
        headers={"X-Access-Token": ALICE},
        timeout=10,
    ).json()["state"]["status"]
    assert status == "RUNNING"


@pytest.mark.parametrize("body", [{}, {"apiToken": "wrong"}, {"apiToken": ""}, {"apiToken": 5}])
def test_login_refuses_a_missing_or_wrong_token(server: LocalRuntimeServer, body: Any) -> None:
    response = requests.post(server.url + "/api/users/loginWithToken", json=body, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "LOGIN_FAILED"


@pytest.mark.parametrize("path", websocket_routes())
def test_websocket_refuses_a_missing_or_wrong_token(
    server: LocalRuntimeServer, alice_jobs: dict[str, str], path: str
) -> None:
    base = server.url.replace("http://", "ws://")
    for name, headers in BAD_CREDENTIALS.items():
        for target in (fill(path, alice_jobs), path.replace("{job_id}", "unknown0123")):
            for query in ("", "?seq=1&after=0"):
                with pytest.raises(websocket.WebSocketBadStatusException) as caught:
                    ws = websocket.create_connection(
                        base + target + query,
                        header=[f"{k}: {v}" for k, v in headers.items()],
                        timeout=5,
                    )
                    ws.close()  # pragma: no cover - only if the handshake wrongly succeeds
                assert caught.value.status_code == 401, (name, target)


# -- secrets -----------------------------------------------------------------------------------


def _collect_reprs(*objects: Any) -> str:
    return "\n".join(f"{obj!r} {obj!s}" for obj in objects)


def test_tokens_never_appear_in_logs_reprs_errors_or_the_database(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    loop_thread: LoopThread,
    sleeps: list[float],
) -> None:
    api_token = "api-token-SECRET-1b2c3d4e5f60718293"
    other = "other-token-SECRET-9f8e7d6c5b4a3928"
    data_dir = tmp_path / "secret-data"
    texts: list[str] = []
    errors: list[BaseException] = []

    def expect_error(call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as err:
            errors.append(err)
        else:  # pragma: no cover - each call below must fail
            raise AssertionError("expected an error")

    with caplog.at_level(logging.DEBUG):
        with LocalRuntimeServer(data_dir=data_dir, tokens=[api_token, other], workers=1) as srv:
            port = int(srv.url.rsplit(":", 1)[1])
            with FaultProxy(loop_thread, ("127.0.0.1", port)) as proxy:
                # A misbehaving gateway that echoes the credentials it got.
                proxy.add(
                    "GET",
                    "/jobs/echo-me/results",
                    Respond(500, f'{{"errors": [{{"message": "token {api_token} refused"}}]}}'),
                )
                local = RuntimeService(channel="local", url=proxy.url, token=api_token)
                quantum = RuntimeService(channel="ibm_quantum", url=srv.api_url, token=api_token)
                # ibm_cloud is the platform dialect now: IAM, discovery, /api/v1.
                cloud = RuntimeService(channel="ibm_cloud", url=srv.url, token=api_token)
                access_token = quantum._client_params.token
                assert access_token and access_token != api_token
                try:
                    for service in (local, quantum, cloud):
                        options = {"backend": "local_simulator"}
                        job = service.run(
                            "hello-world",
                            inputs={"iterations": 2},
                            options=options,
                            callback=lambda job_id, value: None,
                        )
                        job.result(timeout=30)
                        job.wait_for_final_state(timeout=10)
                        job.interim_results()
                        job.logs()
                        job.metrics()
                        service.jobs(limit=5)
                        expect_error(job.cancel)
                        service.delete_job(job.job_id())
                        expect_error(lambda s=service: s.job("nosuchjob0123456789"))
                        texts.append(_collect_reprs(service, service._api_client, job))
                        texts.append(_collect_reprs(service._client_params))
                    expect_error(lambda: local._api_client.job_results("echo-me"))
                    wrong = RuntimeService(channel="local", url=srv.url, token=api_token + "x")
                    expect_error(lambda: wrong.jobs(limit=1))
                    expect_error(
                        lambda: RuntimeService(channel="ibm_quantum", url=srv.api_url, token="x")
                    )
                    texts.append(_collect_reprs(default_hub(), wrong))
                    wrong.close()
                finally:
                    for service in (local, quantum, cloud):
                        service.close()
            db_files = sorted(data_dir.glob("runtime.sqlite3*"))
            assert any(p.name.endswith("-wal") for p in db_files)
            stored = [p.read_bytes() for p in db_files]
        stored += [p.read_bytes() for p in data_dir.glob("runtime.sqlite3*")]
        for path in data_dir.iterdir():
            if path.name != "token" and path.is_file():
                stored.append(path.read_bytes())

    assert len(errors) == 3 * 2 + 3
    for err in errors:
        texts.append(_collect_reprs(err))
        texts.append(" ".join(str(getattr(err, name, "")) for name in ("body_excerpt", "url")))
    texts.append(caplog.text)
    texts.extend(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert any("refused" in t for t in texts)  # the echoed body did reach the error (redacted)
    everything = "\n".join(texts)
    for secret in (api_token, other, access_token):
        assert secret not in everything, f"a token leaked: {secret[:8]}..."
        for blob in stored:
            assert secret.encode() not in blob, f"a token is stored in clear: {secret[:8]}..."
    assert oct((data_dir / "token").stat().st_mode & 0o777) == "0o600"


def test_serve_logs_never_show_tokens_even_at_debug(tmp_path: Path) -> None:
    token = "serve-token-SECRET-0a1b2c3d4e5f"
    serve = ServeProcess(tmp_path / "d", [token], workers=1, extra=["--log-level", "debug"])
    serve.start()
    try:
        headers = {"X-Access-Token": token}
        job_id = requests.post(
            serve.url + "/jobs", json={"program_id": "hello-world"}, headers=headers, timeout=10
        ).json()["id"]
        ws = websocket.create_connection(
            serve.url.replace("http", "ws") + f"/stream/jobs/{job_id}?seq=1",
            header=[f"X-Access-Token: {token}"],
            timeout=10,
        )
        try:
            while ws.recv():
                pass
        except websocket.WebSocketConnectionClosedException:
            pass
        finally:
            ws.close()
            ws.shutdown()
        requests.get(serve.url + "/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        requests.post(serve.url + "/api/users/loginWithToken", json={"apiToken": token}, timeout=10)
    finally:
        serve.stop()
    log = serve.log.read_text()
    assert "DEBUG" in log  # the server did log at debug level
    assert token not in log
    for path in (tmp_path / "d").glob("runtime.sqlite3*"):
        assert token.encode() not in path.read_bytes()


# -- binding -----------------------------------------------------------------------------------


def listening(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, _, hexport = local.partition(":")
                if state == "0A" and int(hexport, 16) == port:
                    found.add(address)
    return found


LOOPBACK_V4 = "0100007F"
ANY_V4 = "00000000"


def test_embedded_server_binds_loopback_by_default(server: LocalRuntimeServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    assert server.url.startswith("http://127.0.0.1:")
    assert listening(port) == {LOOPBACK_V4}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_embedded_server_refuses_a_public_address_without_tls(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="TLS"):
        LocalRuntimeServer(data_dir=tmp_path, tokens=["x-token-123"], host=host)


def serve_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runtime_job.cli", "serve", "--data-dir", str(data_dir), *args]


def run_serve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": python_path()}
    return subprocess.run(
        serve_command(data_dir, "--token", "bind-token-123", *args),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "d", ["bind-token-123"], workers=1).start()
    try:
        assert listening(serve.port) == {LOOPBACK_V4}
    finally:
        serve.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_refuses_a_public_address_without_tls_or_the_flag(tmp_path: Path, host: str) -> None:
    port = free_port()
    result = run_serve(tmp_path / "d", "--host", host, "--port", str(port))
    assert result.returncode == 2
    assert "TLS" in result.stderr and "insecure" in result.stderr.lower()
    assert result.stdout == ""
    assert listening(port) == set()
    half = run_serve(tmp_path / "d", "--host", host, "--tls-cert", "cert.pem")
    assert half.returncode == 2


@pytest.mark.parametrize("flag", ["--insecure-bind", "tls"])
def test_serve_binds_a_public_address_when_told(tmp_path: Path, flag: str) -> None:
    extra = ["--host", "0.0.0.0"]
    if flag == "tls":
        cert, key = make_cert(str(tmp_path))
        extra += ["--tls-cert", cert, "--tls-key", key]
    else:
        extra.append(flag)
    serve = ServeProcess(tmp_path / "d", ["bind-token-123"], workers=1, extra=extra).start()
    try:
        assert listening(serve.port) == {ANY_V4}
        scheme = "https" if flag == "tls" else "http"
        verify: Any = cert if flag == "tls" else True
        response = requests.get(
            f"{scheme}://127.0.0.1:{serve.port}/api/version", timeout=10, verify=verify
        )
        assert response.status_code == 200
    finally:
        serve.stop()
    assert wait_until(lambda: listening(serve.port) == set(), timeout=5)


def test_redaction_patterns_cover_headers_in_free_text() -> None:
    from runtime_job._redact import redact

    secret = "abcd-SECRET-efgh"
    for text in (
        f"X-Access-Token: {secret}",
        f"'Authorization': 'Bearer {secret}'",
        f"Authorization: apikey {secret}",
        f'{{"apiToken": "{secret}"}}',
        f"https://host/path?access_token={secret}&x=1",
    ):
        assert secret not in redact(text), text
    assert re.search("redacted", redact(f"token={secret}"))
