"""Scenarios 1-5: streaming through a faulty network, against the real local server.

1. a connection dropped mid-frame, then recovered: no interim result lost or duplicated;
2. the websocket endpoint gone for good: polling takes over, one warning, ``result()`` works;
3. a stream idle for longer than a proxy's idle timeout: keepalive pings hold it open;
4. ``result()`` / ``wait_for_final_state()`` while a stream is open: one websocket, no
   duplicate;
5. 50 streaming jobs at once: all complete, at most 8 client threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from runtime_job import JobStatus, RuntimeService
from runtime_job.api.stream import StreamHub
from runtime_job.server import LocalRuntimeServer

from .conftest import SERVER_THREADS, Collector, wait_until
from .faultproxy import Drop, FaultProxy, Respond, ws_count

STREAM_INPUTS = {"count": 40, "interval": 0.005, "size": 20}
EXPECTED = [{"index": i, "data": [0.0] * 20} for i in range(40)]


def test_1_dropped_mid_frame_then_recovered_loses_and_duplicates_nothing(
    proxy: FaultProxy, connect: Callable[..., RuntimeService], fast_hub: Callable[..., StreamHub]
) -> None:
    fast_hub()
    cuts = iter([450, 1300, 2100, 700])  # bytes relayed before each of the first four cuts
    proxy.ws_cut_after = lambda: next(cuts, None)
    # The REST side is flaky too: two status polls lose their connection.
    proxy.add("GET", r"/jobs/[^/]+", Drop(), times=2)
    service = connect(proxy.url)
    seen = Collector()
    job = service.run("stream", inputs=STREAM_INPUTS, callback=seen)

    assert job.result(timeout=60) == {"count": 40}
    job.wait_for_final_state(timeout=10)  # lets the callback stream deliver its last frame
    assert seen.seen == [*EXPECTED, {"count": 40}]
    assert job.interim_results() == EXPECTED
    assert proxy.cuts == 4
    assert ws_count(proxy, job.job_id()) == 5  # four cut connections, then one that lasted


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param(Respond(503, '{"errors": []}'), id="503-always"),
        pytest.param(Drop(), id="connection-closed"),
        pytest.param(Respond(404, '{"errors": []}'), id="404"),
    ],
)
def test_2_websocket_gone_for_good_falls_back_to_polling(
    gone: Any,
    proxy: FaultProxy,
    connect: Callable[..., RuntimeService],
    fast_hub: Callable[..., StreamHub],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fast_hub(reconnect_budget=0.4)
    proxy.add("GET", r"/stream/jobs/.*", gone)
    service = connect(proxy.url)
    seen = Collector()
    with caplog.at_level(logging.DEBUG, logger="runtime_job"):
        job = service.run("stream", inputs={"count": 3, "interval": 0.3}, callback=seen)
        # The callback's stream gives up first; only then does the user wait for the result.
        assert wait_until(lambda: any(r.levelno >= logging.WARNING for r in caplog.records))
        assert job.result(timeout=30) == {"count": 3}
    assert job.status() is JobStatus.DONE
    assert seen.seen == []  # nothing ever came through the stream
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert job.job_id() in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # no traceback
    assert ws_count(proxy, job.job_id()) >= 1
    polls = [r for r in proxy.seen() if r.method == "GET" and r.path == f"/jobs/{job.job_id()}"]
    assert len(polls) >= 2  # the job polled its status after the stream was given up


def test_3_idle_stream_outlives_a_proxy_idle_timeout_thanks_to_pings(
    proxy: FaultProxy, connect: Callable[..., RuntimeService], fast_hub: Callable[..., StreamHub]
) -> None:
    fast_hub(ping_interval=0.2, ping_timeout=0.5)
    proxy.idle_timeout = 0.6
    service = connect(proxy.url)
    seen = Collector()
    job = service.run("quiet-then", inputs={"silence": 2.0, "count": 2}, callback=seen)

    assert job.result(timeout=30) == {"count": 2}
    job.wait_for_final_state(timeout=10)
    assert seen.seen == [{"k": 0}, {"k": 1}, {"count": 2}]
    assert proxy.idle_drops == 0
    assert ws_count(proxy, job.job_id()) == 1


def test_4_waiting_while_a_stream_is_open_uses_that_one_websocket(
    proxy: FaultProxy, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(proxy.url)
    seen = Collector()
    job = service.run("stream", inputs={"count": 10, "interval": 0.05}, callback=seen)
    results: list[Any] = []
    errors: list[BaseException] = []

    def wait(kind: str) -> None:
        try:
            if kind == "result":
                results.append(job.result(timeout=30))
            else:
                job.wait_for_final_state(timeout=30)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=wait, args=(kind,)) for kind in ("result", "wait", "result")]
    for thread in threads:
        thread.start()
    job.wait_for_final_state(timeout=30)
    for thread in threads:
        thread.join(30)
    assert not errors
    assert results == [{"count": 10}, {"count": 10}]
    assert seen.seen == [*({"index": i, "data": []} for i in range(10)), {"count": 10}]
    assert ws_count(proxy, job.job_id()) == 1


def test_4b_concurrent_waits_without_a_callback_share_one_websocket(
    proxy: FaultProxy, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(proxy.url)
    job = service.run("stream", inputs={"count": 5, "interval": 0.1})
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def wait() -> None:
        barrier.wait()
        results.append(job.result(timeout=30))

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{"count": 5}] * 4
    assert ws_count(proxy, job.job_id()) <= 1


def client_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("runtime-job-") and not t.name.startswith(SERVER_THREADS)
    ]


def test_5_fifty_streaming_jobs_at_once_complete_on_a_bounded_number_of_threads(
    server: LocalRuntimeServer, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(server.url)
    peak: list[int] = [0]
    names: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            current = client_threads()
            names.update(current)
            peak[0] = max(peak[0], len(current))
            stop.wait(0.002)  # a sampler, not a wait: it looks every 2 ms until stopped

    sampler = threading.Thread(target=sample, name="test-sampler", daemon=True)
    sampler.start()
    collectors = []
    jobs = []
    try:
        for _ in range(50):
            collector = Collector()

            def slow(job_id: str, value: Any, into: Collector = collector) -> None:
                time.sleep(0.01)  # slower than the jobs: callbacks pile up on the dispatchers
                into(job_id, value)

            jobs.append(service.run("stream", inputs={"count": 5, "interval": 0.0}, callback=slow))
            collectors.append(collector)
        for job in jobs:
            assert job.result(timeout=60) == {"count": 5}
        for job in jobs:
            job.wait_for_final_state(timeout=10)
    finally:
        stop.set()
        sampler.join(5)
    expected = [*({"index": i, "data": []} for i in range(5)), {"count": 5}]
    for collector in collectors:
        assert collector.seen == expected
    assert peak[0] <= 8, sorted(names)
    assert names, "the sampler saw no client thread at all"
