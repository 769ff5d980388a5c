"""asyncio for jobs: await a result, iterate over interim results, never block the loop.

Both work inside an event loop that is already running (Jupyter, an async web app) without
``nest_asyncio``, and under :func:`asyncio.run` in any thread:

- ``await job.result_async(timeout)`` bridges the job's :class:`concurrent.futures.Future`
  (fed by the shared completion watcher, see :mod:`runtime_job.futures`) into the running
  loop with :func:`asyncio.wrap_future`; the loop only waits.
- ``async for result in job.interim_results_async()`` joins the job's one stream
  (:class:`runtime_job._job_stream.JobStream`, shared with its callback and futures: no
  second websocket); its consumer decodes each interim result on a delivery thread and
  hands it to the loop with ``loop.call_soon_threadsafe`` into an :class:`asyncio.Queue`.

Example::

    async def main(service):
        jobs = [service.run("hello-world", inputs={"iterations": 2}) for _ in range(10)]
        async for message in jobs[0].interim_results_async():
            print("interim:", message)
        print(await asyncio.gather(*(job.result_async(timeout=60) for job in jobs)))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ._job_state import check_timeout
from ._job_stream import JobCore, core_of
from .api.protocol import StreamEnd, StreamFrame
from .exceptions import IBMRuntimeError, RuntimeJobTimeoutError

if TYPE_CHECKING:
    from .decoders import ResultDecoder
    from .job import RuntimeJob

logger = logging.getLogger(__name__)


async def result_async(job: RuntimeJob, timeout: float | None = None) -> Any:
    """Wait for ``job`` in the running loop and return what ``job.result()`` would.

    On a timeout the job goes on; only this wait stops.

    Args:
        job: The job.
        timeout: Seconds to wait at most; ``None`` waits as long as it takes.

    Returns:
        The decoded result.

    Raises:
        RuntimeJobTimeoutError: The job did not finish in time.
        Exception: Whatever ``job.result()`` raises for a final job (job failed, ran too
            long, cancelled, undecodable result).
    """
    check_timeout(timeout)
    waiter = asyncio.wrap_future(job.to_future())
    if timeout is None:
        return await waiter
    try:
        return await asyncio.wait_for(waiter, timeout)
    except TimeoutError as err:
        if waiter.done() and not waiter.cancelled():
            raise  # the job's own outcome (RuntimeJobTimeoutError is a TimeoutError too)
        raise RuntimeJobTimeoutError(
            f"Timed out waiting for job to complete after {timeout} secs."
        ) from err


async def interim_results_async(
    job: RuntimeJob, decoder: type[ResultDecoder] | None = None
) -> AsyncGenerator[Any, None]:
    """Yield each interim result of ``job`` once, in order, until the job is final.

    The job's stream is replayed from its start, so interim results published before the
    iteration began come first (when the job's stream is already open for its callback or a
    future, what it carried is replayed from memory, up to 4 MiB; beyond, a warning says the
    earlier ones are skipped). Leaving the ``async for`` early (``break``, an exception, a
    cancelled task) leaves the stream, which closes unless another consumer uses it.

    Args:
        job: The job.
        decoder: Decoder for interim results (default: the job's interim decoder).

    Yields:
        Decoded interim results.

    Raises:
        IBMRuntimeError: The job's client cannot stream.
        ResultDecodingError: An interim result could not be decoded (raised where it
            would have been yielded).
        WebsocketError: The stream failed for good (see ``docs/streaming.md``).
    """
    core = core_of(job)
    if not core.stream.can_stream and getattr(core.api, "has_interim_results", True) is False:
        # A dialect without interim results (the platform): nothing to yield, and the
        # iteration ends when the job does, as it would after its last interim result.
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(job.to_future())
        return
    if not core.stream.can_stream:
        raise IBMRuntimeError(
            f"Cannot stream results of job {job.job_id()}: "
            f"{type(core.api).__name__} does not support streaming."
        )
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    listener = _QueueListener(core, decoder, loop, queue)
    if not core.stream.attach(listener, replay=True):
        raise IBMRuntimeError(f"Cannot stream results of job {job.job_id()}: no stream opened.")
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Value):
                yield item.value
            elif isinstance(item, _Failure):
                raise item.error
            else:
                if item.error is not None:
                    raise item.error
                return
    finally:
        listener.close()


class _Value:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


_Item = _Value | _Failure | _End


class _QueueListener:
    """Decodes a job's frames on a delivery thread and hands them to the loop, in order."""

    delivered = True

    def __init__(
        self,
        core: JobCore,
        decoder: type[ResultDecoder] | None,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[_Item],
    ) -> None:
        self._core = core
        self._decoder = decoder or core.interim_decoder
        self._loop = loop
        self._queue = queue
        self._closed = False
        self._ended = False

    def on_frame(self, frame: StreamFrame) -> None:
        if self._closed or self._ended:
            return
        if frame.final:  # the job's state has learnt the end already
            self._ended = True
            self._put(_End(None))
            return
        try:
            value = self._core.decode_payload(self._decoder, frame.payload)
        except Exception as err:
            self._put(_Failure(err))
            return
        self._put(_Value(value))

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._put(_End(error if end is StreamEnd.FAILED else None))

    def close(self) -> None:
        """Leave the job's stream (the loop thread, when the iteration ends); the stream
        closes unless another consumer (a callback, a future, a waiter) still uses it."""
        self._closed = True
        self._core.stream.detach(self)

    def _put(self, item: _Item) -> None:
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is iterating any more
            self._closed = True
            self._core.stream.detach(self)


__all__ = ["interim_results_async", "result_async"]
