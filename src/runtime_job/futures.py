"""Futures and callbacks for jobs: one shared completion watcher for the whole process.

``job.to_future()`` gives a :class:`concurrent.futures.Future` that resolves with what
``job.result()`` would return or raise, so :func:`concurrent.futures.wait` and
:func:`concurrent.futures.as_completed` work over any number of jobs.
``job.add_done_callback(fn)`` and ``job.add_status_callback(fn)`` hang callbacks on a job.
None of them starts a thread per job: one :class:`Watcher` per process (:func:`default_watcher`)
watches every job that has a future or a callback:

- ``runtime-job-watch`` (one thread): the scheduler. It joins each watched job's one stream
  (:class:`runtime_job._job_stream.JobStream`, shared with the job's callback, async
  iterators and ``result()``: no second websocket) and learns completion from its final
  frame, through the job's state. Jobs without a stream (a client that
  cannot stream, a stream that failed) are polled with a back-off, in batches. It exits once
  it has had nothing to watch for ``idle_shutdown`` seconds.
- ``runtime-job-watch-io-N`` (at most ``io_threads``): the network work: status polls and the
  final ``result()`` call that resolves the futures (a download and a decode).
- ``runtime-job-callbacks-N`` (one thread at a time): user callbacks, in order, one at a
  time, each guarded: an error is logged with the job id and the others still run.

Every thread is a daemon, starts on demand and exits when idle; an ``atexit`` hook stops the
watcher with a short bound, so nothing delays interpreter exit.

Example::

    import concurrent.futures

    jobs = [service.run("echo", inputs={"i": i}) for i in range(100)]
    futures = {job.to_future(): job for job in jobs}
    for future in concurrent.futures.as_completed(futures, timeout=60):
        print(futures[future].job_id(), future.result())
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ._callbacks import call_guarded
from ._job_stream import SILENT_STREAM_POLL_POLICY, JobCore, core_of
from ._pool import WorkerPool
from ._process import ProcessSingleton
from .api.protocol import PollingApi, StreamEnd, StreamFrame
from .exceptions import IBMNotAuthorizedError, RequestsApiError
from .status import JOB_FINAL_STATES, JobStatus
from .timing import PollIntervals, PollPolicy, clock

if TYPE_CHECKING:
    from .job import RuntimeJob

logger = logging.getLogger(__name__)

StatusCallback = Callable[[str, JobStatus, "int | None"], object]
"""A status callback: ``callback(job_id, status, queue_position)`` (its return is ignored)."""
DoneCallback = Callable[["RuntimeJob"], object]
"""A done callback: ``callback(job)`` (its return is ignored)."""

WATCH_THREAD_NAME: Final = "runtime-job-watch"
"""Name of the watcher's scheduler thread."""
IO_THREAD_PREFIX: Final = "runtime-job-watch-io"
"""Prefix of the watcher's network threads."""
CALLBACK_THREAD_PREFIX: Final = "runtime-job-callbacks"
"""Prefix of the thread that runs user callbacks."""

WATCH_POLL_POLICY: Final = PollPolicy(initial=0.05, factor=1.5, max_interval=2.0)
"""How a job without a stream (or queued, with status callbacks) is polled."""
SAFETY_POLL_POLICY: Final = SILENT_STREAM_POLL_POLICY
"""How a job with an open stream is polled anyway, in case the stream stays silent (the
job core's one definition)."""
DEFAULT_IO_THREADS: Final = 4
DEFAULT_IDLE_SHUTDOWN: Final = 1.0
DEFAULT_BATCH_WINDOW: Final = 0.05

_EXIT_CLOSE_TIMEOUT = 0.2
"""Bound on the ``atexit`` close of the watcher (its threads are daemons: a status poll still
in flight, e.g. retrying against a server that went away, is not waited for longer)."""
_MAX_BATCH = 16
"""At most this many jobs in one network task, so one slow job holds up few others."""
_RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx statuses that a later poll may get past."""


class JobHooks:
    """What a job tells on each status change: its status callbacks, and the watcher.

    A job gets one on first use (kept on its core), registered as a status listener of the
    job's state. Its list is guarded by the state's lock, and the state calls
    :meth:`status_changed` with that lock held, so every transition is told once and in
    order.
    """

    def __init__(self) -> None:
        self.status_callbacks: list[StatusCallback] = []

    def status_changed(
        self, job: RuntimeJob, status: JobStatus, queue_position: int | None
    ) -> None:
        """Queue the status callbacks and tell the watcher (job lock held; never blocks).

        Args:
            job: The job whose status changed.
            status: Its new status.
            queue_position: Its position in the queue, when queued and the server says.
        """
        try:
            if self.status_callbacks:
                watcher = default_watcher()
                for callback in self.status_callbacks:
                    watcher.call_soon(
                        partial(
                            _run_status_callback, callback, job.job_id(), status, queue_position
                        )
                    )
            if status in JOB_FINAL_STATES:
                current = _current_watcher()
                if current is not None:
                    current.job_final(job)
        except Exception:  # never let the hooks break the job's own status update
            logger.error("Could not tell the status of job %s.", job.job_id(), exc_info=True)


def hooks_for(job: RuntimeJob) -> JobHooks:
    """The job's hooks, created on first use.

    Args:
        job: The job.

    Returns:
        The :class:`JobHooks` the job calls on each status change.
    """
    core = core_of(job)
    with core.state.lock:
        hooks = core.hooks
        if not isinstance(hooks, JobHooks):
            hooks = core.hooks = JobHooks()
            core.state.add_status_listener(partial(hooks.status_changed, job))
        return hooks


def _hooks(core: JobCore) -> JobHooks | None:
    hooks = core.hooks
    return hooks if isinstance(hooks, JobHooks) else None


def add_status_callback(job: RuntimeJob, callback: StatusCallback) -> None:
    """Call ``callback(job_id, status, queue_position)`` on each status change of ``job``.

    When the job's status is already known, the callback first gets it at once (on the
    callback thread), so it sees every status from now on, each once. The watcher polls the
    job's status while it is not final.

    Args:
        job: The job.
        callback: The status callback.
    """
    hooks = hooks_for(job)
    watcher = default_watcher()
    state = core_of(job).state
    with state.lock:
        hooks.status_callbacks.append(callback)
        status, position = state.status, state.queue_position
        if status is not JobStatus.INITIALIZING:
            watcher.call_soon(
                partial(_run_status_callback, callback, job.job_id(), status, position)
            )
    if status not in JOB_FINAL_STATES:
        watcher.sync_status_tracking(job)


def remove_status_callback(job: RuntimeJob, callback: StatusCallback) -> bool:
    """Stop calling ``callback`` (its first registration) on status changes of ``job``.

    Args:
        job: The job.
        callback: A callback given to :func:`add_status_callback`.

    Returns:
        Whether the callback was registered.
    """
    core = core_of(job)
    hooks = _hooks(core)
    if hooks is None:
        return False
    with core.state.lock:
        try:
            hooks.status_callbacks.remove(callback)
        except ValueError:
            return False
    current = _current_watcher()
    if current is not None:
        current.sync_status_tracking(job)
    return True


class Watcher:
    """Watches many jobs until they are final, with a bounded number of threads.

    Use :func:`default_watcher`; build your own only in tests, and :meth:`close` it.

    Args:
        io_threads: Bound on the threads that poll statuses and fetch results.
        idle_shutdown: Seconds without work after which each thread exits.
        poll_policy: How jobs without a stream, or queued jobs with status callbacks, are
            polled.
        safety_policy: How jobs with an open stream are polled anyway, in case the stream
            stays silent.
        batch_window: Polls due within this many seconds of each other go out together.

    Raises:
        ValueError: A setting is not positive.
    """

    def __init__(
        self,
        *,
        io_threads: int = DEFAULT_IO_THREADS,
        idle_shutdown: float = DEFAULT_IDLE_SHUTDOWN,
        poll_policy: PollPolicy = WATCH_POLL_POLICY,
        safety_policy: PollPolicy = SAFETY_POLL_POLICY,
        batch_window: float = DEFAULT_BATCH_WINDOW,
    ) -> None:
        for name, value in (
            ("io_threads", io_threads),
            ("idle_shutdown", idle_shutdown),
            ("batch_window", batch_window),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.idle_shutdown = float(idle_shutdown)
        self.poll_policy = poll_policy
        self.safety_policy = safety_policy
        self.batch_window = float(batch_window)
        self._io_threads = int(io_threads)
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[RuntimeJob, _Watch] = {}
        self._ready: deque[_Watch] = deque()
        self._timers: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._io = WorkerPool(IO_THREAD_PREFIX, self._io_threads, self.idle_shutdown)
        self._callbacks = WorkerPool(CALLBACK_THREAD_PREFIX, 1, self.idle_shutdown)

    # -- public API -----------------------------------------------------------------------

    def future(self, job: RuntimeJob) -> Future[Any]:
        """A new future that resolves as ``job.result()`` would: a value or its exception.

        Cancelling the future does not cancel the job: it only stops this future waiting.

        Args:
            job: The job.

        Returns:
            A :class:`concurrent.futures.Future`, pending until the job is final.
        """
        future: Future[Any] = Future()
        state = core_of(job).state
        with state.lock:
            if state.has_results and state.status is JobStatus.DONE:
                future.set_result(state.results)
                return future
        hooks_for(job)
        with self._cond:
            self._watch(job).futures.append(future)
        future.add_done_callback(partial(self._future_done, job))
        return future

    def add_done_callback(self, job: RuntimeJob, callback: DoneCallback) -> None:
        """Call ``callback(job)`` once, on the callback thread, when ``job`` is final.

        Args:
            job: The job.
            callback: Called with the job; what it raises is logged.
        """
        if core_of(job).state.final:
            self.call_soon(partial(_run_done_callback, callback, job))
            return
        hooks_for(job)
        with self._cond:
            self._watch(job).done_callbacks.append(callback)

    def sync_status_tracking(self, job: RuntimeJob) -> None:
        """Poll ``job``'s status while it has status callbacks and is not final.

        Args:
            job: The job whose status callbacks changed.
        """
        core = core_of(job)
        hooks = _hooks(core)
        wants = bool(hooks and hooks.status_callbacks) and not core.state.final
        drop: _Watch | None = None
        with self._cond:
            entry = self._entries.get(job)
            if entry is None and wants:
                entry = self._watch(job)
            if entry is None:
                return
            was = entry.track_status
            entry.track_status = wants
            if wants and not was and entry.started:
                self._check_locked(entry)
            if not entry.wanted():
                drop = self._drop_locked(entry)
        if drop is not None:
            _detach(drop)

    def job_final(self, job: RuntimeJob) -> None:
        """Told by the job's hooks: ``job`` became final; resolve what waits on it soon.

        Args:
            job: The job.
        """
        with self._cond:
            entry = self._entries.get(job)
            if entry is not None:
                self._check_locked(entry)

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the callback thread, after the tasks queued before it.

        Args:
            task: A callable that does not raise (wrap user code).
        """
        try:
            self._callbacks.submit(task)
        except RuntimeError as err:  # no new thread at interpreter shutdown
            logger.debug("Dropped a job callback: %s", err)

    @property
    def watched_count(self) -> int:
        """How many jobs are being watched."""
        with self._cond:
            return len(self._entries)

    @property
    def running(self) -> bool:
        """Whether the scheduler thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching: cancel the streams and stop the threads (pending futures stay).

        Args:
            timeout: Bound, in seconds, on joining the threads.
        """
        with self._cond:
            self._closed = True
            entries = list(self._entries.values())
            for entry in entries:
                entry.removed = True
            self._entries.clear()
            self._ready.clear()
            self._timers.clear()
            thread = self._thread
            self._cond.notify_all()
        for entry in entries:
            _detach(entry)
        self._io.shutdown(cancel_pending=True)
        self._callbacks.shutdown(cancel_pending=False)
        deadline = clock.monotonic() + max(0.0, timeout)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._io.join(max(0.0, deadline - clock.monotonic()))
        self._callbacks.join(max(0.0, deadline - clock.monotonic()))

    def __repr__(self) -> str:
        return f"<Watcher {self.watched_count} jobs, running={self.running}>"

    def _policy(self, job: RuntimeJob) -> PollPolicy:
        """The client's polling pace when it names one (the platform dialect's, never faster
        than its 0.5 s), else the watcher's."""
        api = job._api_client
        if isinstance(api, PollingApi):
            return api.poll_policy_for(job._session_id)
        return self.poll_policy

    # -- bookkeeping (the condition held) -------------------------------------------------

    def _watch(self, job: RuntimeJob) -> _Watch:
        entry = self._entries.get(job)
        if entry is None:
            entry = _Watch(job, self._policy(job).intervals(), self.safety_policy.intervals())
            self._entries[job] = entry
            if not self._closed:
                self._ready.append(entry)
                entry.queued = True
                self._ensure_thread()
                self._cond.notify()
        return entry

    def _check_locked(self, entry: _Watch) -> None:
        if entry.removed:
            return
        if entry.busy:
            entry.recheck = True
        elif not entry.queued:
            entry.queued = True
            self._ready.append(entry)
            self._cond.notify()

    def _schedule_locked(self, entry: _Watch, delay: float) -> None:
        entry.next_poll = clock.monotonic() + delay
        heapq.heappush(self._timers, (entry.next_poll, next(self._order), entry))
        self._cond.notify()

    def _drop_locked(self, entry: _Watch) -> _Watch:
        entry.removed = True
        if self._entries.get(entry.job) is entry:
            del self._entries[entry.job]
            if not self._entries:
                self._cond.notify()  # the scheduler may start counting its idle time
        return entry

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            thread = threading.Thread(target=self._run, name=WATCH_THREAD_NAME, daemon=True)
            self._thread = thread
            thread.start()

    # -- the scheduler thread -------------------------------------------------------------

    def _run(self) -> None:
        crashed = True
        try:
            while True:
                work = self._next_work()
                if work is None:
                    crashed = False
                    return
                starts, due = work
                for entry in starts:
                    self._start(entry)
                self._submit(due)
        except BaseException:  # pragma: no cover - a bug: log it, never leave it recorded
            logger.error("The job watcher stopped on an unexpected error.", exc_info=True)
            raise
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None
                    # Work that came while this thread was deciding to exit gets a new one.
                    if self._entries and not crashed:
                        self._ensure_thread()

    def _next_work(self) -> tuple[list[_Watch], list[_Watch]] | None:
        idle_since: float | None = None
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = clock.monotonic()
                starts: list[_Watch] = []
                due: list[_Watch] = []
                while self._ready:
                    entry = self._ready.popleft()
                    entry.queued = False
                    if entry.removed or entry.busy:
                        continue
                    if not entry.started:
                        entry.started = True
                        starts.append(entry)
                    else:
                        entry.busy = True
                        due.append(entry)
                timers = self._timers
                horizon = now + self.batch_window
                while timers and timers[0][0] <= horizon:
                    when, _, entry = heapq.heappop(timers)
                    if entry.removed or entry.busy or entry.next_poll != when:
                        continue  # stale: rescheduled, already in work, or gone
                    entry.busy = True
                    due.append(entry)
                if starts or due:
                    return starts, due
                if not self._entries:
                    idle_since = now if idle_since is None else idle_since
                    left = idle_since + self.idle_shutdown - now
                    if left <= 0:
                        return None
                    clock.wait_condition(self._cond, left)
                    continue
                idle_since = None
                if timers:
                    clock.wait_condition(self._cond, timers[0][0] - now)
                else:
                    self._cond.wait()  # no timer: only new work (a notify) wakes it

    def _start(self, entry: _Watch) -> None:
        """Join the job's stream, or arrange polls (scheduler thread, no lock held)."""
        state = entry.core.state
        listener: _WatchListener | None = None
        if not state.final:
            listener = _WatchListener(self, entry)
            entry.listener = listener
            if not entry.core.stream.attach(listener, replay=False, reopen=False):
                listener = None  # no stream (a client that cannot, a failed one): poll
        with self._cond:
            entry.listener = listener
            detach = entry.removed
            if not entry.removed:
                if listener is None or entry.track_status or state.final:
                    self._check_locked(entry)  # poll (or resolve) now
                else:
                    self._schedule_locked(entry, entry.safety.next())
        if detach:
            _detach(entry)

    def _submit(self, due: list[_Watch]) -> None:
        if not due:
            return
        size = min(_MAX_BATCH, max(1, math.ceil(len(due) / self._io_threads)))
        for start in range(0, len(due), size):
            if not self._io.submit(partial(self._service, due[start : start + size])):
                with self._cond:  # closed meanwhile
                    for entry in due[start : start + size]:
                        entry.busy = False

    # -- the network threads --------------------------------------------------------------

    def _service(self, batch: list[_Watch]) -> None:
        """Poll each job of ``batch`` and resolve those that are final (an io thread)."""
        for entry in batch:
            try:
                self._service_one(entry)
            except Exception:  # a bug: log it and keep the entry alive
                logger.error("Unexpected error watching job %s", entry.job.job_id(), exc_info=True)
                with self._cond:
                    entry.busy = False
                    if not entry.removed:
                        self._schedule_locked(entry, entry.intervals.next())

    def _service_one(self, entry: _Watch) -> None:
        job = entry.job
        if entry.removed:
            return
        try:
            status = job.status()
        except Exception as err:
            self._poll_failed(entry, err)
            return
        entry.errors = 0
        if status in JOB_FINAL_STATES:
            self._finish(entry)
            return
        with self._cond:
            entry.busy = False
            if entry.removed:
                return
            if entry.recheck:
                entry.recheck = False
                self._check_locked(entry)
            elif entry.streaming and (not entry.track_status or status is JobStatus.RUNNING):
                # The stream tells the rest (the final status); poll only in case it is mute.
                self._schedule_locked(entry, entry.safety.next())
            else:
                self._schedule_locked(entry, entry.intervals.next())

    def _poll_failed(self, entry: _Watch, err: Exception) -> None:
        job_id = entry.job.job_id()
        if not _retryable(err):
            logger.warning("Stopped watching job %s: its status cannot be fetched: %s", job_id, err)
            self._finish(entry, failure=err)
            return
        entry.errors += 1
        if entry.errors == 1:
            logger.warning("Cannot fetch the status of job %s (retrying): %s", job_id, err)
        else:
            logger.debug("Cannot fetch the status of job %s (retrying): %r", job_id, err)
        hint = err.retry_after if isinstance(err, RequestsApiError) else None
        with self._cond:
            entry.busy = False
            if not entry.removed:
                entry.recheck = False
                self._schedule_locked(entry, entry.intervals.next(hint))

    def _finish(self, entry: _Watch, failure: Exception | None = None) -> None:
        """Stop watching ``entry``, resolve its futures and queue its done callbacks."""
        with self._cond:
            self._drop_locked(entry)
            entry.busy = False
            futures, entry.futures = entry.futures, []
            callbacks, entry.done_callbacks = entry.done_callbacks, []
        _detach(entry)
        job = entry.job
        if futures:
            pending = [f for f in futures if not f.done()]
            if pending:
                if failure is not None:
                    ok, value = False, failure
                else:
                    ok, value = _outcome(job)
                for future in pending:
                    _resolve(future, ok, value)
        for callback in callbacks:
            self.call_soon(partial(_run_done_callback, callback, job))

    # -- stream and future events (any thread) --------------------------------------------

    def _stream_ended(self, entry: _Watch, end: StreamEnd) -> None:
        with self._cond:
            if end is StreamEnd.CANCELLED:
                return
            if end is StreamEnd.FAILED:
                entry.intervals = self._policy(entry.job).intervals()
            self._check_locked(entry)

    def _future_done(self, job: RuntimeJob, future: Future[Any]) -> None:
        if not future.cancelled():
            return
        drop: _Watch | None = None
        with self._cond:
            entry = self._entries.get(job)
            if entry is None or future not in entry.futures:
                return
            entry.futures.remove(future)
            if not entry.wanted():
                drop = self._drop_locked(entry)
        if drop is not None:
            _detach(drop)


class _Watch:
    """One watched job: who waits for it, its stream, and its poll schedule.

    Every field is guarded by the watcher's condition, except ``listener`` (written by the
    scheduler) and ``errors`` (by the one io task that owns the entry while ``busy``).
    """

    def __init__(self, job: RuntimeJob, intervals: PollIntervals, safety: PollIntervals) -> None:
        self.job = job
        self.core = core_of(job)
        self.intervals = intervals
        self.safety = safety
        self.futures: list[Future[Any]] = []
        self.done_callbacks: list[DoneCallback] = []
        self.track_status = False
        self.listener: _WatchListener | None = None
        self.started = False
        self.queued = False
        self.busy = False
        self.recheck = False
        self.removed = False
        self.next_poll = 0.0
        self.errors = 0

    @property
    def streaming(self) -> bool:
        listener = self.listener
        return listener is not None and not listener.ended

    def wanted(self) -> bool:
        return bool(self.futures or self.done_callbacks or self.track_status)


class _WatchListener:
    """The watcher's consumer of one job's stream: tells the watcher the job ended.

    It runs on the thread that read the frame (``delivered = False``): quick, no user code.
    The job's stream has recorded the final status and result in the job's state already.
    """

    delivered = False

    def __init__(self, watcher: Watcher, entry: _Watch) -> None:
        self._watcher = watcher
        self._entry = entry
        self.ended = False

    def on_frame(self, frame: StreamFrame) -> None:
        if frame.final:
            # The state has DONE and the result payload (no download needed), or the next
            # status poll (now) learns a failure or a cancellation.
            self._watcher._stream_ended(self._entry, StreamEnd.COMPLETED)

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.ended = True
        if end is StreamEnd.FAILED:
            logger.debug("Watching job %s by polling: %s", self._entry.job.job_id(), error)
        self._watcher._stream_ended(self._entry, end)


# -- helpers -------------------------------------------------------------------------------


def _outcome(job: RuntimeJob) -> tuple[bool, Any]:
    """What ``job.result()`` returns or raises, for a final job."""
    try:
        return True, job.result()
    except Exception as err:
        return False, err


def _resolve(future: Future[Any], ok: bool, value: Any) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _retryable(err: Exception) -> bool:
    """Whether a failed status poll may succeed later (network trouble, 5xx, 429).

    A status poll is a read: besides what the transport calls retryable, any 5xx and the
    4xx that say "later" (408, 425) are worth another poll.
    """
    if isinstance(err, IBMNotAuthorizedError) or not isinstance(err, RequestsApiError):
        return False
    code = err.status_code
    return err.retryable or not 400 <= code < 500 or code in _RETRYABLE_STATUSES


def _detach(entry: _Watch) -> None:
    listener = entry.listener
    if listener is not None:
        entry.core.stream.detach(listener)


def _run_status_callback(
    callback: StatusCallback, job_id: str, status: JobStatus, queue_position: int | None
) -> None:
    call_guarded(
        lambda: callback(job_id, status, queue_position), job_id=job_id, what="in a status callback"
    )


def _run_done_callback(callback: DoneCallback, job: RuntimeJob) -> None:
    call_guarded(lambda: callback(job), job_id=job.job_id(), what="in a done callback")


# -- the process-wide watcher ----------------------------------------------------------------


def _close_watcher(watcher: Watcher | None) -> None:
    if watcher is not None:
        watcher.close(timeout=_EXIT_CLOSE_TIMEOUT)


_default: ProcessSingleton[Watcher] = ProcessSingleton(
    Watcher, is_closed=lambda watcher: watcher._closed, at_exit=_close_watcher
)


def default_watcher() -> Watcher:
    """The process's job watcher, created on first use (thread-safe).

    Returns:
        The shared :class:`Watcher`.
    """
    return _default.get()


def _current_watcher() -> Watcher | None:
    return _default.current()


__all__ = [
    "CALLBACK_THREAD_PREFIX",
    "IO_THREAD_PREFIX",
    "SAFETY_POLL_POLICY",
    "WATCH_POLL_POLICY",
    "WATCH_THREAD_NAME",
    "DoneCallback",
    "JobHooks",
    "StatusCallback",
    "Watcher",
    "add_status_callback",
    "default_watcher",
    "hooks_for",
    "remove_status_callback",
]
