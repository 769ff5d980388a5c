"""Failures: reconnect budget, refused handshakes, keepalive, protocol errors, listeners."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub
from runtime_job.exceptions import (
    WebsocketAuthenticationError,
    WebsocketError,
    WebsocketIBMProtocolError,
)

from .streamkit import Recorder, WsServer, hub_quiet

LOGGER = "runtime_job.api.stream"


@pytest.fixture()
def tight_hub() -> Iterator[StreamHub]:
    """A hub that gives up after half a second without a healthy connection."""
    h = StreamHub(
        backoff_initial=0.02,
        backoff_max=0.1,
        reconnect_budget=0.5,
        healthy_after=5.0,
        idle_shutdown=0.2,
    )
    yield h
    h.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("behaviour", ["close_1011_after_ack", "drop_after_ack"])
def test_server_that_always_closes_abnormally_fails_in_bounded_time(
    server: WsServer,
    params: ClientParameters,
    tight_hub: StreamHub,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    job = server.add_job("bad", behaviour=behaviour)
    rec = Recorder()
    start = time.monotonic()
    tight_hub.subscribe(job_id="bad", url=server.url("bad"), params=params, listener=rec)
    rec.wait(5)
    elapsed = time.monotonic() - start
    assert 0.25 < elapsed < 1.5
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED
    assert isinstance(error, WebsocketError)
    assert "Max retries exceeded" in str(error)
    assert len(job.attempts) >= 4
    [warning] = warnings_of(caplog)
    assert "bad" in warning.getMessage()
    assert warning.exc_info is None  # one line, no traceback per attempt
    assert server.token not in caplog.text


def test_refused_connections_fail_in_bounded_time(
    params: ClientParameters, tight_hub: StreamHub, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    start = time.monotonic()
    tight_hub.subscribe(
        job_id="nowhere", url=f"ws://127.0.0.1:{port}/stream/jobs/x", params=params, listener=rec
    )
    rec.wait(5)
    assert time.monotonic() - start < 1.5
    assert rec.ends[0][0] is StreamEnd.FAILED
    assert "ConnectionRefusedError" in str(rec.ends[0][1])
    assert len(warnings_of(caplog)) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_is_not_retried(
    server: WsServer,
    params: ClientParameters,
    hub: StreamHub,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    job = server.add_job("a", always_status=status)
    rec = Recorder()
    hub.subscribe(job_id="a", url=server.url("a"), params=params, listener=rec)
    rec.wait()
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED
    assert isinstance(error, WebsocketAuthenticationError)
    assert str(status) in str(error)
    hub_quiet()
    assert len(job.attempts) == 1
    assert len(warnings_of(caplog)) == 1
    assert server.token not in caplog.text and server.token not in str(error)


def test_wrong_token_is_401_and_never_logged(
    server: WsServer, hub: StreamHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_job("w", messages=["a"])
    params = ClientParameters(channel="local", token="wrong-secret-value")
    rec = Recorder()
    hub.subscribe(job_id="w", url=server.url("w"), params=params, listener=rec)
    rec.wait()
    error = rec.ends[0][1]
    assert isinstance(error, WebsocketAuthenticationError)
    assert "wrong-secret-value" not in caplog.text
    assert "wrong-secret-value" not in str(error) and "wrong-secret-value" not in repr(params)


def test_not_found_is_not_retried(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("nf", always_status=404)
    rec = Recorder()
    hub.subscribe(job_id="nf", url=server.url("nf"), params=params, listener=rec)
    rec.wait()
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED
    assert type(error) is WebsocketError and "404" in str(error)
    hub_quiet()
    assert len(job.attempts) == 1


def test_server_errors_on_handshake_are_retried(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("h", messages=["a"], final=True, handshake=[503, 502])
    rec = Recorder()
    hub.subscribe(job_id="h", url=server.url("h"), params=params, listener=rec)
    rec.wait()
    assert rec.payloads == ["a", ""]
    assert [a.status for a in job.attempts] == [503, 502, 101]


def test_retry_after_is_honoured(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("ra", messages=["a"], final=True, handshake=[429], retry_after=0.4)
    rec = Recorder()
    start = time.monotonic()
    hub.subscribe(job_id="ra", url=server.url("ra"), params=params, listener=rec)
    rec.wait()
    assert time.monotonic() - start >= 0.4  # not the 20 ms backoff
    assert [a.status for a in job.attempts] == [429, 101]


def test_budget_resets_after_progress(
    server: WsServer, params: ClientParameters, tight_hub: StreamHub
) -> None:
    # Each connection delivers 3 new messages then drops: progress, so never FAILED,
    # although the whole stream takes longer than the budget.
    messages = [str(i) for i in range(40)]
    job = server.add_job("prog", messages=messages, final=True, frames_per_connection=3, pace=0.02)
    rec = Recorder()
    tight_hub.subscribe(job_id="prog", url=server.url("prog"), params=params, listener=rec)
    rec.wait(20)
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert rec.payloads == [*messages, ""]
    assert len(job.attempts) >= 13


def test_replaying_server_without_progress_fails(
    server: WsServer, params: ClientParameters, tight_hub: StreamHub
) -> None:
    # The reference reconnected forever when a server replayed old data and dropped the
    # connection (section 8 #24); duplicates are not progress here.
    job = server.add_job("replay", messages=["a", "b"], ignore_after=True, drop_when_idle=True)
    rec = Recorder()
    tight_hub.subscribe(job_id="replay", url=server.url("replay"), params=params, listener=rec)
    rec.wait(5)
    assert rec.payloads == ["a", "b"]
    assert rec.ends[0][0] is StreamEnd.FAILED
    assert len(job.attempts) >= 3


def test_keepalive_timeout_replaces_a_dead_connection(
    server: WsServer, params: ClientParameters
) -> None:
    job = server.add_job("ka", messages=["a"], final=True, behaviours=["no_pong"])
    rec = Recorder()
    with StreamHub(ping_interval=0.2, ping_timeout=0.2, idle_shutdown=0.2) as hub:
        start = time.monotonic()
        hub.subscribe(job_id="ka", url=server.url("ka"), params=params, listener=rec)
        rec.wait()
    assert time.monotonic() - start >= 0.35
    assert rec.payloads == ["a", ""]
    assert len(job.attempts) == 2


def test_missing_acknowledgement_times_out(server: WsServer) -> None:
    job = server.add_job("sil", messages=["a"], final=True, behaviours=["silent"])
    params = ClientParameters(channel="local", token=server.token, read_timeout=0.3)
    rec = Recorder()
    with StreamHub(idle_shutdown=0.2) as hub:
        hub.subscribe(job_id="sil", url=server.url("sil"), params=params, listener=rec)
        rec.wait()
    assert rec.payloads == ["a", ""]
    assert len(job.attempts) == 2


def test_protocol_violation_fails_without_retry(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("pv", behaviour="bad_header")
    rec = Recorder()
    hub.subscribe(job_id="pv", url=server.url("pv"), params=params, listener=rec)
    rec.wait()
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED and isinstance(error, WebsocketIBMProtocolError)
    hub_quiet()
    assert len(job.attempts) == 1


def test_listener_that_raises_is_logged_and_streaming_continues(
    server: WsServer,
    params: ClientParameters,
    hub: StreamHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(frame: StreamFrame) -> None:
        if frame.payload == "b":
            raise ValueError("listener bug")

    server.add_job("lr", messages=["a", "b", "c"], final=True, result="R")
    rec = Recorder(on_frame=boom)
    hub.subscribe(job_id="lr", url=server.url("lr"), params=params, listener=rec)
    rec.wait()
    assert rec.payloads == ["a", "c", "R"]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    [warning] = warnings_of(caplog)
    assert "lr" in warning.getMessage() and warning.exc_info is not None


def test_on_end_that_raises_is_logged(
    server: WsServer, params: ClientParameters, hub: StreamHub, caplog: pytest.LogCaptureFixture
) -> None:
    class Bad(Recorder):
        def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
            super().on_end(end, error)
            raise RuntimeError("end bug")

    server.add_job("le", final=True)
    rec = Bad()
    sub = hub.subscribe(job_id="le", url=server.url("le"), params=params, listener=rec)
    assert sub.wait(5)
    assert len(warnings_of(caplog)) == 1


def test_redirects_are_not_followed(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("rd", always_status=302)
    rec = Recorder()
    hub.subscribe(job_id="rd", url=server.url("rd"), params=params, listener=rec)
    rec.wait()
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED and "redirect" in str(error)
    hub_quiet()
    assert len(job.attempts) == 1
