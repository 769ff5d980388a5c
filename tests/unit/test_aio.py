"""asyncio helpers against scripted fakes: results, timeouts, interim results, loop health."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job.api.protocol import StreamEnd
from runtime_job.decoders import ResultDecoder
from runtime_job.exceptions import (
    IBMInputValueError,
    IBMRuntimeError,
    ResultDecodingError,
    RuntimeJobFailureError,
    RuntimeJobTimeoutError,
    WebsocketError,
)
from runtime_job.futures import default_watcher
from runtime_job.status import JobStatus

from .fakes import FakeRuntimeClient, StreamingFakeClient
from .test_futures import make_job, wait_until

WAIT = 10.0


class Ticker:
    """A task that ticks every 5 ms and records the longest gap: a blocked loop shows."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            self.ticks += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture(autouse=True)
def _nothing_left_watched() -> Iterator[None]:
    yield
    wait_until(lambda: default_watcher().watched_count == 0)


# --------------------------------------------------------------------------- result_async


def test_result_async_awaits_many_jobs_and_the_loop_keeps_ticking() -> None:
    client = FakeRuntimeClient()
    jobs = [
        make_job(client, statuses=["QUEUED"] * 6 + ["COMPLETED"], result=str(i)) for i in range(20)
    ]

    async def main() -> tuple[list[Any], Ticker]:
        ticker = Ticker()
        ticker.start()
        results = await asyncio.gather(*(job.result_async(timeout=WAIT) for job in jobs))
        await ticker.stop()
        return results, ticker

    started = time.monotonic()
    results, ticker = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert results == list(range(20))
    # The jobs took several polls (about a second); the loop ran all along.
    assert elapsed > 0.3
    assert ticker.ticks >= elapsed / 0.005 / 4
    assert ticker.max_gap < 0.25


def test_result_async_raises_the_job_failure() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "FAILED"], result="Traceback: bad input")

    async def main() -> None:
        await job.result_async()

    with pytest.raises(RuntimeJobFailureError, match="bad input"):
        asyncio.run(main())


def test_result_async_timeout_leaves_the_job_alone() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])

    async def main() -> None:
        await job.result_async(timeout=0.1)

    with pytest.raises(RuntimeJobTimeoutError, match="after 0.1 secs") as caught:
        asyncio.run(main())
    assert isinstance(caught.value, TimeoutError)
    assert client.count("job_cancel") == 0
    assert job.status() is JobStatus.RUNNING
    # The timed-out wait no longer holds the job in the watcher.
    wait_until(lambda: default_watcher().watched_count == 0)


def test_result_async_checks_its_timeout() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    with pytest.raises(IBMInputValueError):
        asyncio.run(job.result_async(timeout=-1))


def test_result_async_of_a_cached_result_returns_at_once() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    job.result()
    calls = len(client.calls)
    assert asyncio.run(job.result_async()) == "foo"
    assert len(client.calls) == calls


def test_cancelling_the_awaiting_task_does_not_cancel_the_job() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])

    async def main() -> None:
        task = asyncio.create_task(job.result_async())
        # Cancel only once the task really awaits the job (the watcher has it).
        await asyncio.to_thread(
            wait_until, lambda: default_watcher().watched_count == 1, what="the job to be watched"
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert client.count("job_cancel") == 0
    wait_until(lambda: default_watcher().watched_count == 0)


def test_result_async_from_a_thread_without_a_loop() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["RUNNING", "COMPLETED"], result=str(i)) for i in range(5)]
    outcome: list[Any] = []

    def in_thread() -> None:
        async def main() -> list[Any]:
            return list(await asyncio.gather(*(job.result_async() for job in jobs)))

        assert threading.current_thread() is not threading.main_thread()
        outcome.append(asyncio.run(main()))

    thread = threading.Thread(target=in_thread, name="test-no-loop")
    thread.start()
    thread.join(WAIT)
    assert outcome == [[0, 1, 2, 3, 4]]


# ------------------------------------------------------------------ interim_results_async


def push_from_thread(action: Any) -> threading.Thread:
    """Drive a fake stream from another thread, as the stream hub does."""
    thread = threading.Thread(target=action, name="test-hub")
    thread.start()
    return thread


def test_interim_results_async_yields_every_result_in_order() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        subscription = client.subscriptions[0]
        for i in range(50):
            subscription.push(f'{{"index": {i}}}', seq=i + 1)
        subscription.push('"final"', seq=51, final=True, status="COMPLETED")
        subscription.end()

    async def main() -> list[Any]:
        ticker = Ticker()
        ticker.start()
        feeder = push_from_thread(publish)
        seen = [item async for item in job.interim_results_async()]
        await ticker.stop()
        feeder.join(WAIT)
        return seen

    assert asyncio.run(main()) == [{"index": i} for i in range(50)]
    # The final frame told the job it is done, with its result.
    assert job.status() is JobStatus.DONE
    assert job.result() == "final"
    assert client.count("job_get") == 0


def test_interim_results_async_uses_the_given_decoder() -> None:
    class Tagged(ResultDecoder):
        @classmethod
        def decode(cls, raw: str | bytes) -> Any:
            return ("tagged", super().decode(raw))

    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        client.subscriptions[0].push("1", seq=1)
        client.subscriptions[0].push("", seq=2, final=True, status="COMPLETED")

    async def main() -> list[Any]:
        feeder = push_from_thread(publish)
        seen = [item async for item in job.interim_results_async(decoder=Tagged)]
        feeder.join(WAIT)
        return seen

    assert asyncio.run(main()) == [("tagged", 1)]


def test_interim_results_async_raises_a_decoding_error_in_place() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        client.subscriptions[0].push("1", seq=1)
        client.subscriptions[0].push("{broken", seq=2)

    seen: list[Any] = []

    async def main() -> None:
        feeder = push_from_thread(publish)
        try:
            async for item in job.interim_results_async():
                seen.append(item)
        finally:
            feeder.join(WAIT)

    with pytest.raises(ResultDecodingError, match=job.job_id()):
        asyncio.run(main())
    assert seen == [1]
    assert client.subscriptions[0].cancelled


def test_interim_results_async_raises_when_the_stream_fails() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        client.subscriptions[0].push("1", seq=1)
        client.subscriptions[0].end(StreamEnd.FAILED, WebsocketError("Max retries exceeded"))

    async def main() -> list[Any]:
        feeder = push_from_thread(publish)
        seen: list[Any] = []
        try:
            async for item in job.interim_results_async():
                seen.append(item)
        finally:
            feeder.join(WAIT)
        return seen

    with pytest.raises(WebsocketError, match="Max retries"):
        asyncio.run(main())


def test_a_plain_stream_ends_the_iteration_when_it_closes() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        client.subscriptions[0].push("1")
        client.subscriptions[0].push("2")
        client.subscriptions[0].end(StreamEnd.COMPLETED)

    async def main() -> list[Any]:
        feeder = push_from_thread(publish)
        seen = [item async for item in job.interim_results_async()]
        feeder.join(WAIT)
        return seen

    assert asyncio.run(main()) == [1, 2]


def test_leaving_the_iteration_early_closes_the_stream() -> None:
    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])

    def publish() -> None:
        wait_until(lambda: len(client.subscriptions) == 1)
        for i in range(3):
            client.subscriptions[0].push(str(i), seq=i + 1)

    async def main() -> Any:
        feeder = push_from_thread(publish)
        async with contextlib.aclosing(job.interim_results_async()) as results:
            first = await anext(results)
        feeder.join(WAIT)
        return first

    assert asyncio.run(main()) == 0
    assert client.subscriptions[0].cancelled


def test_frames_after_the_loop_closed_go_nowhere_quietly() -> None:
    from runtime_job._job_stream import core_of
    from runtime_job.aio import _QueueListener
    from runtime_job.api.protocol import StreamFrame

    client = StreamingFakeClient()
    job = make_job(client, statuses=["RUNNING"])
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    core = core_of(job)
    listener = _QueueListener(core, None, loop, queue)
    assert core.stream.attach(listener, replay=True)
    loop.close()  # nobody iterates any more, and nobody closed the iteration
    listener.on_frame(StreamFrame("1", seq=1))  # a delivery thread: no error, the stream stops
    assert client.subscriptions[0].cancelled
    assert queue.empty()


def test_interim_results_async_needs_a_streaming_client() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])

    async def main() -> None:
        async for _ in job.interim_results_async():
            pass

    with pytest.raises(IBMRuntimeError, match="does not support streaming"):
        asyncio.run(main())
