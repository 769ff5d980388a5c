"""Many jobs at once with asyncio and futures, on the embedded local runtime server.

Run it with ``.venv/bin/python examples/many_jobs_asyncio.py``. No account and no network
are needed. It shows:

- ``await job.result_async()`` over many jobs with ``asyncio.gather``, while the loop keeps
  serving other tasks (a ticker counts how often it got to run);
- ``async for message in job.interim_results_async()``: interim results as they arrive;
- ``job.to_future()`` with ``concurrent.futures.as_completed``, from plain threads;
- status callbacks and the ``monitor`` status line.

None of this starts a thread per job: one watcher and the stream hub serve them all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import tempfile
import time
from typing import Any

from runtime_job import JobStatus, RuntimeJob, RuntimeService, monitor

JOBS = 50


async def follow(job: RuntimeJob) -> None:
    """Print each interim result of ``job`` as it arrives."""
    async for message in job.interim_results_async():
        print(f"  interim from {job.job_id()[:8]}: {message}")


async def ticker(counter: list[int]) -> None:
    """Count how often the loop gets to run this task (every 10 ms when all is well)."""
    while True:
        await asyncio.sleep(0.01)
        counter[0] += 1


async def run_with_asyncio(service: RuntimeService) -> list[Any]:
    """Submit jobs (off the loop: submission is a blocking HTTP call), then await them."""

    def submit() -> tuple[list[RuntimeJob], RuntimeJob]:
        jobs = [service.run("echo", inputs={"index": i}) for i in range(JOBS)]
        talker = service.run("hello-world", inputs={"iterations": 3})
        return jobs, talker

    ticks = [0]
    tick_task = asyncio.create_task(ticker(ticks))
    started = time.monotonic()
    jobs, talker = await asyncio.to_thread(submit)
    follower = asyncio.create_task(follow(talker))
    results = await asyncio.gather(*(job.result_async(timeout=60) for job in jobs))
    await follower
    print(f"  final result of {talker.job_id()[:8]}: {await talker.result_async(timeout=60)!r}")
    elapsed = time.monotonic() - started
    tick_task.cancel()
    print(f"{len(results)} results in {elapsed:.2f} s; the loop ticked {ticks[0]} times meanwhile")
    return list(results)


def run_with_futures(service: RuntimeService) -> None:
    """The same without asyncio: futures, ``as_completed``, and status callbacks."""
    jobs = [service.run("sleep", inputs={"seconds": 0.2}) for _ in range(4)]

    def on_status(job_id: str, status: JobStatus, queue_position: int | None) -> None:
        where = f" (queue position {queue_position})" if queue_position else ""
        print(f"  status of {job_id[:8]}: {status.name}{where}")

    jobs[-1].add_status_callback(on_status)
    futures = {job.to_future(): job for job in jobs}
    for future in concurrent.futures.as_completed(futures, timeout=60):
        print(f"  {futures[future].job_id()[:8]} finished: {future.result()}")
    jobs[-1].remove_status_callback(on_status)


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        RuntimeService(channel="local", data_dir=data_dir) as service,
    ):
        print(f"Awaiting {JOBS} jobs with asyncio...")
        results = asyncio.run(run_with_asyncio(service))
        assert results == [{"index": i} for i in range(JOBS)]

        print("Futures and status callbacks...")
        run_with_futures(service)

        print("A live status line (monitor)...")
        monitor([service.run("sleep", inputs={"seconds": 0.3}) for _ in range(3)], interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
