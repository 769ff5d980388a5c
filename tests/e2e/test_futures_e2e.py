"""Futures, asyncio and status callbacks end to end against the real local server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from typing import Any

from runtime_job import JobStatus, RuntimeService
from runtime_job.exceptions import RuntimeJobFailureError, RuntimeJobTimeoutError
from runtime_job.futures import default_watcher
from tests.support import callbacks_drained, wait_until

WAIT = 60.0
CLIENT_THREADS = ("runtime-job-watch", "runtime-job-callbacks", "runtime-job-stream")


def client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(CLIENT_THREADS)]


def test_as_completed_over_200_jobs_with_a_few_threads(service: RuntimeService) -> None:
    jobs = [service.run("echo", inputs={"i": i}) for i in range(200)]
    futures = {job.to_future(): i for i, job in enumerate(jobs)}
    peak: list[str] = []
    seen: set[int] = set()
    for future in concurrent.futures.as_completed(futures, timeout=WAIT):
        assert future.result() == {"i": futures[future]}
        seen.add(futures[future])
        names = client_threads()
        if len(names) > len(peak):
            peak = names
    assert seen == set(range(200))
    # Never a thread per job: the hub (<= 6), the watcher (1 + <= 4 io), one callback thread.
    assert len(peak) <= 12, peak
    assert all(name.startswith("runtime-job-") for name in peak)
    assert all(job.status() is JobStatus.DONE for job in jobs)
    # Idle again: the watcher's threads go away by themselves.
    assert default_watcher().watched_count == 0
    wait_until(lambda: not any(n.startswith("runtime-job-watch") for n in client_threads()))


def test_a_failing_job_fails_its_future(service: RuntimeService) -> None:
    good = service.run("echo", inputs={"ok": True})
    bad = service.run("fail", inputs={"message": "wrong answer"})
    futures = [good.to_future(), bad.to_future()]
    done, pending = concurrent.futures.wait(futures, timeout=WAIT)
    assert not pending and len(done) == 2
    assert futures[0].result() == {"ok": True}
    error = futures[1].exception()
    assert isinstance(error, RuntimeJobFailureError)
    assert "wrong answer" in str(error) and bad.job_id() in str(error)
    assert bad.status() is JobStatus.ERROR


def test_done_callbacks_run_once_when_jobs_end(service: RuntimeService) -> None:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    all_done = threading.Event()
    jobs = [service.run("sleep", inputs={"seconds": 0.1}) for _ in range(5)]

    def on_done(job: Any) -> None:
        with lock:
            seen.append((job.job_id(), threading.current_thread().name))
            if len(seen) == len(jobs):
                all_done.set()

    for job in jobs:
        job.add_done_callback(on_done)
    assert all_done.wait(WAIT)
    callbacks_drained(jobs[0])  # a second call of any callback would have come by now
    assert sorted(job_id for job_id, _ in seen) == sorted(job.job_id() for job in jobs)
    threads = {thread for _, thread in seen}
    assert len(threads) == 1 and threads.pop().startswith("runtime-job-callbacks-")


def test_status_callbacks_see_queued_running_done_once(service: RuntimeService) -> None:
    blockers = [service.run("sleep", inputs={"seconds": 1.0}) for _ in range(2)]
    job = service.run("sleep", inputs={"seconds": 0.5})
    calls: list[tuple[str, JobStatus, int | None]] = []
    job.add_status_callback(lambda *args: calls.append(args))
    assert job.result(timeout=WAIT) == {"slept": 0.5}
    wait_until(lambda: bool(calls) and calls[-1][1] is JobStatus.DONE, what="DONE told")
    callbacks_drained(job)  # a repeated status would have been told by now
    assert [status for _, status, _ in calls] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.DONE,
    ]
    assert {job_id for job_id, _, _ in calls} == {job.job_id()}
    position = calls[0][2]
    assert isinstance(position, int) and position >= 1
    assert calls[1][2] is None and calls[2][2] is None
    for blocker in blockers:
        blocker.result(timeout=WAIT)


def test_result_async_keeps_the_loop_responsive(service: RuntimeService) -> None:
    jobs = [service.run("sleep", inputs={"seconds": 0.3}) for _ in range(6)]

    async def main() -> tuple[list[Any], int, float]:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        results = await asyncio.gather(*(job.result_async(timeout=WAIT) for job in jobs))
        tick.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick
        return results, len(gaps), max(gaps)

    results, ticks, max_gap = asyncio.run(main())
    assert results == [{"slept": 0.3}] * 6
    assert ticks >= 30  # three rounds of 0.3 s on two workers: the ticker ran throughout
    assert max_gap < 0.25


def test_result_async_failure_and_timeout(service: RuntimeService) -> None:
    failing = service.run("fail", inputs={"message": "async boom"})
    slow = service.run("sleep", inputs={"seconds": 2.0})

    async def main() -> tuple[BaseException | None, BaseException | None]:
        outcomes = await asyncio.gather(
            failing.result_async(timeout=WAIT),
            slow.result_async(timeout=0.2),
            return_exceptions=True,
        )
        return outcomes[0], outcomes[1]

    failure, timeout = asyncio.run(main())
    assert isinstance(failure, RuntimeJobFailureError) and "async boom" in str(failure)
    assert isinstance(timeout, RuntimeJobTimeoutError)
    assert slow.status() in (JobStatus.QUEUED, JobStatus.RUNNING)  # the job goes on
    assert slow.result(timeout=WAIT) == {"slept": 2.0}


def test_result_async_from_a_thread_without_a_loop(service: RuntimeService) -> None:
    jobs = [service.run("echo", inputs={"n": n}) for n in range(10)]
    outcome: list[Any] = []

    def worker() -> None:
        async def main() -> list[Any]:
            return list(await asyncio.gather(*(job.result_async(timeout=WAIT) for job in jobs)))

        outcome.append(asyncio.run(main()))

    thread = threading.Thread(target=worker, name="test-asyncio-thread")
    thread.start()
    thread.join(WAIT)
    assert outcome == [[{"n": n} for n in range(10)]]


def test_interim_results_async_yields_every_result_in_order(service: RuntimeService) -> None:
    job = service.run("stream", inputs={"count": 30, "interval": 0.01})

    async def main() -> tuple[list[Any], Any]:
        seen = [item["index"] async for item in job.interim_results_async()]
        return seen, await job.result_async(timeout=WAIT)

    seen, result = asyncio.run(main())
    assert seen == list(range(30))
    assert result == {"count": 30}


def test_interim_results_async_of_a_finished_job_replays_them(service: RuntimeService) -> None:
    job = service.run("hello-world", inputs={"iterations": 4})
    assert job.result(timeout=WAIT) == "Hello, World!"

    async def main() -> list[Any]:
        return [item async for item in job.interim_results_async()]

    assert asyncio.run(main()) == [{"iteration": i} for i in range(1, 5)]


def test_many_interim_iterations_at_once_in_one_loop(service: RuntimeService) -> None:
    jobs = [service.run("stream", inputs={"count": 10, "interval": 0.01}) for _ in range(8)]

    async def collect(job: Any) -> list[int]:
        return [item["index"] async for item in job.interim_results_async()]

    async def main() -> list[list[int]]:
        return list(await asyncio.gather(*(collect(job) for job in jobs)))

    assert asyncio.run(main()) == [list(range(10))] * 8
