"""The core of a job below its façade: one state, one stream, one way to wait.

:class:`JobCore` is what :class:`~runtime_job.job.RuntimeJob` stands on, and what the
job's views (:mod:`runtime_job.futures`, :mod:`runtime_job.aio`, :mod:`runtime_job.monitor`)
use instead of the façade's privates: the job's :class:`~runtime_job._job_state.JobState`,
its client, its decoders, and its :class:`JobStream`.

:class:`JobStream` owns the job's **one** stream subscription and fans it out to every
consumer: the user's result callback, the completion watcher of futures, asynchronous
iterators, and threads waiting in ``result()``. Adding a consumer never opens a second
websocket; the subscription is cancelled when the last consumer leaves (unless the job's
final frame came: the server then closes it).

Which thread runs what:

- The stream's listener runs on whichever thread reads the socket (the hub's reactor, or a
  thread waiting in ``result()`` that leads it): it only records the frame (the final
  status and payload go straight into the state, so a waiter learns the end with no thread
  hand-off) and queues it for the consumers.
- Consumers that run user code (result callbacks, async iterators' decoding) get the
  frames in order, one at a time per job, on a ``runtime-job-deliver-N`` thread. Once the
  job is final, a thread that waits in ``result()`` without a timeout and read the final
  frame itself runs what is left on its own thread (no hand-off); with a timeout it never
  runs user code, so the timeout holds whatever the callbacks do.
- A callback that calls ``job.result()`` gets the result as soon as the job is final: it
  does not wait for its own delivery to finish.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._callbacks import CallbackErrors, call_guarded, report_failure
from ._job_state import JobState
from ._pool import WorkerPool
from ._process import ProcessSingleton
from .api.protocol import (
    ExternalResultApi,
    JobApi,
    StreamEnd,
    StreamFrame,
    StreamingApi,
    StreamSubscription,
)
from .exceptions import IBMRuntimeError, ResultDecodingError, RuntimeJobTimeoutError
from .status import JobStatus, error_message_for, job_status_from_api
from .timing import Deadline, PollPolicy, clock

if TYPE_CHECKING:
    from .api.models import JobResponse
    from .api.models import JobState as WireJobState
    from .decoders import ResultDecoder

logger = logging.getLogger("runtime_job.job")

SILENT_STREAM_POLL_POLICY: Final = PollPolicy(initial=10.0, factor=1.5, max_interval=60.0)
"""While a job's stream works, its status is still asked at this pace, in case the stream is
silent (the one definition: ``result()``, the futures watcher and the CLI use it)."""
DRAIN_SECONDS: Final = 10.0
"""After the job is final, how long ``result()`` lets the callbacks get their last messages."""
DELIVERY_THREAD_PREFIX: Final = "runtime-job-deliver"
"""Prefix of the threads that run stream consumers (result callbacks, async iterators)."""
DELIVERY_THREADS: Final = 3
"""At most this many delivery threads per process (each job's consumers run one at a time)."""
_DELIVERY_IDLE = 1.0
_DELIVERY_BATCH = 64
"""Items one job delivers per turn before letting other jobs go first."""
_HISTORY_MAX_CHARS = 4 * 1024 * 1024
"""The interim frames of the open subscription are kept (for consumers that join late and
want them from the job's start) up to this many characters; beyond, they are dropped."""
_EXTERNAL_REF_MAX_CHARS = 64 * 1024
"""A result text longer than this is a result, never a ``{"url": ...}`` reference."""


class StreamConsumer(Protocol):
    """Something that gets a job's stream frames from its :class:`JobStream`.

    ``delivered = True``: its calls run on a delivery thread, in order and one at a time
    (it may run user code and block). ``delivered = False``: they run on the thread that
    read the frame, which may be the reactor: quick, never blocking, no user code.
    """

    delivered: bool

    def on_frame(self, frame: StreamFrame) -> None:
        """A frame (interim, or the final one)."""
        ...

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        """The subscription ended (once, last)."""
        ...


class Holder:
    """A consumer that only keeps the stream open (a thread waiting for the job)."""

    delivered = False

    def on_frame(self, frame: StreamFrame) -> None:
        """Nothing: the state already has what the waiter needs."""

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        """Nothing."""


class CallbackConsumer:
    """Decodes each message and hands it to a user's result callback (a delivery thread).

    Args:
        core: The job.
        callback: ``callback(job_id, result)``.
        decoder: Decoder of interim results (default: the job's).
        policy: What a raising callback (or an undecodable message) does.
    """

    delivered = True

    def __init__(
        self,
        core: JobCore,
        callback: Callable[[str, Any], object],
        decoder: type[ResultDecoder] | None,
        policy: CallbackErrors,
    ) -> None:
        self._core = core
        self.callback = callback
        self._decoder = decoder or core.interim_decoder
        self._policy = policy
        self.ended = False

    def on_frame(self, frame: StreamFrame) -> None:
        core = self._core
        if frame.final:
            if (frame.status or "").upper() != "COMPLETED" or not frame.payload:
                return
            what = "decoding the final result"
            decoder = core.final_decoder
        else:
            what = "decoding an interim result"
            decoder = self._decoder
        try:
            value = core.decode_payload(decoder, frame.payload)
        except Exception as err:  # a bad message must not stop the stream
            self._failed(err, what)
            return
        if frame.final:
            with core.state.lock:
                if not core.state.has_results:
                    core.state.set_result(value)  # before the callback: it may ask result()
        call_guarded(
            self.callback,
            core.job_id,
            value,
            job_id=core.job_id,
            what="in the result callback",
            policy=self._policy,
            on_raise=self._raise,
        )

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.ended = True

    def _failed(self, err: Exception, what: str) -> None:
        report_failure(
            err, job_id=self._core.job_id, what=what, policy=self._policy, on_raise=self._raise
        )

    def _raise(self, err: Exception) -> None:
        self._core.state.record_callback_error(err)
        self._core.stream.detach(self)


class JobCore:
    """One job below its façade: identity, client, state, decoders and stream.

    Args:
        job_id: The job's id.
        api: The client.
        interim_decoder: The job's decoder of interim results.
        final_decoder: The job's decoder of the final result.

    Nothing below the façade points back up to it, nor the stream to the core: a job that
    no one holds any more is freed at once, not left to the cycle collector.
    """

    def __init__(
        self,
        job_id: str,
        api: JobApi,
        interim_decoder: type[ResultDecoder],
        final_decoder: type[ResultDecoder],
    ) -> None:
        self.job_id = job_id
        self.api = api
        self.interim_decoder = interim_decoder
        self.final_decoder = final_decoder
        self.state = JobState(job_id)
        self.stream = JobStream(job_id, api, self.state)
        self.known: dict[str, Any] = {}
        """What the façade knows of the job without a request (``backend``, ``created``)."""
        self.hooks: Any = None
        """Per-job data of :mod:`runtime_job.futures` (status callbacks), made on first use."""

    # -- status --------------------------------------------------------------------------

    def fetch(
        self, deadline: Deadline | None = None, *, exclude_params: bool | None = None
    ) -> JobResponse:
        """``GET /jobs/{id}``, validated once (``exclude_params``: ``None`` lets the client
        choose, ``False`` asks for the inputs)."""
        return self.api.fetch_job(self.job_id, exclude_params=exclude_params, deadline=deadline)

    def refresh_status(self, deadline: Deadline | None = None) -> None:
        """Ask the server for the status unless it is final, and record it.

        Raises:
            IBMError: The server sent a missing or unknown status.
            RequestsApiError: The request failed.
        """
        state = self.state
        if state.final:
            return
        ticket = state.begin_refresh()
        wire = self.fetch(deadline).state
        raw_status = wire.status if wire else None
        reason = wire.reason if wire else None
        with state.lock:
            if state.is_stale(ticket):
                return  # another thread's newer answer is already recorded
            if reason:
                state.reason = reason.upper()
            new_status = job_status_from_api(raw_status, state.reason)
        error_message = None
        if new_status is JobStatus.ERROR:
            raw = self.resolve_external(self.api.job_results(self.job_id, deadline=deadline))
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            error_message = error_message_for(self.job_id, str(raw_status), state.reason, text)
        state.set_status(
            new_status,
            error_message=error_message,
            queue_position=_queue_position(wire),
            ticket=ticket,
        )

    # -- waiting -------------------------------------------------------------------------

    def wait_final(
        self, deadline: Deadline, timeout: float | None, poll_policy: PollPolicy
    ) -> None:
        """Wait until the job is final, then let its callbacks get their last messages.

        The one completion path (``result()``, ``wait_for_final_state()``, futures, the
        CLI): the job's stream tells the end when one works (one is opened if the client
        can stream); otherwise, and around a reconnecting stream, the status is polled with
        ``poll_policy``; a working stream is polled at :data:`SILENT_STREAM_POLL_POLICY`.

        Args:
            deadline: When to give up.
            timeout: The caller's timeout (for the error message).
            poll_policy: How to poll without a working stream.

        Raises:
            RuntimeJobTimeoutError: The deadline passed first.
        """
        state = self.state
        stream = self.stream
        helper = deadline.remaining() is None and not stream.delivering()
        if not state.final:
            self.refresh_status(_bound(deadline))
        try:
            if not state.final:
                holder = Holder()
                stream.attach(holder, replay=False, reopen=False)
                try:
                    self._wait_loop(deadline, timeout, poll_policy, helper)
                finally:
                    stream.detach(holder)
        except BaseException:
            stream.unhost()  # what this thread was left to deliver goes to a delivery thread
            raise
        stream.settle(deadline, helper)

    def _wait_loop(
        self, deadline: Deadline, timeout: float | None, poll_policy: PollPolicy, helper: bool
    ) -> None:
        state = self.state
        stream = self.stream
        intervals = poll_policy.intervals()
        safety = SILENT_STREAM_POLL_POLICY.intervals()
        safety_at = clock.monotonic() + safety.next()

        def news() -> bool:
            return state.final or state.stream_final or not stream.works()

        while not state.final:
            if state.stream_final:
                with state.lock:
                    state.stream_final = False  # the stream says the job ended: ask now
            elif stream.works():
                stream.wait(news, deadline.cap(max(0.0, safety_at - clock.monotonic())), helper)
                if state.final:
                    return
                if not news() and clock.monotonic() < safety_at:
                    _check_deadline(deadline, timeout)
                    continue
                if not state.stream_final and stream.works():
                    safety_at = clock.monotonic() + safety.next()  # the silent-stream poll
            else:
                state.wait(
                    lambda: state.final or state.stream_final, deadline.cap(intervals.next())
                )
                if state.final:
                    return
            _check_deadline(deadline, timeout)
            self.refresh_status(_bound(deadline))

    # -- results -------------------------------------------------------------------------

    def resolve_external(self, raw: str | bytes, deadline: Deadline | None = None) -> str | bytes:
        """Download a result stored elsewhere: a small JSON object with a ``url`` key."""
        if not raw or len(raw) > _EXTERNAL_REF_MAX_CHARS or raw.lstrip()[:1] not in ("{", b"{"):
            return raw
        if isinstance(raw, str):
            if "url" not in raw and "\\u" not in raw:
                return raw  # no key can read "url": skip parsing the document twice
        elif b"url" not in raw and b"\\u" not in raw:
            return raw
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(value, dict) or "url" not in value:
            return raw
        api = self.api
        if not isinstance(api, ExternalResultApi):
            raise IBMRuntimeError(
                f"The result of job {self.job_id} is stored externally, and "
                f"{type(api).__name__} cannot download it."
            )
        return api.external_result(str(value["url"]))

    def decode(self, decoder: type[ResultDecoder], raw: str | bytes) -> Any:
        """``decoder.decode(raw)``; a failure names the job.

        Raises:
            ResultDecodingError: It could not be decoded.
        """
        try:
            return decoder.decode(raw)
        except ResultDecodingError as err:
            raise ResultDecodingError(
                f"Could not decode a result of job {self.job_id}: {err.message}",
                job_id=self.job_id,
                excerpt=err.excerpt,
            ) from err

    def decode_payload(self, decoder: type[ResultDecoder], raw: str | bytes) -> Any:
        """Download (if external) and decode a streamed payload."""
        return self.decode(decoder, self.resolve_external(raw))

    def __repr__(self) -> str:
        return f"<JobCore {self.job_id}>"


class _Slot:
    """A consumer attached to a :class:`JobStream`; ``live`` until it is detached."""

    __slots__ = ("consumer", "live")

    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.live = True


class _Listener:
    """The hub's listener of one subscription (inline: it only records and queues).

    Its calls go straight to the stream's methods, with the listener as first argument (a
    ``partial``: no Python frame of its own on the path of the final frame).
    """

    inline = True

    def __init__(self, stream: JobStream) -> None:
        self.on_frame: Callable[[StreamFrame], None] = partial(stream._on_frame, self)
        self.on_end: Callable[[StreamEnd, BaseException | None], None] = partial(
            stream._on_end, self
        )

    def ended(self) -> None:
        """Let go of the stream once the subscription has ended (its ``on_end`` is the last
        call): the partials refer back to this listener, a cycle otherwise."""
        self.on_frame = self.on_end = _ignore


def _ignore(*args: object) -> None:
    """What an ended listener does with a call (it gets none)."""


class _EndItem:
    __slots__ = ("end", "error")

    def __init__(self, end: StreamEnd, error: BaseException | None) -> None:
        self.end = end
        self.error = error


_Item = tuple[_Slot, StreamFrame | _EndItem]
"""A queued delivery: the consumer's slot and what it gets."""


class JobStream:
    """The one stream subscription of a job, shared by all its consumers.

    Guarded by the job state's lock. See the module docstring for the threads.

    Args:
        job_id: The job's id.
        api: The job's client.
        state: The job's state.
    """

    def __init__(self, job_id: str, api: JobApi, state: JobState) -> None:
        self._job_id = job_id
        self._api = api
        self._state = state
        self._lock = state.lock
        self._idle = threading.Condition(self._lock)
        self._sub: StreamSubscription | None = None
        self._listener: _Listener | None = None
        self.failed = False
        """The last subscription ran out of reconnects: waiters poll instead of reopening."""
        self.final_seen = False
        """The open subscription delivered the job's final frame (it ends by itself)."""
        self._slots: list[_Slot] = []
        self._history: list[StreamFrame] = []
        self._history_chars = 0
        self._history_whole = True
        self._queue: deque[_Item] = deque()
        self._scheduled = False
        self._runner: int | None = None
        self._host: int | None = None
        self._helpers: set[int] = set()
        self._waiting: list[int] = []  # the threads in wait()
        self._idle_waiters = 0

    # -- consumers -----------------------------------------------------------------------

    @property
    def can_stream(self) -> bool:
        """Whether the job's client can open streams."""
        return isinstance(self._api, StreamingApi)

    def attach(self, consumer: StreamConsumer, *, replay: bool, reopen: bool = True) -> bool:
        """Add ``consumer``, opening the subscription if none is open.

        Args:
            consumer: The consumer.
            replay: A delivered consumer first gets the interim frames the open
                subscription already had (from the job's start).
            reopen: Open a subscription even if the last one failed for good.

        Returns:
            Whether the consumer is attached (``False``: the client cannot stream, the last
            stream failed and ``reopen`` is false, or opening failed).
        """
        api = self._api
        if not isinstance(api, StreamingApi):
            return False
        submit = False
        opening: _Listener | None = None
        with self._lock:
            if any(slot.consumer is consumer for slot in self._slots):
                return True
            slot = _Slot(consumer)
            if self._listener is None:
                if self.failed and not reopen:
                    return False
                opening = self._listener = _Listener(self)
                self._sub = None
                self.final_seen = False
                self._history.clear()
                self._history_chars = 0
                self._history_whole = True
            elif replay and consumer.delivered and (self._history or not self._history_whole):
                if not self._history_whole:
                    logger.warning(
                        "Job %s: the interim results published before this consumer joined "
                        "are not replayed (more than %d characters).",
                        self._job_id,
                        _HISTORY_MAX_CHARS,
                    )
                for frame in self._history:
                    self._queue.append((slot, frame))
                submit = self._kick()
            self._slots.append(slot)
        if submit:
            self._submit()
        if opening is not None:
            return self._open(api, opening, slot)
        return True

    def _open(self, api: StreamingApi, listener: _Listener, slot: _Slot) -> bool:
        """Open the subscription of ``listener`` (no lock held: the hub may connect here)."""
        try:
            sub = api.open_stream(self._job_id, listener)
        except Exception as err:  # e.g. the hub is closed: poll instead
            logger.debug("Cannot stream job %s: %r", self._job_id, err)
            with self._lock:
                if self._listener is listener:
                    self._listener = None
                    slot.live = False
                    if slot in self._slots:
                        self._slots.remove(slot)
                    return False
            return True  # it was ended meanwhile: the consumer was told
        with self._lock:
            current = self._listener is listener
            if current:
                self._sub = sub
        if not current:  # ended (told) or cancelled by the last consumer while opening
            sub.cancel()
        return True

    def detach(self, consumer: StreamConsumer) -> bool:
        """Remove ``consumer`` (nothing more reaches it); the last one out cancels the stream.

        Returns:
            Whether it was attached.
        """
        cancel: StreamSubscription | None = None
        with self._lock:
            for slot in self._slots:
                if slot.consumer is consumer:
                    break
            else:
                return False
            slot.live = False
            self._slots.remove(slot)
            self._notify_idle()  # a thread in settle() may have waited for this one
            if not self._slots and self._listener is not None and not self.final_seen:
                cancel, self._sub, self._listener = self._sub, None, None
                self._history.clear()
                self._history_chars = 0
        if cancel is not None and cancel.active:
            cancel.cancel()
        return True

    def attached(self, consumer: StreamConsumer) -> bool:
        """Whether ``consumer`` is attached to the open subscription."""
        with self._lock:
            return any(slot.consumer is consumer for slot in self._slots)

    def consumers(self, kind: type[Any]) -> list[Any]:
        """The attached consumers that are instances of ``kind``."""
        with self._lock:
            return [s.consumer for s in self._slots if isinstance(s.consumer, kind)]

    # -- the stream's health -------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether a subscription is open."""
        sub = self._sub
        return self._listener is not None and sub is not None and sub.active

    def works(self) -> bool:
        """Whether a subscription is open and not reconnecting (its end tells the job's)."""
        sub = self._sub
        return (
            self._listener is not None and sub is not None and sub.active and (not sub.reconnecting)
        )

    def wait(self, until: Callable[[], bool], timeout: float, helper: bool = False) -> bool:
        """Wait for ``until()`` on the open subscription (the hub may let this thread lead).

        Args:
            until: Cheap and lock-free.
            timeout: Seconds at most.
            helper: This thread may run the job's last deliveries itself (it waits
                without a timeout): see the module docstring.

        Returns:
            ``until()``.
        """
        sub = self._sub
        if sub is None:
            return self._state.wait(until, timeout)
        me = threading.get_ident()
        with self._lock:
            if not self._waiting:  # a waker only while threads wait: no state-stream cycle
                self._state.add_waker(self._wake_waiters)
            self._waiting.append(me)
            if helper:
                self._helpers.add(me)
        try:
            return sub.wait(until, timeout)
        finally:
            with self._lock:
                self._waiting.remove(me)
                self._helpers.discard(me)
                if not self._waiting:
                    self._state.remove_waker(self._wake_waiters)

    def _wake_waiters(self) -> None:
        waiting = self._waiting
        if waiting and waiting != [threading.get_ident()]:
            sub = self._sub  # a thread other than this one waits: it checks again
            if sub is not None:
                sub.wake()

    # -- deliveries ----------------------------------------------------------------------

    def delivering(self) -> bool:
        """Whether the calling thread is running this job's consumers (e.g. a callback)."""
        return self._runner == threading.get_ident()

    def pending(self) -> bool:
        """Whether a consumer with user code may still get a message (lock held)."""
        if self._queue or self._runner is not None or self._scheduled:
            return True
        return (
            self._listener is not None
            and not self.final_seen
            and any(slot.consumer.delivered for slot in self._slots)
        )

    def unhost(self) -> None:
        """Hand what this thread was left to deliver to a delivery thread."""
        with self._lock:
            if self._host != threading.get_ident():
                return
            self._host = None
        self._submit()

    def settle(self, deadline: Deadline, helper: bool) -> None:
        """Let the consumers get their last messages (the job is final), within bounds.

        A helper runs what it was left (see the module docstring); a thread running this
        job's consumers (a callback calling ``result()``) does not wait for itself.
        """
        me = threading.get_ident()
        if helper and self._host == me:
            self._drain(me)
        if self._runner == me:
            return
        with self._lock:
            if not self.pending():
                return
            bound = deadline.cap(DRAIN_SECONDS)
            end = Deadline(bound)
            while self.pending():
                left = end.remaining()
                if left is not None and left <= 0:
                    logger.debug(
                        "The callbacks of job %s have not had their last message after the "
                        "job ended.",
                        self._job_id,
                    )
                    return
                self._wait_idle(left)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until every message queued so far was delivered (e.g. in tests).

        Returns:
            Whether nothing is queued or running any more.
        """
        end = Deadline(timeout)
        with self._lock:
            while self._queue or self._runner is not None or self._scheduled:
                left = end.remaining()
                if left is not None and left <= 0:
                    return False
                self._wait_idle(left)
            return True

    def _wait_idle(self, timeout: float | None) -> None:
        """Wait for a change of the deliveries (lock held)."""
        self._idle_waiters += 1
        try:
            clock.wait_condition(self._idle, timeout)
        finally:
            self._idle_waiters -= 1

    def _notify_idle(self) -> None:
        """Tell the threads in :meth:`_wait_idle` that the deliveries changed (lock held)."""
        if self._idle_waiters:
            self._idle.notify_all()

    # -- the listener (the thread that read the frame) -----------------------------------

    def _on_frame(self, listener: _Listener, frame: StreamFrame) -> None:
        inline: list[StreamConsumer] = []
        with self._lock:
            if listener is not self._listener:
                return
            if frame.final:
                self.final_seen = True
                self._record_final(frame)
            elif self._history_whole:
                self._history.append(frame)
                self._history_chars += len(frame.payload)
                if self._history_chars > _HISTORY_MAX_CHARS:
                    self._history.clear()
                    self._history_whole = False
            for slot in self._slots:
                consumer = slot.consumer
                if consumer.delivered:
                    self._queue.append((slot, frame))
                elif type(consumer) is not Holder:  # a Holder only keeps the stream open
                    inline.append(consumer)
            submit = self._kick() if self._queue else False
        for consumer in inline:
            consumer.on_frame(frame)
        if submit:
            self._submit()

    def _record_final(self, frame: StreamFrame) -> None:
        """The final frame: the state learns the end now, before any consumer runs."""
        state = self._state
        state.stream_final = True
        if (frame.status or "").upper() == "COMPLETED":
            if frame.payload and not state.has_results:
                state.final_payload = frame.payload
            if state.set_status(JobStatus.DONE):
                return  # set_status told the waiters
        state.notify()

    def _on_end(self, listener: _Listener, end: StreamEnd, error: BaseException | None) -> None:
        listener.ended()
        with self._lock:
            if listener is not self._listener:
                return
            self._listener = None
            self._sub = None
            if end is StreamEnd.FAILED:
                logger.debug("Stream of job %s ended without the job: %s", self._job_id, error)
                self.failed = True
            elif end is StreamEnd.COMPLETED:
                self._state.stream_final = True
            slots, self._slots = self._slots, []
            self._history.clear()
            self._history_chars = 0
            item = _EndItem(end, error)
            inline = []
            for slot in slots:
                if slot.consumer.delivered:
                    self._queue.append((slot, item))
                else:
                    inline.append(slot)
            submit = self._kick()
            self._state.notify()
            self._notify_idle()
        for slot in inline:
            slot.consumer.on_end(end, error)
        if submit:
            self._submit()

    # -- delivery ------------------------------------------------------------------------

    def _kick(self) -> bool:
        """Whether the queue needs a delivery task now (lock held)."""
        if not self._queue or self._scheduled or self._runner is not None:
            return False
        self._scheduled = True
        me = threading.get_ident()
        if self._state.final and me in self._helpers:
            self._host = me  # a thread waiting in result() read the end: it delivers
            return False
        return True

    def _submit(self) -> None:
        if not _delivery_pool().submit(self._run_delivery):  # the interpreter is exiting
            logger.debug("Job %s: messages dropped at exit.", self._job_id)
            with self._lock:
                self._queue.clear()
                self._scheduled = False
                self._notify_idle()

    def _run_delivery(self) -> None:
        self._drain(threading.get_ident(), fair=True)

    def _drain(self, me: int, fair: bool = False) -> None:
        """Deliver queued items in order, one at a time (a delivery thread, or a helper)."""
        queue = self._queue
        with self._lock:
            if self._runner is not None:
                return
            self._scheduled = False
            if self._host == me:
                self._host = None
            batch = _take(queue)
            if not batch:
                self._notify_idle()
                return
            self._runner = me
        try:
            while True:
                for slot, item in batch:
                    try:
                        if isinstance(item, _EndItem):
                            slot.consumer.on_end(item.end, item.error)
                        elif slot.live:
                            slot.consumer.on_frame(item)
                    except Exception:  # a consumer guards user code itself: this is a bug
                        logger.error("A stream consumer raised.", exc_info=True)
                with self._lock:
                    if fair and queue:  # let other jobs go first, then come back
                        self._runner = None
                        self._scheduled = True
                        self._notify_idle()
                        break
                    batch = _take(queue)
                    if not batch:
                        self._runner = None
                        self._notify_idle()
                        return
        except BaseException:
            with self._lock:
                resubmit = False
                if self._runner == me:
                    self._runner = None
                    if queue and not self._scheduled:
                        self._scheduled = resubmit = True
                self._notify_idle()
            if resubmit:
                self._submit()
            raise
        self._submit()

    def __repr__(self) -> str:
        return f"<JobStream {self._job_id} consumers={len(self._slots)} active={self.active}>"


def _take(queue: deque[_Item]) -> list[_Item]:
    """Up to :data:`_DELIVERY_BATCH` items from the front of ``queue`` (lock held)."""
    if len(queue) <= _DELIVERY_BATCH:
        batch = list(queue)
        queue.clear()
        return batch
    return [queue.popleft() for _ in range(_DELIVERY_BATCH)]


def _bound(deadline: Deadline) -> Deadline | None:
    """The deadline to give a request: ``None`` when there is no limit."""
    return None if deadline.remaining() is None else deadline


def _check_deadline(deadline: Deadline, timeout: float | None) -> None:
    if deadline.expired():
        raise RuntimeJobTimeoutError(f"Timed out waiting for job to complete after {timeout} secs.")


def _queue_position(state: WireJobState | None) -> int | None:
    """``state.queue_position`` when the server sends one (our server does, for queued jobs)."""
    value = (state.model_extra or {}).get("queue_position") if state is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _close_pool(pool: WorkerPool | None) -> None:
    if pool is not None:
        pool.shutdown(cancel_pending=False)
        pool.join(0.2)


_pools: ProcessSingleton[WorkerPool] = ProcessSingleton(
    lambda: WorkerPool(DELIVERY_THREAD_PREFIX, DELIVERY_THREADS, _DELIVERY_IDLE),
    is_closed=lambda pool: False,
    at_exit=_close_pool,
)


def _delivery_pool() -> WorkerPool:
    return _pools.get()


def core_of(job: Any) -> JobCore:
    """The core of a job's façade (what the views use instead of its privates).

    Args:
        job: A :class:`~runtime_job.job.RuntimeJob` (or anything with a core).

    Raises:
        TypeError: ``job`` is not a job.
    """
    core = getattr(job, "_core", None)
    if not isinstance(core, JobCore):
        raise TypeError(f"expected a RuntimeJob, not {type(job).__name__}")
    return core


__all__ = [
    "DELIVERY_THREAD_PREFIX",
    "SILENT_STREAM_POLL_POLICY",
    "CallbackConsumer",
    "Holder",
    "JobCore",
    "JobStream",
    "StreamConsumer",
    "core_of",
]
