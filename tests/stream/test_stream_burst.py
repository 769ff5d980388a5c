"""A burst of jobs with callbacks against a server that does not replay loses nothing.

``run(..., callback=...)`` calls ``RuntimeClient.prepare_streams`` before it submits, and
the job's stream is opened right after: that open completes its handshake before it
returns, so the server has the subscriber before the job publishes. The scripted server
here replays nothing a connection missed (the hosted service's behaviour), and each job
publishes the moment ``open_stream`` returns.
"""

from __future__ import annotations

from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd
from runtime_job.api.stream import StreamHub

from .streamkit import Recorder, WsServer

JOBS = 48
INTERIM = 5


def _client(server: WsServer, hub: StreamHub) -> RuntimeClient:
    http = server.base_url.replace("ws://", "http://", 1)
    return RuntimeClient(ClientParameters(channel="local", token=server.token, url=http), hub=hub)


def test_a_burst_of_48_jobs_loses_no_interim_result(server: WsServer, hub: StreamHub) -> None:
    recorders: list[Recorder] = []
    with _client(server, hub) as client:
        for i in range(JOBS):
            job_id = f"burst{i}"
            server.add_job(job_id, plain_only=True, no_replay=True)
            client.prepare_streams()  # what run() does before it submits
            rec = Recorder()
            client.open_stream(job_id, rec)  # what run() does once the job is accepted
            server.publish(job_id, *(f"{job_id}-{n}" for n in range(INTERIM)))
            recorders.append(rec)
        for i in range(JOBS):
            server.finish(f"burst{i}", result="R")
        for rec in recorders:
            rec.wait(20)
    lost = sum(INTERIM - len([p for p in rec.payloads if p != "R"]) for rec in recorders)
    assert lost == 0
    for i, rec in enumerate(recorders):
        assert rec.payloads == [*(f"burst{i}-{n}" for n in range(INTERIM)), "R"]
        assert rec.ends == [(StreamEnd.COMPLETED, None)]


def test_only_the_stream_opened_next_by_the_same_thread_connects_at_once(
    server: WsServer, hub: StreamHub
) -> None:
    """Without prepare_streams, open_stream returns at once (the handshake runs elsewhere)."""
    server.add_job("later", plain_only=True, no_replay=True, handshake_delay=0.3)
    server.add_job("now", plain_only=True, no_replay=True, handshake_delay=0.3)
    server.add_job("after", plain_only=True, no_replay=True, handshake_delay=0.3)
    with _client(server, hub) as client:
        rec = Recorder()
        client.open_stream("later", rec)
        assert server.jobs["later"].connections_open == 0
        client.prepare_streams()
        client.open_stream("now", Recorder())
        assert server.jobs["now"].connections_open == 1
        client.open_stream("after", Recorder())  # the flag was used up: returns at once
        assert server.jobs["after"].connections_open == 0


# -- the sequenced extension only for a server that offers it (issue 19 D) ---------------


class _Answer:
    """What HttpSession learns from: a REST answer's headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def test_a_server_that_never_offered_the_extension_gets_the_reference_url(
    server: WsServer, hub: StreamHub
) -> None:
    server.add_job("plain", messages=["a"], final=True, result="R")
    with _client(server, hub) as client:
        rec = Recorder()
        client.open_stream("plain", rec)
        rec.wait(10)
    attempt = server.jobs["plain"].attempts[0]
    assert (attempt.path, attempt.query) == ("/stream/jobs/plain", {})
    assert rec.payloads == ["a", "R"]


def test_a_server_that_offered_the_extension_gets_the_sequenced_url(
    server: WsServer, hub: StreamHub
) -> None:
    server.add_job("seq", messages=["a"], final=True, result="R")
    with _client(server, hub) as client:
        base = client._session.base_url
        client._session._learn(f"{base}/jobs", _Answer({"X-Idempotency-Supported": "true"}))  # type: ignore[arg-type]
        rec = Recorder()
        client.open_stream("seq", rec)
        rec.wait(10)
    attempt = server.jobs["seq"].attempts[0]
    assert attempt.query == {"seq": "1", "after": "0"}
    assert rec.frames[-1].final and rec.frames[-1].seq == 2


def test_connect_now_returns_after_a_refused_handshake_and_retries_in_the_background(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("refused-once", messages=["a"], final=True, result="R", handshake=[503])
    rec = Recorder()
    sub = hub.subscribe(
        job_id="refused-once",
        url=server.url("refused-once"),
        params=params,
        listener=rec,
        connect_now=True,
    )
    # The first attempt ran on this thread (the retry may already have followed).
    assert [a.status for a in job.attempts][:1] == [503]
    assert sub.wait(10.0)  # until on_end has returned, so every frame was delivered
    assert rec.payloads == ["a", "R"]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert [a.status for a in job.attempts] == [503, 101]


def test_sequenced_false_sends_the_url_exactly_as_given(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("exact", messages=["a"], final=True, result="R")
    rec = Recorder()
    url = server.url("exact") + "?x=1"
    hub.subscribe(job_id="exact", url=url, params=params, listener=rec, sequenced=False)
    rec.wait(10)
    assert job.attempts[0].query == {"x": "1"}
    assert rec.payloads == ["a", "R"]
    assert all(frame.seq is None for frame in rec.frames)
