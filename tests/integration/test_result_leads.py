"""``job.result()`` on the main thread serves the stream hub itself (``Reactor.lead``).

The final frame then reaches the job on the waiting thread, with no hand-off, and so does
the user callback of the final result when ``result()`` has no timeout (with one, the
callback runs on a delivery thread, so the timeout holds whatever it does).
(pytest-timeout's ``signal`` method would put a Python handler on ``SIGALRM``, which
forbids leading on the main thread: the suite uses its ``thread`` method.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job._job_stream import DELIVERY_THREAD_PREFIX, JobStream
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import lease as stream_lease
from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE

SLEEP_INPUTS = {"seconds": 0.2}
REACTOR_THREAD = "runtime-job-stream-io"


@pytest.fixture()
def final_frame_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads on which the job's state learns the final frame, in order."""
    names: list[str] = []
    original = JobStream._record_final

    def recording(self: JobStream, frame: StreamFrame) -> None:
        names.append(threading.current_thread().name)
        original(self, frame)

    monkeypatch.setattr(JobStream, "_record_final", recording)
    # A loaded machine must not make the hub refuse the lease (it then waits its own way).
    monkeypatch.setattr(stream_lease, "GRANT_TIMEOUT", 10.0)
    return names


@pytest.fixture()
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    with RuntimeService(channel="local", url=server.url, token=ALICE) as svc:
        yield svc


def test_result_on_the_main_thread_gets_the_final_frame_there(
    service: RuntimeService, final_frame_threads: list[str]
) -> None:
    """Without a callback, the final frame is read and handled by the thread in ``result()``."""
    assert threading.current_thread() is threading.main_thread()
    job = service.run("sleep", inputs=SLEEP_INPUTS)
    assert job.result(timeout=60) == {"slept": 0.2}
    assert final_frame_threads == ["MainThread"]


def test_result_with_a_callback_calls_it_with_the_final_result_on_the_waiting_thread(
    service: RuntimeService, final_frame_threads: list[str]
) -> None:
    """With a user callback, the thread in ``result()`` (no timeout) delivers the final
    result itself."""
    called: list[tuple[str, Any]] = []

    def callback(job_id: str, value: Any) -> None:
        called.append((threading.current_thread().name, value))

    job = service.run("sleep", inputs=SLEEP_INPUTS, callback=callback)
    assert job.result() == {"slept": 0.2}
    # result() returns only after the callback stream has delivered its last frame.
    assert called == [("MainThread", {"slept": 0.2})]
    assert final_frame_threads == ["MainThread"]


def test_result_with_a_timeout_leaves_the_callback_to_a_delivery_thread(
    service: RuntimeService, final_frame_threads: list[str]
) -> None:
    """With a timeout, ``result()`` never runs user code: the final callback runs on a
    delivery thread, and ``result()`` still returns only after it."""
    called: list[tuple[str, Any]] = []

    def callback(job_id: str, value: Any) -> None:
        called.append((threading.current_thread().name, value))

    job = service.run("sleep", inputs=SLEEP_INPUTS, callback=callback)
    assert job.result(timeout=60) == {"slept": 0.2}
    assert len(called) == 1
    assert called[0][0].startswith(DELIVERY_THREAD_PREFIX)
    assert called[0][1] == {"slept": 0.2}
    assert final_frame_threads == ["MainThread"]


def test_result_returns_before_its_stream_ends_and_the_stream_ends_completed(
    service: RuntimeService, final_frame_threads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting thread leaves once the job has its result; the reactor thread then ends
    the stream (``Reactor.defer``), which ends ``COMPLETED``: ``result()`` does not cancel a
    stream that delivered its final frame."""
    ends: list[tuple[str, StreamEnd]] = []
    ended = threading.Event()
    original = JobStream._on_end

    def recording(
        self: JobStream, listener: Any, end: StreamEnd, error: BaseException | None
    ) -> None:
        ends.append((threading.current_thread().name, end))
        original(self, listener, end, error)
        ended.set()

    monkeypatch.setattr(JobStream, "_on_end", recording)
    job = service.run("sleep", inputs=SLEEP_INPUTS)
    assert job.result(timeout=60) == {"slept": 0.2}
    assert final_frame_threads == ["MainThread"]
    assert ended.wait(10), "the stream did not end"
    assert ends == [(REACTOR_THREAD, StreamEnd.COMPLETED)]
