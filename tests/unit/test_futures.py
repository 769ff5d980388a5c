"""Futures, done callbacks and status callbacks against scripted fakes (no network)."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import futures as futures_module
from runtime_job.api.protocol import StreamEnd
from runtime_job.exceptions import (
    RequestsApiError,
    ResultDecodingError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    WebsocketError,
)
from runtime_job.futures import Watcher, default_watcher
from runtime_job.job import RuntimeJob
from runtime_job.status import JobStatus
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

from .fakes import FakeRuntimeClient, StreamingFakeClient, params

WAIT = 10.0


def make_job(client: FakeRuntimeClient, job_id: str | None = None, **kwargs: Any) -> RuntimeJob:
    fake = client.jobs[job_id] if job_id in client.jobs else client.add_job(job_id, **kwargs)
    return RuntimeJob(
        backend=None,
        api_client=client,
        client_params=params(),
        job_id=fake.job_id,
        program_id=fake.program_id,
        service=None,
    )


def callbacks_drained() -> None:
    """Wait until every callback queued so far on the watcher's callback thread has run.

    Callbacks run one at a time, in order: a marker queued now runs after all of them.
    """
    marker = threading.Event()
    default_watcher().call_soon(marker.set)
    assert marker.wait(WAIT), "the callback thread did not drain"


def settled(fake_clock: FakeClock) -> None:
    """Wait until the watcher's scheduler is parked on the (manual) fake clock again."""
    wait_until(lambda: any(t > fake_clock.now for t in fake_clock.pending))


def watcher_threads() -> list[str]:
    prefixes = (futures_module.WATCH_THREAD_NAME, futures_module.CALLBACK_THREAD_PREFIX)
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def on_callback_thread(name: str) -> bool:
    """Whether ``name`` is the watcher's callback thread (numbered anew after idling)."""
    return (
        re.fullmatch(re.escape(futures_module.CALLBACK_THREAD_PREFIX) + r"-\d+", name) is not None
    )


class Recorder:
    """A thread-safe recorder of status callback calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, JobStatus, int | None]] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, job_id: str, status: JobStatus, queue_position: int | None) -> None:
        with self.lock:
            self.calls.append((job_id, status, queue_position))
            self.threads.append(threading.current_thread().name)

    def statuses(self) -> list[JobStatus]:
        with self.lock:
            return [status for _, status, _ in self.calls]


class QueueingClient(FakeRuntimeClient):
    """A fake whose queued jobs report ``state.queue_position`` (as our server does)."""

    def __init__(self, positions: list[int]) -> None:
        super().__init__()
        self.positions = positions

    def job_get(self, job_id: str, exclude_params: bool | None = None) -> dict[str, Any]:
        step = self.jobs[job_id].step
        body = super().job_get(job_id, exclude_params)
        if body["state"]["status"] == "QUEUED":
            body["state"]["queue_position"] = self.positions[min(step, len(self.positions) - 1)]
        return body


@pytest.fixture(autouse=True)
def _nothing_left_watched() -> Iterator[None]:
    yield
    wait_until(lambda: default_watcher().watched_count == 0)


# ------------------------------------------------------------------------- the four outcomes


def test_future_resolves_with_the_decoded_result() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, result='{"a": [1, 2]}')
    future = job.to_future()
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=WAIT) == {"a": [1, 2]}
    assert job.status() is JobStatus.DONE
    assert job.result() == {"a": [1, 2]}  # cached by the watcher's result() call
    assert client.count("job_results") == 1


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        ("FAILED", None, RuntimeJobFailureError),
        ("CANCELLED", None, RuntimeInvalidStateError),
        ("CANCELLED", "RAN TOO LONG", RuntimeJobMaxTimeoutError),
    ],
)
def test_future_raises_what_result_raises(status: str, reason: str | None, error: type) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", status], reason=reason, result="Traceback: boom")
    future = job.to_future()
    with pytest.raises(error) as caught:
        future.result(timeout=WAIT)
    with pytest.raises(error) as again:
        job.result()
    assert str(caught.value) == str(again.value)


def test_future_carries_an_undecodable_result() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"], result='{"broken":')
    with pytest.raises(ResultDecodingError, match=job.job_id()):
        job.to_future().result(timeout=WAIT)


def test_future_times_out_as_a_future_does_and_the_job_goes_on() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])
    future = job.to_future()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.05)
    assert future.cancel()
    assert client.count("job_cancel") == 0
    assert job.status() is JobStatus.RUNNING


def test_cached_result_gives_a_resolved_future_without_the_watcher() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    assert job.result() == "foo"
    calls = len(client.calls)
    future = job.to_future()
    assert future.done() and future.result() == "foo"
    assert len(client.calls) == calls


def test_each_call_gives_a_new_future_and_cancelling_one_leaves_the_others() -> None:
    client = FakeRuntimeClient()
    fake = client.add_job("slow", statuses=["RUNNING"])
    job = make_job(client, "slow")
    first, second = job.to_future(), job.to_future()
    assert first is not second
    assert first.cancel()
    assert second.running() is False and not second.done()
    fake.statuses = ["COMPLETED"]
    assert second.result(timeout=WAIT) == "foo"
    assert first.cancelled()


def test_cancelling_every_future_stops_watching_the_job() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    assert default_watcher().watched_count == 1
    future.cancel()
    assert default_watcher().watched_count == 0
    assert client.subscriptions[0].cancelled
    assert client.count("job_cancel") == 0


# -------------------------------------------------------------------------------- streams


def test_final_frame_resolves_the_future_without_any_request() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    subscription = client.subscriptions[0]
    subscription.push('{"interim": 1}', seq=1)
    subscription.push('{"final": true}', seq=2, final=True, status="COMPLETED")
    subscription.end()
    assert future.result(timeout=WAIT) == {"final": True}
    assert job.status() is JobStatus.DONE
    assert client.count("job_get") == 0 and client.count("job_results") == 0


def test_failed_final_frame_asks_the_status_and_raises_the_failure() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["FAILED"], result="Traceback (most recent call last): x")
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    client.subscriptions[0].push("", seq=1, final=True, status="FAILED")
    with pytest.raises(RuntimeJobFailureError, match="Traceback"):
        future.result(timeout=WAIT)


def test_a_failed_stream_falls_back_to_polling() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING", "RUNNING", "COMPLETED"])
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    assert not future.done()
    client.subscriptions[0].end(StreamEnd.FAILED, WebsocketError("gone"))
    assert future.result(timeout=WAIT) == "foo"
    assert client.count("job_get") >= 3


def test_a_plain_stream_that_closes_means_ask_the_status_now() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["COMPLETED"])
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    client.subscriptions[0].push('"interim"')  # plain protocol: no seq, never final
    client.subscriptions[0].end(StreamEnd.COMPLETED)
    assert future.result(timeout=WAIT) == "foo"


def test_the_job_learning_it_ended_elsewhere_resolves_the_future() -> None:
    client = StreamingFakeClient()
    fake = client.add_job("elsewhere", statuses=["RUNNING"])
    job = make_job(client, "elsewhere")
    future = job.to_future()
    wait_until(lambda: len(client.subscriptions) == 1)
    fake.statuses, fake.step = ["COMPLETED"], 0
    assert job.status() is JobStatus.DONE  # the user's thread sees it first
    assert future.result(timeout=WAIT) == "foo"


# ----------------------------------------------------------------------- many jobs, threads


def test_as_completed_over_many_jobs_with_bounded_threads() -> None:
    client = FakeRuntimeClient()
    jobs = [
        make_job(client, statuses=["QUEUED"] * (i % 4) + ["COMPLETED"], result=str(i))
        for i in range(300)
    ]
    futures = {job.to_future(): index for index, job in enumerate(jobs)}
    peak = 0
    seen = set()
    for future in concurrent.futures.as_completed(futures, timeout=30):
        assert future.result() == futures[future]
        seen.add(futures[future])
        peak = max(peak, len(watcher_threads()))
    assert seen == set(range(300))
    # One scheduler, at most four network threads, one callback thread: not one per job.
    assert 1 <= peak <= 1 + futures_module.DEFAULT_IO_THREADS + 1


def test_watcher_threads_exit_when_idle() -> None:
    watcher = Watcher(idle_shutdown=0.1)
    try:
        client = FakeRuntimeClient()
        jobs = [make_job(client, statuses=["RUNNING", "COMPLETED"]) for _ in range(5)]
        results = [watcher.future(job) for job in jobs]
        assert [f.result(timeout=WAIT) for f in results] == ["foo"] * 5
        assert watcher.watched_count == 0
        wait_until(lambda: not watcher.running, timeout=3)
        wait_until(lambda: watcher._io.thread_count == 0, timeout=3)
        # It comes back on demand.
        again = make_job(client, statuses=["COMPLETED"])
        assert watcher.future(again).result(timeout=WAIT) == "foo"
    finally:
        watcher.close()
    assert not watcher.running


def test_close_stops_the_threads_and_the_streams() -> None:
    watcher = Watcher()
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])
    future = watcher.future(job)
    wait_until(lambda: len(client.subscriptions) == 1)
    watcher.close()
    assert not watcher.running and watcher.watched_count == 0
    assert client.subscriptions[0].cancelled
    assert not future.done()


def test_settings_must_be_positive() -> None:
    with pytest.raises(ValueError, match="io_threads"):
        Watcher(io_threads=0)
    with pytest.raises(ValueError, match="idle_shutdown"):
        Watcher(idle_shutdown=-1)


# ------------------------------------------------------------------------------ poll errors


class FlakyClient(FakeRuntimeClient):
    """``job_get`` fails with ``errors`` first, then behaves."""

    def __init__(self, errors: list[RequestsApiError]) -> None:
        super().__init__()
        self.errors = errors

    def job_get(self, job_id: str, exclude_params: bool | None = None) -> dict[str, Any]:
        if self.errors:
            raise self.errors.pop(0)
        return super().job_get(job_id, exclude_params)


def test_transient_poll_errors_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    errors = [RequestsApiError("503 Service Unavailable", 503) for _ in range(3)]
    client = FlakyClient(errors)
    job = make_job(client, statuses=["COMPLETED"])
    with caplog.at_level(logging.WARNING, logger="runtime_job.futures"):
        assert job.to_future().result(timeout=WAIT) == "foo"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and job.job_id() in warnings[0].getMessage()


def test_a_permanent_poll_error_fails_the_future(caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient([RequestsApiError("404 Not Found", 404)])
    job = make_job(client, statuses=["COMPLETED"])
    done = threading.Event()
    job.add_done_callback(lambda _job: done.set())
    with caplog.at_level(logging.WARNING, logger="runtime_job.futures"):
        future = job.to_future()
        with pytest.raises(RequestsApiError) as caught:
            future.result(timeout=WAIT)
    assert caught.value.status_code == 404
    assert done.wait(WAIT)


# ---------------------------------------------------------------------------- done callbacks


def test_done_callback_runs_once_on_the_callback_thread() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["QUEUED", "RUNNING", "COMPLETED"])
    calls: list[tuple[RuntimeJob, str, Any]] = []
    done = threading.Event()

    def on_done(finished: RuntimeJob) -> None:
        calls.append((finished, threading.current_thread().name, finished.result()))
        done.set()

    job.add_done_callback(on_done)
    assert done.wait(WAIT)
    callbacks_drained()
    assert len(calls) == 1
    assert calls[0][0] is job and on_callback_thread(calls[0][1]) and calls[0][2] == "foo"


def test_done_callback_on_a_final_job_runs_soon_on_a_library_thread() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    job.result()
    threads: list[str] = []
    done = threading.Event()

    def on_done(_job: RuntimeJob) -> None:
        threads.append(threading.current_thread().name)
        done.set()

    job.add_done_callback(on_done)
    assert done.wait(WAIT)
    assert len(threads) == 1 and on_callback_thread(threads[0])


def test_a_raising_done_callback_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "COMPLETED"])
    done = threading.Event()

    def broken(_job: RuntimeJob) -> None:
        raise ValueError("callback bug")

    with caplog.at_level(logging.WARNING, logger="runtime_job.futures"):
        job.add_done_callback(broken)
        job.add_done_callback(lambda _job: done.set())
        assert done.wait(WAIT)
    records = [r for r in caplog.records if "done callback" in r.getMessage()]
    assert len(records) == 1
    assert job.job_id() in records[0].getMessage() and records[0].exc_info is not None


def test_a_slow_callback_does_not_hold_up_futures() -> None:
    client = FakeRuntimeClient()
    release = threading.Event()
    first = make_job(client, statuses=["COMPLETED"])
    first.add_done_callback(lambda _job: release.wait(WAIT))
    others = [make_job(client, statuses=["RUNNING", "COMPLETED"]) for _ in range(10)]
    try:
        done, _ = concurrent.futures.wait([job.to_future() for job in others], timeout=WAIT)
        assert len(done) == 10
    finally:
        release.set()


# -------------------------------------------------------------------------- status callbacks


def test_status_callbacks_see_each_transition_once_in_order() -> None:
    client = QueueingClient(positions=[3, 2, 1])
    job = make_job(
        client, statuses=["QUEUED", "QUEUED", "QUEUED", "RUNNING", "RUNNING", "COMPLETED"]
    )
    recorder = Recorder()
    job.add_status_callback(recorder)
    job.result(timeout=WAIT)
    wait_until(lambda: len(recorder.calls) == 3)
    callbacks_drained()
    assert recorder.calls == [
        (job.job_id(), JobStatus.QUEUED, 3),
        (job.job_id(), JobStatus.RUNNING, None),
        (job.job_id(), JobStatus.DONE, None),
    ]
    assert len(set(recorder.threads)) == 1 and on_callback_thread(recorder.threads[0])


def test_status_callbacks_come_from_the_watcher_without_anyone_asking() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["QUEUED", "RUNNING", "COMPLETED"])
    recorder = Recorder()
    job.add_status_callback(recorder)
    wait_until(lambda: JobStatus.DONE in recorder.statuses())
    assert recorder.statuses() == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE]


def test_status_callbacks_stay_exact_under_concurrent_refreshes() -> None:
    client = FakeRuntimeClient()
    script = ["QUEUED"] * 30 + ["RUNNING"] * 30 + ["COMPLETED"]
    job = make_job(client, statuses=script)
    recorder = Recorder()
    job.add_status_callback(recorder)

    def hammer() -> None:
        while job.status() is not JobStatus.DONE:
            pass

    threads = [threading.Thread(target=hammer, name=f"test-hammer-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    wait_until(lambda: JobStatus.DONE in recorder.statuses())
    callbacks_drained()
    assert recorder.statuses() == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE]


def test_a_late_status_callback_gets_the_known_status_first() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "RUNNING", "COMPLETED"])
    assert job.status() is JobStatus.RUNNING
    recorder = Recorder()
    job.add_status_callback(recorder)
    wait_until(lambda: JobStatus.DONE in recorder.statuses())
    assert recorder.statuses() == [JobStatus.RUNNING, JobStatus.DONE]
    final = Recorder()
    job.add_status_callback(final)
    wait_until(lambda: len(final.calls) == 1)
    assert final.statuses() == [JobStatus.DONE]


def test_status_callback_then_done_callback_order() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "COMPLETED"])
    order: list[str] = []
    done = threading.Event()
    job.add_status_callback(lambda _id, status, _pos: order.append(status.name))

    def on_done(_job: RuntimeJob) -> None:
        order.append("done-callback")
        done.set()

    job.add_done_callback(on_done)
    assert done.wait(WAIT)
    assert order == ["RUNNING", "DONE", "done-callback"]


def test_final_frame_tells_status_callbacks_done() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])
    recorder = Recorder()
    job.add_status_callback(recorder)
    wait_until(lambda: recorder.statuses() == [JobStatus.RUNNING])
    wait_until(lambda: len(client.subscriptions) == 1)
    client.subscriptions[0].push('"r"', seq=1, final=True, status="COMPLETED")
    wait_until(lambda: recorder.statuses() == [JobStatus.RUNNING, JobStatus.DONE])


def test_a_raising_status_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "COMPLETED"])
    recorder = Recorder()

    def broken(job_id: str, status: JobStatus, position: int | None) -> None:
        raise RuntimeError("status bug")

    with caplog.at_level(logging.WARNING, logger="runtime_job.futures"):
        job.add_status_callback(broken)
        job.add_status_callback(recorder)
        wait_until(lambda: JobStatus.DONE in recorder.statuses())
        callbacks_drained()
    messages = [r.getMessage() for r in caplog.records if "status callback" in r.getMessage()]
    assert messages and all(job.job_id() in m for m in messages)


def test_removing_the_status_callback_stops_the_polling(fake_clock: FakeClock) -> None:
    fake_clock.autoadvance = False
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])
    recorder = Recorder()
    job.add_status_callback(recorder)
    wait_until(lambda: recorder.statuses() == [JobStatus.RUNNING])
    assert default_watcher().watched_count == 1
    assert job.remove_status_callback(recorder)
    assert not job.remove_status_callback(recorder)
    assert default_watcher().watched_count == 0
    polls = client.count("job_get")
    fake_clock.advance(60.0)  # a minute later: nobody polled
    default_watcher().sync_status_tracking(job)  # any work of the scheduler is done after it
    assert client.count("job_get") == polls


def test_two_status_callbacks_removing_one_keeps_the_other() -> None:
    client = FakeRuntimeClient()
    fake = client.add_job("two", statuses=["RUNNING"])
    job = make_job(client, "two")
    first, second = Recorder(), Recorder()
    job.add_status_callback(first)
    job.add_status_callback(second)
    job.remove_status_callback(first)
    wait_until(lambda: second.statuses() == [JobStatus.RUNNING])
    fake.statuses, fake.step = ["COMPLETED"], 0
    wait_until(lambda: second.statuses() == [JobStatus.RUNNING, JobStatus.DONE])
    assert JobStatus.DONE not in first.statuses()


def test_a_streamed_running_job_is_not_polled_for_its_status(fake_clock: FakeClock) -> None:
    fake_clock.autoadvance = False
    client = StreamingFakeClient()
    fake = client.add_job("streamed", statuses=["QUEUED", "QUEUED", "RUNNING"])
    job = make_job(client, "streamed")
    recorder = Recorder()
    job.add_status_callback(recorder)
    # Queued: polled with the fast back-off, to learn when it runs.
    while recorder.statuses() != [JobStatus.QUEUED, JobStatus.RUNNING]:
        wait_until(
            lambda: (
                recorder.statuses() == [JobStatus.QUEUED, JobStatus.RUNNING]
                or any(t > fake_clock.now for t in fake_clock.pending)
            )
        )
        later = [t for t in fake_clock.pending if t > fake_clock.now]
        if later and recorder.statuses() != [JobStatus.QUEUED, JobStatus.RUNNING]:
            fake_clock.advance_to(min(later))
    # Running with an open stream: the stream tells the end, so polls come rarely (the
    # next one is the silent-stream poll, 10 s on).
    settled(fake_clock)
    polls = client.count("job_get")
    assert min(t for t in fake_clock.pending if t > fake_clock.now) - fake_clock.now >= 9.9
    fake_clock.advance(9.0)
    settled(fake_clock)
    assert client.count("job_get") == polls
    fake.statuses, fake.step = ["COMPLETED"], 0
    client.subscriptions[0].push('"r"', seq=1, final=True, status="COMPLETED")
    wait_until(lambda: recorder.statuses()[-1] is JobStatus.DONE)
    assert client.count("job_get") == polls
