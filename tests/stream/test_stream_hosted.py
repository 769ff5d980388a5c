"""A thread serving the hub while it waits delivers its callback stream's final frame itself."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHandle, StreamHub
from runtime_job.api.stream import reactor as reactor_mod
from runtime_job.api.stream.connection import StreamConnection
from tests.support import wait_until

from .streamkit import Recorder, WsServer
from .test_stream_inline import InlineRecorder


class ThreadRecorder(Recorder):
    """Records which thread each call ran on, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def on_frame(self, frame: StreamFrame) -> None:
        self.calls.append((frame.payload, threading.current_thread().name))
        super().on_frame(frame)

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.calls.append(("<end>", threading.current_thread().name))
        super().on_end(end, error)


def _subscribe_after_interims(
    server: WsServer, params: ClientParameters, hub: StreamHub, job_id: str
) -> tuple[StreamHandle, ThreadRecorder]:
    server.add_job(job_id, messages=["a", "b"])
    rec = ThreadRecorder()
    sub = hub.subscribe(job_id=job_id, url=server.url(job_id), params=params, listener=rec)
    wait_until(lambda: len(rec.frames) == 2, what="the two interim results")
    assert rec.payloads == ["a", "b"]
    return sub, rec


def _got_final(rec: Recorder) -> Callable[[], bool]:
    """An ``until`` that holds once the final frame (payload ``R``) was delivered."""
    return lambda: "R" in rec.payloads


def _finish_on_first_call(server: WsServer, job_id: str, rec: Recorder) -> Callable[[], bool]:
    """An ``until`` that makes the server finish the job once the thread is serving."""
    started: list[bool] = []

    def until() -> bool:
        if not started:
            started.append(True)
            server.finish(job_id, result="R")
        return "R" in rec.payloads  # the final frame was delivered

    return until


def test_the_serving_thread_delivers_the_final_frame_itself_and_returns_before_the_end(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    """Interim frames go to dispatchers; the final one runs on the waiting thread, which then
    returns; the stream's end follows on a dispatcher (after the reactor thread records it)."""
    sub, rec = _subscribe_after_interims(server, params, hub, "host1")
    me = threading.current_thread().name

    assert sub.wait(_finish_on_first_call(server, "host1", rec), 10)

    assert rec.payloads == ["a", "b", "R"]
    assert rec.calls[2] == ("R", me)
    rec.wait()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert len(rec.calls) == 4
    assert all(t.startswith("runtime-job-stream-dispatch-") for _, t in rec.calls[:2])
    end, end_thread = rec.calls[3]
    assert end == "<end>" and end_thread.startswith("runtime-job-stream-dispatch-")


def test_a_final_frame_read_by_the_reactor_thread_still_goes_to_a_dispatcher(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    """Only a thread that waits for this stream takes its delivery; no waiter, no change."""
    sub, rec = _subscribe_after_interims(server, params, hub, "host2")
    server.finish("host2", result="R")
    rec.wait()
    assert rec.payloads == ["a", "b", "R"]
    assert all(t.startswith("runtime-job-stream-dispatch-") for _, t in rec.calls)
    assert not sub.active


def test_an_interrupted_serving_thread_hands_the_delivery_to_a_dispatcher(
    server: WsServer,
    params: ClientParameters,
    hub: StreamHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A waiter interrupted after taking the final frame runs no callback and loses nothing."""
    sub, rec = _subscribe_after_interims(server, params, hub, "host3")
    lead = reactor_mod.Reactor.lead

    def interrupted(self: reactor_mod.Reactor, until: Callable[[], bool], timeout: float) -> bool:
        assert lead(self, until, timeout)
        raise KeyboardInterrupt

    monkeypatch.setattr(reactor_mod.Reactor, "lead", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sub.wait(_finish_on_first_call(server, "host3", rec), 10)

    rec.wait()
    assert rec.payloads == ["a", "b", "R"]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert all(t.startswith("runtime-job-stream-dispatch-") for _, t in rec.calls)


def test_every_message_is_delivered_once_whoever_reads_the_final_frame(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    """Rounds where the final frame comes before and while the thread serves: exactly once."""
    for round_ in range(20):
        job_id = f"host-race{round_}"
        sub, rec = _subscribe_after_interims(server, params, hub, job_id)
        if round_ % 2:
            server.finish(job_id, result="R")
            until: Callable[[], bool] = _got_final(rec)
        else:
            until = _finish_on_first_call(server, job_id, rec)
        while "R" not in rec.payloads:
            sub.wait(until, 10)
        rec.wait()
        assert rec.payloads == ["a", "b", "R"], round_
        assert [c[0] for c in rec.calls] == ["a", "b", "R", "<end>"], round_
        assert rec.max_concurrent == 1


def test_the_close_read_with_the_final_frame_is_answered_after_the_waiting_thread_leaves(
    server: WsServer, params: ClientParameters, hub: StreamHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's close, read in one piece with the final frame, is answered (a close frame,
    a socket to close) by the reactor thread once the waiting thread has what it waited for."""
    closes: list[str] = []
    original = StreamConnection.close

    def recording(self: StreamConnection, code: int) -> None:
        closes.append(threading.current_thread().name)
        original(self, code)

    monkeypatch.setattr(StreamConnection, "close", recording)
    job = server.add_job("close1", close_with_final=True)
    rec = InlineRecorder()  # no callback, as the stream of result() has
    sub = hub.subscribe(job_id="close1", url=server.url("close1"), params=params, listener=rec)

    assert sub.wait(_finish_on_first_call(server, "close1", rec), 10)
    assert rec.payloads == ["R"]
    rec.wait()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert closes == ["runtime-job-stream-io"]
    wait_until(lambda: job.client_close_codes, what="the client's close frame")
    assert job.client_close_codes == [1000]
