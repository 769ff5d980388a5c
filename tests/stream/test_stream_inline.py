"""Inline listeners run on the reactor; callback listeners find their threads already warm."""

from __future__ import annotations

import socket
import time

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub
from tests.support import wait_until

from .streamkit import Recorder, WsServer, hub_quiet, hub_threads


class InlineRecorder(Recorder):
    """A recorder that asks to be called on the hub's reader thread."""

    inline = True

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def on_frame(self, frame: StreamFrame) -> None:
        self.events.append(f"frame:{frame.payload}")
        super().on_frame(frame)

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.events.append("end")
        super().on_end(end, error)


def _dispatchers() -> list[str]:
    return [name for name in hub_threads() if "-dispatch-" in name]


def test_inline_listener_is_called_on_the_reactor_and_no_dispatcher_starts(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("inl", messages=["a", "b"], final=True, result="R")
    rec = InlineRecorder()
    hub.subscribe(job_id="inl", url=server.url("inl"), params=params, listener=rec)
    rec.wait()
    assert rec.payloads == ["a", "b", "R"]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert rec.threads == {"runtime-job-stream-io"}
    assert _dispatchers() == []


def test_inline_listener_gets_its_end_once_and_last_when_cancelled_mid_stream(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    recorders: list[InlineRecorder] = []
    for round_ in range(20):
        job_id = f"race{round_}"
        server.add_job(job_id)
        rec = InlineRecorder()
        recorders.append(rec)
        sub = hub.subscribe(job_id=job_id, url=server.url(job_id), params=params, listener=rec)
        server.publish(job_id, *(f"m{i}" for i in range(2000)))
        wait_until(lambda rec=rec, n=5 * round_: len(rec.frames) >= n, what=f"{5 * round_} frames")
        sub.cancel()  # while the reactor is still delivering frames
        rec.wait()
        assert rec.ends == [(StreamEnd.CANCELLED, None)]
        assert rec.events.count("end") == 1 and rec.events[-1] == "end"
        assert rec.payloads == [f"m{i}" for i in range(len(rec.payloads))]
        assert rec.max_concurrent <= 1
    hub_quiet()  # every hub thread has exited: nothing more can be delivered
    assert [rec.events[-1] for rec in recorders] == ["end"] * 20  # nothing after the end


def test_callback_listener_has_a_dispatcher_waiting_while_its_stream_is_open(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("warm")
    rec = Recorder()
    hub.subscribe(job_id="warm", url=server.url("warm"), params=params, listener=rec)
    assert len(_dispatchers()) == 1  # started by subscribe, before any frame
    time.sleep(hub.idle_shutdown * 3)  # deliberate: outlast the idle timeout of the threads
    assert len(_dispatchers()) == 1  # kept past the idle timeout: the stream is open
    server.publish("warm", "x")
    server.finish("warm", result="R")
    rec.wait()
    assert rec.payloads == ["x", "R"]
    wait_until(lambda: not _dispatchers(), what="the dispatcher to be released")


def test_reconnecting_says_when_attempts_fail_and_not_while_data_flows(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("fine", messages=["a"])
    rec = Recorder()
    fine = hub.subscribe(job_id="fine", url=server.url("fine"), params=params, listener=rec)
    wait_until(lambda: rec.frames, what="the first frame")
    assert rec.payloads == ["a"] and not fine.reconnecting

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: every attempt is refused
    lost = hub.subscribe(
        job_id="lost",
        url=f"ws://127.0.0.1:{port}/stream/jobs/lost",
        params=params,
        listener=Recorder(),
    )
    wait_until(lambda: lost.reconnecting, what="the refused stream to say it reconnects")
    assert lost.reconnecting and lost.active
    lost.cancel()
    fine.cancel()
    assert not lost.reconnecting
