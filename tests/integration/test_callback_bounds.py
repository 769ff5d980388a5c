"""Waits keep their bound whatever the result callbacks do (issue 18, items 10 and 11).

- ``result(timeout=T)`` returns or raises within ``T`` (plus a margin) even when the final
  result's callback blocks: with a timeout, the waiting thread never runs user callbacks
  (they run on ``runtime-job-deliver-N``).
- ``job.result()`` called inside one of the job's own callbacks returns as soon as the job
  is final, not after the drain grace it would wait for itself; the outer ``result()`` too.

The main thread leads the stream hub here (as in ``test_result_leads``), so the final frame
is read by the thread in ``result()``: the case where a callback could land on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job._job_stream import DELIVERY_THREAD_PREFIX
from runtime_job.api.stream import lease as stream_lease
from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE

MARGIN = 1.0
"""What ``result(timeout=T)`` may take beyond ``T`` (the bound of issue 18, item 10)."""


@pytest.fixture()
def service(
    server: LocalRuntimeServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RuntimeService]:
    # A loaded machine must not make the hub refuse the lease (the waiter would then park
    # and never read the final frame itself: the case under test would not arise).
    monkeypatch.setattr(stream_lease, "GRANT_TIMEOUT", 10.0)
    with RuntimeService(channel="local", url=server.url, token=ALICE) as svc:
        yield svc


def _finished_at(job: Any) -> float:
    text = job.metrics()["timestamps"]["finished"]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_result_with_a_timeout_is_not_held_by_a_slow_final_callback(
    service: RuntimeService,
) -> None:
    release = threading.Event()
    threads: list[str] = []

    def slow(job_id: str, value: Any) -> None:
        threads.append(threading.current_thread().name)
        release.wait(30)  # far longer than the timeout

    job = service.run("sleep", inputs={"seconds": 0.2}, callback=slow)
    timeout = 2.0
    start = time.monotonic()
    try:
        try:
            value: Any = job.result(timeout=timeout)
        except TimeoutError as err:  # raising in time is allowed too
            value = err
        elapsed = time.monotonic() - start
    finally:
        release.set()
    assert elapsed < timeout + MARGIN, f"result(timeout={timeout}) took {elapsed:.1f} s"
    assert value == {"slept": 0.2}  # the job was done: its result, not a timeout
    assert threads and all(name.startswith(DELIVERY_THREAD_PREFIX) for name in threads)


def test_result_inside_the_callbacks_returns_as_soon_as_the_job_ends(
    service: RuntimeService,
) -> None:
    inner: list[tuple[str, float, Any]] = []
    job_box: list[Any] = []
    ready = threading.Event()

    def callback(job_id: str, value: Any) -> None:
        ready.wait(30)
        kind = "final" if value == {"count": 3} else f"interim-{value['index']}"
        if kind in ("interim-0", "final"):
            got = job_box[0].result(timeout=30)
            inner.append((kind, time.time(), got))

    job = service.run("stream", inputs={"count": 3, "interval": 0.1}, callback=callback)
    job_box.append(job)
    ready.set()
    assert job.result(timeout=60) == {"count": 3}
    outer_returned = time.time()
    finished = _finished_at(job)
    assert [kind for kind, _, _ in inner] == ["interim-0", "final"]
    assert all(got == {"count": 3} for _, _, got in inner)
    for kind, returned, _ in inner:
        assert returned - finished < MARGIN, f"result() in the {kind} callback waited"
    assert outer_returned - finished < MARGIN, "the outer result() waited"
