"""The job handle: :class:`RuntimeJob`.

A ``RuntimeJob`` reads like a :class:`concurrent.futures.Future`: ``status()`` asks the server
until the job is final and then never again, ``result(timeout)`` waits and returns the decoded
result or raises (job failed, job cancelled, timed out), and interim results can be streamed
to a callback. It talks to the server only through the narrow interfaces of
:mod:`runtime_job.api.protocol`, never through ``requests`` or ``websocket`` directly.

Example::

    job = service.run("hello-world", inputs={"iterations": 2})
    job.stream_results(lambda job_id, msg: print(job_id, msg))
    print(job.result(timeout=60))
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from . import codec
from .api.models import JobResponse, JobState, parse
from .api.protocol import (
    ExternalResultApi,
    JobApi,
    StreamEnd,
    StreamFrame,
    StreamingApi,
    StreamSubscription,
    call_deadline,
    current_call_deadline,
)
from .decoders import ResultDecoder, resolve_decoders
from .exceptions import (
    IBMInputValueError,
    IBMRuntimeError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    ResultDecodingError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobTimeoutError,
    UserTimeoutExceededError,
)
from .status import (
    JOB_FINAL_STATES,
    RAN_TOO_LONG,
    JobStatus,
    error_message_for,
    job_status_from_api,
)
from .timing import DEFAULT_POLL_POLICY, Deadline, PollPolicy, clock

if TYPE_CHECKING:
    from .api.params import ClientParameters
    from .backend import Backend
    from .futures import DoneCallback, JobHooks, StatusCallback

logger = logging.getLogger(__name__)

ResultCallback = Callable[[str, Any], None]
"""A streaming callback: ``callback(job_id, result)``."""
CallbackErrors = Literal["log", "raise"]
"""What a raising callback does: ``"log"`` it and go on, or ``"raise"`` it from ``result()``."""
DecoderChoice = type[ResultDecoder] | tuple[type[ResultDecoder], type[ResultDecoder]]
"""A decoder class, or an ``(interim, final)`` pair of them."""

_SAFETY_POLL_SECONDS = 10.0
"""While a stream is open, the status is still asked this often, in case the stream is mute."""
_STREAM_CHECK_SECONDS = 0.5
"""While a stream is open, a waiting thread checks this often that it is not reconnecting."""
_STREAM_DRAIN_SECONDS = 10.0
"""After the job is final, how long a callback stream may take to deliver its last messages."""
_NO_SCOPE = contextlib.nullcontext()

_EXTERNAL_REF_MAX_CHARS = 64 * 1024
"""A result text longer than this is a result, never a ``{"url": ...}`` reference."""


class _JobStream:
    """Receives a job's stream frames, calls the user callback, and tells the job.

    The stream hub calls ``on_frame`` in order, one call at a time, then ``on_end`` once.
    """

    def __init__(
        self,
        job: RuntimeJob,
        callback: ResultCallback | None,
        decoder: type[ResultDecoder] | None,
        callback_errors: CallbackErrors,
    ) -> None:
        self._job = job
        self.callback = callback
        self._decoder = decoder
        self._callback_errors = callback_errors
        self.subscription: StreamSubscription | None = None
        self.ended = threading.Event()
        self.final_seen = False
        self.settled = threading.Event()
        """With a callback: set once the final frame was handled (its callback has
        returned), or the stream ended; a waiter then has every callback it can expect."""

    def on_frame(self, frame: StreamFrame) -> None:
        job = self._job
        if frame.final:
            self.final_seen = True
            try:
                job._on_final_frame(frame, self.callback, self._callback_errors)
            finally:
                if self.callback is not None:  # only a callback's waiter looks
                    self.settled.set()
            return
        if self.callback is None:
            return
        decoder = self._decoder or job._interim_result_decoder
        try:
            payload = job._resolve_external(frame.payload)
            value = job._decode(decoder, payload)
        except Exception as err:  # a bad message must not stop the stream
            job._callback_failed(err, self._callback_errors, "decoding an interim result")
            return
        job._call_callback(self.callback, value, self._callback_errors)

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        try:
            self._job._on_stream_end(self, end, error)
        finally:
            self.settled.set()

    @property
    def inline(self) -> bool:
        """Without a user callback, each call only updates the job: the hub may call it inline."""
        return self.callback is None

    @property
    def active(self) -> bool:
        sub = self.subscription
        return not self.ended.is_set() and (sub is None or sub.active)


class RuntimeJob:
    """A job of the runtime service (the reference's ``RuntimeJob``).

    Args:
        backend: The backend the job runs on, or ``None`` to look it up when asked.
        api_client: The client that talks to the service (see :mod:`runtime_job.api.protocol`).
        client_params: The connection settings of the service.
        job_id: The job's id.
        program_id: The program the job runs.
        service: The service the job belongs to (used to look up backends).
        params: The job's inputs, when known.
        creation_date: When the job was created (UTC string or datetime), when known.
        user_callback: Stream results to ``user_callback(job_id, result)`` from now on.
        result_decoder: A :class:`ResultDecoder` subclass or an ``(interim, final)`` pair.
        image: The runtime image the job runs in.
        session_id: The session the job belongs to, when known.
        tags: The job's tags, when known.
    """

    version = 1
    """The job interface version (qiskit's ``JobV1``)."""

    poll_policy: PollPolicy = DEFAULT_POLL_POLICY
    """How status is polled while waiting without a stream."""

    def __init__(
        self,
        backend: Backend | None,
        api_client: JobApi,
        client_params: ClientParameters,
        job_id: str,
        program_id: str,
        service: Any,
        params: dict[str, Any] | None = None,
        creation_date: str | datetime | None = None,
        user_callback: ResultCallback | None = None,
        result_decoder: DecoderChoice | None = None,
        image: str | None = "",
        session_id: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self._job_id = job_id
        self._backend = backend
        self._api_client = api_client
        self._client_params = client_params
        self._program_id = program_id
        self._service = service
        self._params: Any = params or {}
        self._raw_params: Any = None  # params as listed, decoded on first use of ``inputs``
        self._creation_date = creation_date
        self._image = image
        self._session_id = session_id
        self._tags = tags
        self.metadata: dict[str, Any] = {}

        self._lock = threading.RLock()
        self._condition: threading.Condition | None = None  # made on first wait or notify
        self._serving: set[int] = set()  # threads that may serve the job's stream as they wait
        self._status = JobStatus.INITIALIZING
        self._reason: str | None = None
        self._error_message: str | None = None
        self._results: Any = None
        self._has_results = False
        self._final_payload: str | None = None
        self._interim_results: Any = None
        self._final_interim_results = False
        self._stream: _JobStream | None = None
        self._stream_final = False
        self._stream_failed = False
        self._callback_error: BaseException | None = None
        self._queue_position: int | None = None
        self._hooks: JobHooks | None = None  # status callbacks and the watcher (futures.py)

        self._interim_result_decoder, self._final_result_decoder = resolve_decoders(
            result_decoder, program_id
        )
        if user_callback is not None:
            self._start_stream(user_callback, None, "log")

    @property
    def _changed(self) -> threading.Condition:
        """Signalled (under ``_lock``) when the status, the stream or the result changes."""
        condition = self._condition
        if condition is None:
            with self._lock:
                if self._condition is None:
                    self._condition = threading.Condition(self._lock)
                condition = self._condition
        return condition

    # ----------------------------------------------------------------------------- identity

    def job_id(self) -> str:
        """The job's id."""
        return self._job_id

    @property
    def program_id(self) -> str:
        """The id of the program the job runs."""
        return self._program_id

    @property
    def image(self) -> str | None:
        """The runtime image the job runs in."""
        return self._image

    @property
    def tags(self) -> list[str] | None:
        """The job's tags (as given at submission or by the listing)."""
        return self._tags

    @property
    def inputs(self) -> Any:
        """The job's inputs, fetched from the server when not known."""
        raw, self._raw_params = self._raw_params, None
        if raw is not None:
            self._params = _decode_params(raw)
        if not self._params:
            response = self._get_job()
            self._params = _decode_params(response.get("params"))
        return self._params

    @property
    def creation_date(self) -> datetime | None:
        """When the job was created, in local time (fetched when not known)."""
        if not self._creation_date:
            self._creation_date = self._get_job().get("created")
        if not self._creation_date:
            return None
        return _utc_to_local(self._creation_date)

    @property
    def session_id(self) -> str | None:
        """The session the job belongs to (fetched when not known)."""
        if not self._session_id:
            self._session_id = self._get_job().get("session_id")
        return self._session_id

    def backend(self) -> Backend | None:
        """The backend the job runs on, looked up when not known (``None`` if it has none).

        Raises:
            IBMRuntimeError: The job could not be fetched.
        """
        if not self._backend:
            try:
                raw = self._api_client.job_get(self._job_id)
            except RequestsApiError as err:
                raise IBMRuntimeError(f"Failed to get job backend: {err}") from None
            name = raw.get("backend")
            if name:
                self._backend = _lookup_backend(self._service, str(name))
        return self._backend

    def __repr__(self) -> str:
        return f"<{type(self).__name__}('{self._job_id}', '{self._program_id}')>"

    def submit(self) -> None:
        """Not supported: jobs are submitted with ``RuntimeService.run()``."""
        raise NotImplementedError(
            "job.submit() is not supported. Please use QiskitRuntimeService.run() to submit a job."
        )

    # ------------------------------------------------------------------------------- status

    def status(self) -> JobStatus:
        """The job's status, asked from the server until it is final, then cached.

        Raises:
            IBMError: The server sent a missing or unknown status.
            RequestsApiError: The request failed.
        """
        self._refresh_status()
        return self._status

    def error_message(self) -> str | None:
        """The job's error message if it failed, else ``None``."""
        self._refresh_status()
        return self._error_message

    def done(self) -> bool:
        """Whether the job completed successfully."""
        return self.status() is JobStatus.DONE

    def running(self) -> bool:
        """Whether the job is running."""
        return self.status() is JobStatus.RUNNING

    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self.status() is JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        """Whether the job reached a final state (done, cancelled or failed)."""
        return self.status() in JOB_FINAL_STATES

    # ------------------------------------------------------------------------------ results

    def result(
        self, timeout: float | None = None, decoder: type[ResultDecoder] | None = None
    ) -> Any:
        """Wait for the job to finish and return its decoded result.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.
            decoder: A :class:`ResultDecoder` subclass for this call only.

        Returns:
            The decoded result (cached, unless another decoder is given).

        Raises:
            RuntimeJobTimeoutError: The job did not finish in time.
            RuntimeJobFailureError: The job failed.
            RuntimeJobMaxTimeoutError: The job ran longer than its maximum execution time.
            RuntimeInvalidStateError: The job was cancelled.
            ResultDecodingError: The result could not be decoded.
        """
        _check_timeout(timeout)
        chosen = decoder or self._final_result_decoder
        default = chosen is self._final_result_decoder
        if default and self._has_results:
            return self._results
        deadline = Deadline(timeout)
        with self._deadline_scope(deadline, timeout):
            self._wait_until_final(deadline, timeout)
            self._raise_callback_error()
            if self._status is JobStatus.ERROR:
                message = self._reason if self._reason else self._error_message
                if self._reason == RAN_TOO_LONG:
                    raise RuntimeJobMaxTimeoutError(message)
                raise RuntimeJobFailureError(f"Unable to retrieve job result. {message}")
            if self._status is JobStatus.CANCELLED:
                raise RuntimeInvalidStateError(
                    f"Unable to retrieve result for job {self._job_id}. Job was cancelled."
                )
            with self._lock:
                if default and self._has_results:
                    return self._results
                raw: str | bytes | None = self._final_payload
            if raw is None:
                raw = self._api_client.job_results(job_id=self._job_id)
            raw = self._resolve_external(raw)
        value = self._decode(chosen, raw) if raw else None
        if default and raw:
            with self._lock:
                self._results, self._has_results = value, True
                self._final_payload = None
        return value

    def interim_results(self, decoder: type[ResultDecoder] | None = None) -> Any:
        """The interim results published so far, decoded; cached once the job is final.

        Args:
            decoder: A :class:`ResultDecoder` subclass for this call (ignored once cached).
        """
        if not self._final_interim_results:
            final = self.status() in JOB_FINAL_STATES
            raw = self._api_client.job_interim_results(job_id=self._job_id)
            self._interim_results = self._decode(decoder or self._interim_result_decoder, raw)
            self._final_interim_results = final
        return self._interim_results

    def logs(self) -> str:
        """The job's logs (complete once the job is final; ``""`` if there are none).

        Raises:
            IBMRuntimeError: The logs could not be fetched.
        """
        if self.status() not in JOB_FINAL_STATES:
            logger.warning("Job logs are only available after the job finishes.")
        try:
            return self._api_client.job_logs(self._job_id)
        except RequestsApiError as err:
            if err.status_code == 404:
                return ""
            raise IBMRuntimeError(f"Failed to get job logs: {err}") from None

    def metrics(self) -> dict[str, Any]:
        """The job's metrics (timestamps and usage).

        Raises:
            IBMRuntimeError: The metrics could not be fetched or are not a JSON object.
        """
        try:
            raw = self._api_client.job_metadata(self._job_id)
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to get job metadata: {err}") from None
        try:
            value = json.loads(raw)
        except ValueError:
            raise IBMRuntimeError(
                f"Failed to get job metadata: the server sent malformed JSON: {raw[:200]!r}"
            ) from None
        if not isinstance(value, dict):
            raise IBMRuntimeError(
                f"Failed to get job metadata: expected a JSON object, got {type(value).__name__}"
            )
        return value

    # ---------------------------------------------------------------------------- cancelling

    def cancel(self) -> None:
        """Cancel the job, stop its stream, and record the status the server reports.

        Raises:
            RuntimeInvalidStateError: The job cannot be cancelled (e.g. it already finished).
            IBMRuntimeError: The request failed.
        """
        try:
            self._api_client.job_cancel(self._job_id)
        except RequestsApiError as err:
            if err.status_code == 409:
                self._refresh_status_quietly()
                raise RuntimeInvalidStateError(f"Job cannot be cancelled: {err}") from None
            raise IBMRuntimeError(f"Failed to cancel job: {err}") from None
        self.cancel_result_streaming()
        self._refresh_status()

    # ------------------------------------------------------------------------------ waiting

    def wait_for_final_state(self, timeout: float | None = None) -> None:
        """Wait until the job is final.

        Completion is learnt from the job's stream when one is open (or can be opened),
        otherwise by polling with a back-off. ``timeout`` is one deadline over everything.

        Raises:
            RuntimeJobTimeoutError: The job was not final within ``timeout`` seconds.
        """
        _check_timeout(timeout)
        deadline = Deadline(timeout)
        with self._deadline_scope(deadline, timeout):
            self._wait_until_final(deadline, timeout)

    def _deadline_scope(
        self, deadline: Deadline, timeout: float | None
    ) -> contextlib.AbstractContextManager[None]:
        """Bound every request made inside by ``deadline``; running out is a job timeout."""
        if timeout is None and current_call_deadline() is None:
            return _NO_SCOPE  # nothing to bound, here or around
        return self._bounded(deadline, timeout)

    @contextlib.contextmanager
    def _bounded(self, deadline: Deadline, timeout: float | None) -> Iterator[None]:
        try:
            with call_deadline(deadline):
                yield
        except UserTimeoutExceededError as err:
            raise RuntimeJobTimeoutError(
                f"Timed out waiting for job to complete after {timeout} secs."
            ) from err

    def _wait_until_final(self, deadline: Deadline, timeout: float | None) -> None:
        if self._status not in JOB_FINAL_STATES:
            self._refresh_status()
        if self._status not in JOB_FINAL_STATES:
            opened: _JobStream | None = None
            if (
                not self._stream_failed
                and not self._is_streaming()
                and isinstance(self._api_client, StreamingApi)
            ):
                opened = self._start_stream(None, None, "log")
            try:
                self._wait(deadline, timeout)
            finally:
                sub = opened.subscription if opened is not None else None
                if (
                    sub is not None
                    and opened is not None
                    and not opened.final_seen  # it ends by itself
                    and not opened.ended.is_set()
                ):
                    sub.cancel()
        self._drain_callback_stream(deadline)

    def _drain_callback_stream(self, deadline: Deadline) -> None:
        """Let an open callback stream deliver its last messages before returning.

        That is, up to its final frame (the job may have been seen final by a poll first);
        the stream's end, which follows, is not waited for. Bounded by the caller's deadline
        and by a grace period.
        """
        stream = self._stream
        if stream is None or stream.callback is None or stream.settled.is_set():
            return
        if not stream.settled.wait(deadline.cap(_STREAM_DRAIN_SECONDS)):
            logger.debug(
                "The stream of job %s has not delivered its final message after the job ended.",
                self._job_id,
            )

    def _wait(self, deadline: Deadline, timeout: float | None) -> None:
        """Wait for a final status: told by a working stream, else by adaptive polling.

        While the job's stream works, the server is asked only every
        :data:`_SAFETY_POLL_SECONDS` (in case the stream is mute), and a reconnecting stream
        is noticed at once (or within :data:`_STREAM_CHECK_SECONDS` when another thread
        reads it); while it is reconnecting, or without one, the status is polled at the
        pace of :attr:`poll_policy`.
        """
        intervals = self.poll_policy.intervals()
        safety_at = clock.monotonic() + _SAFETY_POLL_SECONDS
        while True:
            with self._lock:
                if self._status in JOB_FINAL_STATES:
                    return
                if self._stream_final:
                    # The stream says the job ended: ask now, once, instead of waiting.
                    self._stream_final = False
                elif self._stream_works():
                    left = safety_at - clock.monotonic()
                    self._await_stream(deadline.cap(max(0.0, left)))
                    if self._status in JOB_FINAL_STATES:
                        return
                    if self._stream_works() and not self._stream_final and left > 0:
                        self._check_deadline(deadline, timeout)
                        continue
                else:
                    self._changed.wait(deadline.cap(intervals.next()))
                    if self._status in JOB_FINAL_STATES:
                        return
            self._check_deadline(deadline, timeout)
            self._refresh_status()
            safety_at = clock.monotonic() + _SAFETY_POLL_SECONDS

    def _await_stream(self, seconds: float) -> None:
        """Wait up to ``seconds`` for news from the job's stream (lock held, and released).

        The waiting thread serves the stream hub itself when the hub lets it
        (``StreamSubscription.serve_until``): the final frame then reaches ``result()``
        with no thread hand-off (and the last callbacks run on this thread), and a stream
        that starts reconnecting is noticed at once. Otherwise it waits to be notified,
        and looks at the stream every :data:`_STREAM_CHECK_SECONDS`.
        """
        stream = self._stream
        sub = stream.subscription if stream is not None else None
        if sub is not None:
            me = threading.get_ident()
            self._serving.add(me)
            try:
                self._lock.release()  # held once, by this thread
                try:
                    served = sub.serve_until(self._stream_news, seconds)
                finally:
                    self._lock.acquire()
            finally:
                self._serving.discard(me)
            if served:
                return
        if not self._stream_news():
            self._changed.wait(min(seconds, _STREAM_CHECK_SECONDS))

    def _stream_news(self) -> bool:
        """Whether a thread waiting on the stream should look again (lock-free)."""
        return self._status in JOB_FINAL_STATES or self._stream_final or not self._stream_works()

    def _notify(self) -> None:
        """Wake the threads waiting for this job (lock held), wherever they wait."""
        condition = self._condition
        if condition is not None:  # made, under the lock, by the first thread to wait on it
            condition.notify_all()
        serving = self._serving
        if serving and (len(serving) > 1 or threading.get_ident() not in serving):
            stream = self._stream
            sub = stream.subscription if stream is not None else None
            if sub is not None:
                sub.wake()

    @staticmethod
    def _check_deadline(deadline: Deadline, timeout: float | None) -> None:
        if deadline.expired():
            raise RuntimeJobTimeoutError(
                f"Timed out waiting for job to complete after {timeout} secs."
            )

    def _stream_works(self) -> bool:
        """Whether a stream is open and not reconnecting (its end tells the job's end)."""
        stream = self._stream
        if stream is None or not stream.active:
            return False
        sub = stream.subscription
        return sub is None or not sub.reconnecting

    # ----------------------------------------------------------------------------- streaming

    def stream_results(
        self,
        callback: ResultCallback,
        decoder: type[ResultDecoder] | None = None,
        *,
        callback_errors: CallbackErrors = "log",
    ) -> None:
        """Stream interim results (and the final result) to ``callback(job_id, result)``.

        Each message reaches the callback exactly once and in order, on a thread of the
        process-wide stream hub (the last ones may run on the thread waiting in
        :meth:`result`, which reads the stream itself while it waits).

        Args:
            callback: Called with the job id and each decoded result.
            decoder: Decoder for interim results (default: the job's interim decoder).
            callback_errors: ``"log"`` (default) logs a raising callback and goes on;
                ``"raise"`` stops the stream and raises the error from ``result()``.

        Raises:
            RuntimeInvalidStateError: The job already finished, or a callback is streaming.
        """
        if callback_errors not in ("log", "raise"):
            raise IBMInputValueError(
                f"callback_errors must be 'log' or 'raise', not {callback_errors!r}"
            )
        if self.status() in JOB_FINAL_STATES:
            raise RuntimeInvalidStateError("Job already finished.")
        if self._is_streaming():
            raise RuntimeInvalidStateError("A callback function is already streaming results.")
        self._start_stream(callback, decoder, callback_errors)

    def cancel_result_streaming(self) -> None:
        """Stop streaming results; nothing more reaches the callback."""
        stream = self._stream
        if stream is not None and stream.subscription is not None:
            stream.subscription.cancel()

    def _is_streaming(self) -> bool:
        stream = self._stream
        return stream is not None and stream.active

    def _start_stream(
        self,
        callback: ResultCallback | None,
        decoder: type[ResultDecoder] | None,
        callback_errors: CallbackErrors,
    ) -> _JobStream | None:
        api = self._api_client
        if not isinstance(api, StreamingApi):
            if callback is None:
                return None
            raise IBMRuntimeError(
                f"Cannot stream results of job {self._job_id}: "
                f"{type(api).__name__} does not support streaming."
            )
        stream = _JobStream(self, callback, decoder, callback_errors)
        with self._lock:
            self._stream = stream
            self._stream_final = False
        stream.subscription = api.open_stream(self._job_id, stream)
        return stream

    def _on_final_frame(
        self, frame: StreamFrame, callback: ResultCallback | None, policy: CallbackErrors
    ) -> None:
        if (frame.status or "").upper() == "COMPLETED":
            value: Any = None
            decoded = False
            if callback is not None and frame.payload:
                try:
                    payload = self._resolve_external(frame.payload)
                    value = self._decode(self._final_result_decoder, payload) if payload else None
                    decoded = True
                except Exception as err:
                    self._callback_failed(err, policy, "decoding the final result")
                else:
                    self._call_callback(callback, value, policy)
            with self._lock:
                if self._status not in JOB_FINAL_STATES:
                    self._status = JobStatus.DONE
                    self._error_message = None
                    self._queue_position = None
                    self._status_changed()
                if decoded and frame.payload:
                    self._results, self._has_results = value, True
                elif frame.payload:
                    self._final_payload = frame.payload
                self._stream_final = True
                self._notify()
        else:
            with self._lock:
                self._stream_final = True
                self._notify()

    def _on_stream_end(
        self, stream: _JobStream, end: StreamEnd, error: BaseException | None
    ) -> None:
        if end is StreamEnd.FAILED:
            logger.debug("Stream of job %s ended without the job: %s", self._job_id, error)
        with self._lock:
            if end is StreamEnd.FAILED:
                # The hub already spent its reconnect budget (and warned once): later waits
                # poll instead of opening another stream that would fail the same way.
                self._stream_failed = True
            if end is StreamEnd.COMPLETED:
                self._stream_final = True
            stream.ended.set()
            self._notify()

    def _call_callback(self, callback: ResultCallback, value: Any, policy: CallbackErrors) -> None:
        try:
            callback(self._job_id, value)
        except Exception as err:
            self._callback_failed(err, policy, "in the result callback")

    def _callback_failed(self, err: Exception, policy: CallbackErrors, where: str) -> None:
        if policy == "raise":
            with self._lock:
                if self._callback_error is None:
                    self._callback_error = err
            self.cancel_result_streaming()
            return
        logger.warning(
            "An error occurred while streaming results for job %s (%s): %r",
            self._job_id,
            where,
            err,
            exc_info=err,
        )

    def _raise_callback_error(self) -> None:
        err = self._callback_error
        if err is not None:
            raise IBMRuntimeError(
                f"The result callback of job {self._job_id} raised: {err!r}"
            ) from err

    # ------------------------------------------------------------ futures, asyncio, progress

    def to_future(self) -> Future[Any]:
        """A :class:`concurrent.futures.Future` of the job's result.

        It resolves as :meth:`result` would: with the decoded result, or with the exception
        it would raise (job failed, ran too long, cancelled, undecodable result). One shared
        watcher feeds every such future from the jobs' streams, or by polling, without a
        thread per job (see ``docs/async-and-futures.md``). Cancelling the future does not
        cancel the job: it only stops that future waiting.

        Returns:
            A new future (each call gives another one).
        """
        from .futures import default_watcher

        return default_watcher().future(self)

    def add_done_callback(self, fn: DoneCallback) -> None:
        """Call ``fn(job)`` once when the job is final (soon, if it already is).

        ``fn`` runs on a library thread (``runtime-job-callbacks-N``), after the callbacks
        queued before it; what it raises is logged with the job id.

        Args:
            fn: Called with this job.
        """
        from .futures import default_watcher

        default_watcher().add_done_callback(self, fn)

    def add_status_callback(self, fn: StatusCallback) -> None:
        """Call ``fn(job_id, status, queue_position)`` on each change of the job's status.

        Each transition (e.g. QUEUED, RUNNING, DONE) is told once and in order, on a library
        thread; a known status is told at once. ``queue_position`` is the job's place in the
        queue when it is queued and the server says, else ``None``. While the job is not
        final, its status is polled in the background with a back-off.

        Args:
            fn: The status callback; what it raises is logged with the job id.
        """
        from .futures import add_status_callback

        add_status_callback(self, fn)

    def remove_status_callback(self, fn: StatusCallback) -> bool:
        """Stop calling ``fn`` on status changes.

        Args:
            fn: A callback given to :meth:`add_status_callback`.

        Returns:
            Whether ``fn`` was registered.
        """
        from .futures import remove_status_callback

        return remove_status_callback(self, fn)

    async def result_async(self, timeout: float | None = None) -> Any:
        """Wait for the job without blocking the event loop, and return its result.

        Works inside an already running loop (Jupyter) and under ``asyncio.run``.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The decoded result, as :meth:`result` returns it.

        Raises:
            RuntimeJobTimeoutError: The job did not finish in time.
            RuntimeJobFailureError: The job failed.
            RuntimeJobMaxTimeoutError: The job ran longer than its maximum execution time.
            RuntimeInvalidStateError: The job was cancelled.
            ResultDecodingError: The result could not be decoded.
        """
        from .aio import result_async

        return await result_async(self, timeout)

    def interim_results_async(
        self, decoder: type[ResultDecoder] | None = None
    ) -> AsyncGenerator[Any, None]:
        """Iterate over the job's interim results as they arrive: ``async for r in ...``.

        Every interim result comes once, in order (from the start of the job), then the
        iteration ends when the job is final. The loop is never blocked.

        Args:
            decoder: Decoder for interim results (default: the job's interim decoder).

        Returns:
            An asynchronous generator of decoded interim results (``aclose()`` it, or use
            :func:`contextlib.aclosing`, to stop early and close the stream at once).
        """
        from .aio import interim_results_async

        return interim_results_async(self, decoder)

    def _repr_html_(self) -> str:
        from .monitor import job_html

        return job_html(self)

    # ------------------------------------------------------------------------------ helpers

    def _get_job(self) -> dict[str, Any]:
        return self._api_client.job_get(job_id=self._job_id)

    def _refresh_status_quietly(self) -> None:
        try:
            self._refresh_status()
        except Exception as err:  # the caller raises a clearer error
            logger.debug("Could not refresh the status of job %s: %r", self._job_id, err)

    def _refresh_status(self) -> None:
        if self._status in JOB_FINAL_STATES:
            return
        response = parse(JobResponse, self._get_job(), "job", self._job_id)
        state = response.state
        raw_status = state.status if state else None
        reason = state.reason if state else None
        queue_position = _queue_position(state)
        with self._lock:
            if reason:
                self._reason = reason.upper()
            new_status = job_status_from_api(raw_status, self._reason)
        error_message = None
        if new_status is JobStatus.ERROR:
            raw = self._resolve_external(self._api_client.job_results(job_id=self._job_id))
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            error_message = error_message_for(self._job_id, str(raw_status), self._reason, text)
        with self._lock:
            if self._status in JOB_FINAL_STATES:
                return
            changed = new_status is not self._status
            self._status = new_status
            self._error_message = error_message
            self._queue_position = queue_position if new_status is JobStatus.QUEUED else None
            if new_status in JOB_FINAL_STATES:
                self._notify()
            if changed:
                self._status_changed()

    def _status_changed(self) -> None:
        """Tell the job's hooks (``runtime_job.futures``) the new status; lock held."""
        hooks = self._hooks
        if hooks is not None:
            hooks.status_changed(self, self._status, self._queue_position)

    def _resolve_external(self, raw: str | bytes) -> str | bytes:
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
        api = self._api_client
        if not isinstance(api, ExternalResultApi):
            raise IBMRuntimeError(
                f"The result of job {self._job_id} is stored externally, and "
                f"{type(api).__name__} cannot download it."
            )
        return api.external_result(str(value["url"]))

    def _decode(self, decoder: type[ResultDecoder], raw: str | bytes) -> Any:
        try:
            return decoder.decode(raw)
        except ResultDecodingError as err:
            raise ResultDecodingError(
                f"Could not decode a result of job {self._job_id}: {err.message}",
                job_id=self._job_id,
                excerpt=err.excerpt,
            ) from err


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise IBMInputValueError(
            f"timeout must be a positive number of seconds or None, not {timeout!r}"
        )


def _queue_position(state: JobState | None) -> int | None:
    """``state.queue_position`` when the server sends one (our server does, for queued jobs)."""
    value = (state.model_extra or {}).get("queue_position") if state is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decode_params(params: Any) -> Any:
    """Decode a job's ``params`` as the server sends them (dict, JSON text, or ``[dict]``)."""
    if isinstance(params, list):
        params = params[0] if params else {}
    if params is None:
        return {}
    if isinstance(params, str | bytes):
        return codec.loads(params)
    return codec.decode_value(params)


def _utc_to_local(value: str | datetime) -> datetime:
    """A UTC timestamp (string or datetime) as an aware datetime in local time."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone()


def _lookup_backend(service: Any, name: str) -> Backend | None:
    from .backend import IBMRetiredBackend

    lookup = getattr(service, "backend", None)
    if lookup is None:
        return None
    try:
        backend: Backend | None = lookup(name)
    except QiskitBackendNotFoundError:
        return IBMRetiredBackend.from_name(name)
    return backend


__all__ = ["CallbackErrors", "DecoderChoice", "ResultCallback", "RuntimeJob"]
