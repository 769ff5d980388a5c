"""A silently dead connection is found within the documented bound, and the stream resumes.

The scripted server sends 8 frames and half of the 9th, then goes silent: no byte, no pong,
no FIN or RST (what a NAT that dropped its entry looks like). The hub must give the
connection up within ``ping_interval`` of the last byte (a pong could not overtake the rest
of a frame), reconnect, and resume after the last delivered message, so the listener gets
every message exactly once.
"""

from __future__ import annotations

import threading
import time

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import (
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    StreamHub,
)

from .streamkit import Recorder, WsServer

MESSAGES = [f"m{i}" for i in range(1, 21)]


class TimedRecorder(Recorder):
    """Records when each frame arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_frame(self, frame: StreamFrame) -> None:
        self.times.append(time.monotonic())
        super().on_frame(frame)


def test_the_documented_bounds_are_a_few_seconds() -> None:
    # docs/streaming.md: silent mid-frame -> gone within ping_interval of the last byte;
    # silent between frames -> within ping_interval + ping_timeout.
    assert (DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT) == (5.0, 3.0)


def _stalled_job(server: WsServer, job_id: str) -> None:
    server.add_job(
        job_id,
        messages=list(MESSAGES),
        final=True,
        result="R",
        frames_per_connection=8,
        stall_mid_frame=True,
    )


def test_a_connection_silent_in_the_middle_of_a_frame_is_replaced_and_resumed(
    server: WsServer, params: ClientParameters
) -> None:
    _stalled_job(server, "stall")
    # A long ping_timeout: only giving up a stalled frame at once meets the bound below.
    with StreamHub(ping_interval=0.5, ping_timeout=5.0, idle_shutdown=0.3) as hub:
        rec = TimedRecorder()
        hub.subscribe(job_id="stall", url=server.url("stall"), params=params, listener=rec)
        rec.wait(10)
    job = server.jobs["stall"]
    assert job.stalls == 1
    assert rec.payloads == [*MESSAGES, "R"]  # every message once, in order
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert [a.query.get("after") for a in job.attempts] == ["0", "8"]
    gap = rec.times[8] - rec.times[7]
    assert 0.4 <= gap < 2.0, gap  # ping_interval after the last byte, plus a reconnect


def test_a_connection_silent_between_frames_is_replaced_after_an_unanswered_ping(
    server: WsServer, params: ClientParameters
) -> None:
    job = server.add_job("idle", messages=["a"], final=False, behaviours=["no_pong"])
    with StreamHub(ping_interval=0.3, ping_timeout=0.3, idle_shutdown=0.3) as hub:
        rec = Recorder()
        started = time.monotonic()
        hub.subscribe(job_id="idle", url=server.url("idle"), params=params, listener=rec)
        deadline = time.monotonic() + 10
        while len(job.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert len(job.attempts) >= 2
        assert 0.5 <= elapsed < 3.0, elapsed  # ping_interval + ping_timeout, then backoff
        server.finish("idle", result="R")
        rec.wait(10)
    assert rec.payloads == ["a", "R"]


def test_a_busy_connection_is_never_pinged(server: WsServer, params: ClientParameters) -> None:
    """The liveness timer counts from the last byte: a stream that delivers needs no ping."""
    job = server.add_job("busy", messages=[], pace=0.0)
    with StreamHub(ping_interval=0.4, ping_timeout=0.3, idle_shutdown=0.3) as hub:
        rec = Recorder()
        hub.subscribe(job_id="busy", url=server.url("busy"), params=params, listener=rec)
        job.ignore_pings = True  # a ping would go unanswered and kill the connection
        stop = threading.Event()

        def publish() -> None:
            i = 0
            while not stop.wait(0.1):
                i += 1
                server.publish("busy", f"p{i}")

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(5)
        assert len(job.attempts) == 1  # never replaced
        server.finish("busy", result="R")
        rec.wait(10)
    assert rec.ends == [(StreamEnd.COMPLETED, None)]


@pytest.mark.slow
def test_with_the_default_settings_a_stalled_stream_resumes_within_the_bound(
    server: WsServer, params: ClientParameters
) -> None:
    _stalled_job(server, "dflt")
    with StreamHub(idle_shutdown=0.3) as hub:
        rec = TimedRecorder()
        hub.subscribe(job_id="dflt", url=server.url("dflt"), params=params, listener=rec)
        rec.wait(DEFAULT_PING_INTERVAL + 10)
    assert rec.payloads == [*MESSAGES, "R"]
    gap = rec.times[8] - rec.times[7]
    assert DEFAULT_PING_INTERVAL - 0.5 <= gap < DEFAULT_PING_INTERVAL + 2.0, gap
