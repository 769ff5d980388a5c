"""The job core on its own: JobState (no I/O) and JobStream (one subscription, many consumers)."""

from __future__ import annotations

import logging
import threading

import pytest

from runtime_job import _job_stream
from runtime_job._job_state import JobState
from runtime_job._job_stream import Holder, JobCore
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.decoders import ResultDecoder
from runtime_job.status import JobStatus
from tests.support.clock import FakeClock

from .fakes import StreamingFakeClient

# ---------------------------------------------------------------------------------- JobState


def test_a_final_status_is_never_overwritten_and_listeners_hear_each_change_once() -> None:
    state = JobState("j")
    heard: list[tuple[JobStatus, int | None]] = []
    state.add_status_listener(lambda status, position: heard.append((status, position)))
    assert state.set_status(JobStatus.QUEUED, queue_position=3)
    assert state.set_status(JobStatus.QUEUED, queue_position=2)  # same status: no news
    assert state.set_status(JobStatus.RUNNING, queue_position=1)  # kept for QUEUED only
    assert state.set_status(JobStatus.DONE)
    assert not state.set_status(JobStatus.RUNNING)
    assert state.status is JobStatus.DONE and state.final
    assert heard == [(JobStatus.QUEUED, 3), (JobStatus.RUNNING, None), (JobStatus.DONE, None)]


def test_state_waits_run_on_the_fake_clock(fake_clock: FakeClock) -> None:
    state = JobState("j")
    start = fake_clock.now
    assert not state.wait(lambda: state.final, 30.0)
    assert fake_clock.now - start == pytest.approx(30.0)


def test_a_final_status_wakes_a_waiter_and_the_wakers(fake_clock: FakeClock) -> None:
    fake_clock.autoadvance = False
    state = JobState("j")
    woken: list[int] = []
    state.add_waker(lambda: woken.append(1))
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(state.wait(lambda: state.final, 60)))
    waiter.start()
    fake_clock.wait_for_waiters()
    state.set_status(JobStatus.CANCELLED)
    waiter.join(10)
    assert got == [True] and woken == [1]


# --------------------------------------------------------------------------------- JobStream


class Recorder:
    """A delivered consumer that records what it gets, and on which thread."""

    delivered = True

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.ends: list[StreamEnd] = []
        self.threads: set[str] = set()

    def on_frame(self, frame: StreamFrame) -> None:
        self.frames.append(frame.payload)
        self.threads.add(threading.current_thread().name)

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.ends.append(end)


def make_core(client: StreamingFakeClient, job_id: str = "j") -> JobCore:
    client.add_job(job_id, statuses=["RUNNING"])
    return JobCore(job_id, client, ResultDecoder, ResultDecoder)


def test_consumers_share_one_subscription_and_the_last_one_out_cancels_it() -> None:
    client = StreamingFakeClient()
    core = make_core(client)
    first, second, waiter = Recorder(), Recorder(), Holder()
    assert core.stream.attach(first, replay=True)
    assert core.stream.attach(second, replay=True)
    assert core.stream.attach(waiter, replay=False)
    assert client.count("open_stream") == 1
    sub = client.subscriptions[0]
    for detached in (first, waiter):
        core.stream.detach(detached)
        assert not sub.cancelled
    core.stream.detach(second)
    assert sub.cancelled
    assert core.stream.attach(first, replay=True)  # a new consumer: a new subscription
    assert client.count("open_stream") == 2


def test_frames_reach_delivered_consumers_in_order_on_delivery_threads() -> None:
    client = StreamingFakeClient()
    core = make_core(client)
    early = Recorder()
    core.stream.attach(early, replay=True)
    sub = client.subscriptions[0]
    for i in range(100):
        sub.push(str(i), seq=i + 1)
    late = Recorder()
    core.stream.attach(late, replay=True)  # replayed from the subscription's start
    sub.push('"r"', seq=101, final=True, status="COMPLETED")
    sub.end()
    assert core.stream.wait_delivered(10)
    expected = [str(i) for i in range(100)] + ['"r"']
    assert early.frames == expected and late.frames == expected
    assert early.ends == [StreamEnd.COMPLETED] and late.ends == [StreamEnd.COMPLETED]
    names = early.threads | late.threads
    assert names and all(n.startswith(_job_stream.DELIVERY_THREAD_PREFIX) for n in names)
    # The final frame went into the state before any consumer ran.
    assert core.state.status is JobStatus.DONE and core.state.final_payload == '"r"'


def test_a_history_past_its_bound_is_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_job_stream, "_HISTORY_MAX_CHARS", 10)
    client = StreamingFakeClient()
    core = make_core(client)
    core.stream.attach(Holder(), replay=False)
    sub = client.subscriptions[0]
    sub.push("123456", seq=1)
    sub.push("123456", seq=2)  # 12 characters: past the bound
    sub.push("7", seq=3)
    late = Recorder()
    with caplog.at_level(logging.WARNING, logger="runtime_job.job"):
        core.stream.attach(late, replay=True)
    sub.push("8", seq=4)
    assert core.stream.wait_delivered(10)
    assert late.frames == ["8"]
    assert any("not replayed" in r.getMessage() for r in caplog.records)


def test_a_failed_subscription_is_not_reopened_by_waiters() -> None:
    client = StreamingFakeClient()
    core = make_core(client)
    core.stream.attach(Holder(), replay=False)
    client.subscriptions[0].end(StreamEnd.FAILED, RuntimeError("gone"))
    assert core.stream.failed
    assert not core.stream.attach(Holder(), replay=False, reopen=False)
    assert client.count("open_stream") == 1
    assert core.stream.attach(Recorder(), replay=True)  # a callback asks for it anyway
    assert client.count("open_stream") == 2


def test_a_consumer_detached_meanwhile_gets_nothing_more() -> None:
    client = StreamingFakeClient()
    core = make_core(client)
    release, entered = threading.Event(), threading.Event()
    got: list[str] = []

    class Slow:
        delivered = True

        def on_frame(self, frame: StreamFrame) -> None:
            entered.set()
            release.wait(10)
            got.append(frame.payload)

        def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
            pass

    slow = Slow()
    core.stream.attach(slow, replay=True)
    core.stream.attach(Holder(), replay=False)  # keeps the subscription open
    sub = client.subscriptions[0]
    sub.push("1", seq=1)
    sub.push("2", seq=2)
    assert entered.wait(10)  # the first message is being delivered, the second waits
    core.stream.detach(slow)
    release.set()
    assert core.stream.wait_delivered(10)
    assert got == ["1"]


def test_an_older_status_answer_never_undoes_a_newer_one() -> None:
    """Two threads ask at once (a waiter and the watcher); the first request is answered
    last, with what the job was when it was asked: the newer RUNNING stays."""
    client = StreamingFakeClient()
    client.add_job("j", statuses=["QUEUED", "RUNNING"])
    core = JobCore("j", client, ResultDecoder, ResultDecoder)
    asked = threading.Event()
    release = threading.Event()
    real_fetch = client.fetch_job
    answers = iter(["QUEUED", "RUNNING"])

    def fetch_job(job_id: str, **kwargs: object) -> object:
        status = next(answers)
        client.jobs[job_id].statuses = [status]
        response = real_fetch(job_id, **kwargs)  # type: ignore[arg-type]
        if status == "QUEUED":  # the first request: held until the second is recorded
            asked.set()
            assert release.wait(10), "the test never released the first answer"
        return response

    client.fetch_job = fetch_job  # type: ignore[method-assign]
    first = threading.Thread(target=core.refresh_status, name="first-poll")
    first.start()
    assert asked.wait(10)
    core.refresh_status()  # the second request, answered at once
    assert core.state.status is JobStatus.RUNNING
    release.set()
    first.join(10)
    assert not first.is_alive()
    assert core.state.status is JobStatus.RUNNING
