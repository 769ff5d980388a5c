"""Cancelling: before the socket opens, during the handshake, mid-stream, from a callback."""

from __future__ import annotations

import threading
import time

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub
from tests.support import wait_until

from .streamkit import Job, Recorder, WsServer, hub_quiet


def test_cancel_before_the_socket_opens_is_not_lost(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("c0", messages=["a", "b"], final=True)
    rec = Recorder()
    sub = hub.subscribe(job_id="c0", url=server.url("c0"), params=params, listener=rec)
    sub.cancel()
    assert not sub.active and sub.end is StreamEnd.CANCELLED
    rec.wait()
    hub_quiet()
    assert rec.ends == [(StreamEnd.CANCELLED, None)]
    assert rec.frames == []
    # Either no connection was made, or it was closed at once (the server hears of it
    # on its own thread).
    wait_until(lambda: job.connections_open == 0, what="no open connection")


def test_cancel_during_the_handshake(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job = server.add_job("c1", messages=["a"], handshake_delay=0.3)
    rec = Recorder()
    sub = hub.subscribe(job_id="c1", url=server.url("c1"), params=params, listener=rec)
    wait_until(lambda: job.attempts, what="a connection attempt")
    sub.cancel()
    rec.wait(1)  # on_end does not wait for the handshake
    assert rec.ends == [(StreamEnd.CANCELLED, None)]
    # When the handshake completes, the hub closes the socket with 1000 straight away.
    wait_until(lambda: job.client_close_codes == [1000], what="the client's close 1000")
    assert rec.frames == []


def test_cancel_mid_stream_closes_the_socket_and_ends_once(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    job: Job = server.add_job("c2", messages=["a", "b"])
    rec = Recorder()
    sub = hub.subscribe(job_id="c2", url=server.url("c2"), params=params, listener=rec)
    wait_until(lambda: len(rec.frames) == 2, what="two frames")
    sub.cancel()
    sub.cancel()
    rec.wait()
    wait_until(lambda: job.client_close_codes == [1000], what="the client's close 1000")
    wait_until(lambda: job.connections_open == 0, what="the connection to close")
    server.publish("c2", "late")
    hub_quiet()
    assert rec.payloads == ["a", "b"]
    assert rec.ends == [(StreamEnd.CANCELLED, None)]
    assert len(job.attempts) == 1


def test_cancel_from_inside_a_callback(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("c3", messages=[str(i) for i in range(100)])
    holder: list[object] = []

    def on_frame(frame: StreamFrame) -> None:
        if frame.payload == "3":
            holder[0].cancel()  # type: ignore[attr-defined]

    rec = Recorder(on_frame=on_frame)
    holder.append(hub.subscribe(job_id="c3", url=server.url("c3"), params=params, listener=rec))
    rec.wait()
    assert rec.payloads == ["0", "1", "2", "3"]
    assert rec.ends == [(StreamEnd.CANCELLED, None)]


def test_cancel_after_the_end_changes_nothing(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("c4", messages=["a"], final=True)
    rec = Recorder()
    sub = hub.subscribe(job_id="c4", url=server.url("c4"), params=params, listener=rec)
    rec.wait()
    sub.cancel()
    hub_quiet()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]


def test_close_ends_every_stream_and_stops_every_thread(
    server: WsServer, params: ClientParameters
) -> None:
    hub = StreamHub(idle_shutdown=5.0)
    recs = []
    for i in range(10):
        server.add_job(f"k{i}", messages=["a"])
        rec = Recorder()
        hub.subscribe(job_id=f"k{i}", url=server.url(f"k{i}"), params=params, listener=rec)
        recs.append(rec)
    wait_until(lambda: all(r.frames for r in recs), what="a frame on every stream")
    start = time.monotonic()
    hub.close()
    assert time.monotonic() - start < 1.0
    assert all(r.ends == [(StreamEnd.CANCELLED, None)] for r in recs)
    assert not [t for t in threading.enumerate() if t.name.startswith("runtime-job-stream-")]
    wait_until(
        lambda: all(server.jobs[f"k{i}"].client_close_codes == [1000] for i in range(10)),
        what="a close 1000 on every stream",
    )
    hub.close()  # twice is fine
