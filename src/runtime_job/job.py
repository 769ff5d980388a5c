"""The job handle: :class:`RuntimeJob`, the public façade of a job.

A ``RuntimeJob`` reads like a :class:`concurrent.futures.Future`: ``status()`` asks the server
until the job is final and then never again, ``result(timeout)`` waits and returns the decoded
result or raises (job failed, job cancelled, timed out), and interim results can be streamed
to a callback. It talks to the server only through the narrow interfaces of
:mod:`runtime_job.api.protocol`, never through ``requests`` or ``websocket`` directly.

The façade sits on the job core, as ``concurrent.futures`` sits on ``_base``: the job's
state (:mod:`runtime_job._job_state`), its one stream subscription shared by every consumer
and its one way of waiting (:mod:`runtime_job._job_stream`). Futures, asyncio and the
monitor (:mod:`runtime_job.futures`, :mod:`runtime_job.aio`, :mod:`runtime_job.monitor`)
use the core too; this module imports them, never the reverse. Which thread runs which
callback is told in :mod:`runtime_job._job_stream`.

Example::

    job = service.run("hello-world", inputs={"iterations": 2})
    job.stream_results(lambda job_id, msg: print(job_id, msg))
    print(job.result(timeout=60))
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import codec
from ._callbacks import CALLBACK_ERRORS, CallbackErrors
from ._job_members import LaterJobMembers
from ._job_state import check_timeout
from ._job_stream import CallbackConsumer, JobCore
from .api.protocol import PollingApi
from .decoders import ResultDecoder, resolve_decoders
from .exceptions import (
    ConflictError,
    IBMInputValueError,
    IBMRuntimeError,
    NotFoundError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobTimeoutError,
    UserTimeoutExceededError,
)
from .status import JOB_FINAL_STATES, JobStatus, ran_too_long
from .timing import DEFAULT_POLL_POLICY, Deadline, PollPolicy

if TYPE_CHECKING:
    from .api.models import JobResponse
    from .api.params import ClientParameters
    from .api.protocol import JobApi
    from .backend import Backend
    from .futures import DoneCallback, StatusCallback

logger = logging.getLogger(__name__)

ResultCallback = Callable[[str, Any], None]
"""A streaming callback: ``callback(job_id, result)``."""
DecoderChoice = type[ResultDecoder] | tuple[type[ResultDecoder], type[ResultDecoder]]
"""A decoder class, or an ``(interim, final)`` pair of them."""

_check_timeout = check_timeout


class RuntimeJob(LaterJobMembers):
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
        user_callback: Stream results to ``user_callback(job_id, result)`` from now on,
            without asking the status first (a quick job may already be final: its stream
            replays it all).
        result_decoder: A :class:`ResultDecoder` subclass or an ``(interim, final)`` pair.
        image: The runtime image the job runs in.
        session_id: The session the job belongs to, when known.
        tags: The job's tags, when known.
        callback_errors: What a raising ``user_callback`` does (see :meth:`stream_results`).
        listed_params: The job's inputs as a listing sent them (undecoded): decoded on the
            first use of :attr:`inputs` (decoding every listed job's inputs up front would be
            most of a long listing's cost).

    This constructor is the one way jobs are built (``RuntimeService.run``, ``job`` and
    ``jobs`` use it).
    """

    version = 1
    """The job interface version (qiskit's ``JobV1``)."""

    poll_policy: PollPolicy = DEFAULT_POLL_POLICY
    """How status is polled while waiting without a stream (unless set on the job or a
    subclass, a client that says how its service wants to be polled, ``poll_policy_for``,
    decides)."""

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
        *,
        callback_errors: CallbackErrors = "log",
        listed_params: Any = None,
    ) -> None:
        _check_callback_errors(callback_errors)
        self._job_id = job_id
        self._api_client = api_client
        self._client_params = client_params
        self._program_id = program_id
        self._service = service
        self._params: Any = params or {}
        self._raw_params: Any = listed_params
        self._image = image
        self._session_id = session_id
        self._tags = tags
        self.metadata: dict[str, Any] = {}
        self._interim_results: Any = None
        self._final_interim_results = False
        self._callback: CallbackConsumer | None = None
        interim, final = resolve_decoders(result_decoder, program_id)
        self._core = JobCore(job_id, api_client, interim, final)
        self._state = self._core.state
        self._backend = backend
        self._creation_date = creation_date
        if user_callback is not None:
            self._start_stream(user_callback, None, callback_errors)

    @property
    def _backend(self) -> Backend | None:
        backend: Backend | None = self._core.known.get("backend")
        return backend

    @_backend.setter
    def _backend(self, backend: Backend | None) -> None:
        self._core.known["backend"] = backend

    @property
    def _creation_date(self) -> str | datetime | None:
        created: str | datetime | None = self._core.known.get("created")
        return created

    @_creation_date.setter
    def _creation_date(self, created: str | datetime | None) -> None:
        self._core.known["created"] = created

    @property
    def _interim_result_decoder(self) -> type[ResultDecoder]:
        return self._core.interim_decoder

    @property
    def _final_result_decoder(self) -> type[ResultDecoder]:
        return self._core.final_decoder

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
            self._params = _decode_params(self._core.fetch(exclude_params=False).params)
        return self._params

    @property
    def creation_date(self) -> datetime | None:
        """When the job was created, in local time (fetched when not known)."""
        if not self._creation_date:
            self._creation_date = self._get_job().created
        if not self._creation_date:
            return None
        return _utc_to_local(self._creation_date)

    @property
    def session_id(self) -> str | None:
        """The session the job belongs to (fetched when not known)."""
        if not self._session_id:
            self._session_id = self._get_job().session_id
        return self._session_id

    def backend(self) -> Backend | None:
        """The backend the job runs on, looked up when not known (``None`` if it has none).

        Raises:
            IBMRuntimeError: The job could not be fetched.
        """
        if not self._backend:
            try:
                name = self._get_job().backend
            except RequestsApiError as err:
                raise IBMRuntimeError(f"Failed to get job backend: {err}") from err
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
        self._core.refresh_status()
        return self._state.status

    def error_message(self) -> str | None:
        """The job's error message if it failed, else ``None``."""
        self._core.refresh_status()
        return self._state.error_message

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

        Called from one of the job's own callbacks, it returns as soon as the job is
        final (it does not wait for that callback). With a ``timeout``, it returns or
        raises within it whatever the callbacks do (they run on other threads).

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
        check_timeout(timeout)
        core, state = self._core, self._state
        chosen = decoder or core.final_decoder
        default = chosen is core.final_decoder
        if default and state.has_results:
            return state.results
        deadline = Deadline(timeout)
        bound = deadline if timeout is not None else None
        try:
            core.wait_final(deadline, timeout, self._wait_policy())
            if state.callback_error is not None:
                self._raise_callback_error()
            if state.status is JobStatus.ERROR:
                message = state.reason if state.reason else state.error_message
                if ran_too_long(state.reason):
                    raise RuntimeJobMaxTimeoutError(message)
                raise RuntimeJobFailureError(f"Unable to retrieve job result. {message}")
            if state.status is JobStatus.CANCELLED:
                raise RuntimeInvalidStateError(
                    f"Unable to retrieve result for job {self._job_id}. Job was cancelled."
                )
            with state.lock:
                if default and state.has_results:
                    return state.results
                raw: str | bytes | None = state.final_payload
            if raw is None:
                raw = self._api_client.job_results(self._job_id, deadline=bound)
            raw = core.resolve_external(raw, bound)
        except UserTimeoutExceededError as err:
            raise RuntimeJobTimeoutError(
                f"Timed out waiting for job to complete after {timeout} secs."
            ) from err
        value = core.decode(chosen, raw) if raw else None
        if default and raw:
            state.set_result(value)
        return value

    def interim_results(self, decoder: type[ResultDecoder] | None = None) -> Any:
        """The interim results published so far, decoded; cached once the job is final.

        Args:
            decoder: A :class:`ResultDecoder` subclass for this call (ignored once cached).
        """
        if getattr(self._api_client, "has_interim_results", True) is False:
            return None  # the platform dialect has none (nothing to ask, nothing to decode)
        if not self._final_interim_results:
            final = self.status() in JOB_FINAL_STATES
            raw = self._api_client.job_interim_results(self._job_id)
            self._interim_results = self._core.decode(decoder or self._core.interim_decoder, raw)
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
        except NotFoundError:
            return ""
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to get job logs: {err}") from err

    def metrics(self) -> dict[str, Any]:
        """The job's metrics (timestamps and usage).

        Raises:
            IBMRuntimeError: The metrics could not be fetched or are not a JSON object.
        """
        try:
            raw = self._api_client.job_metadata(self._job_id)
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to get job metadata: {err}") from err
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise IBMRuntimeError(
                f"Failed to get job metadata: the server sent malformed JSON: {raw[:200]!r}"
            ) from err
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
        except ConflictError as err:
            self._refresh_status_quietly()
            raise RuntimeInvalidStateError(f"Job cannot be cancelled: {err}") from err
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to cancel job: {err}") from err
        self.cancel_result_streaming()
        self._core.refresh_status()

    # ------------------------------------------------------------------------------ waiting

    def wait_for_final_state(self, timeout: float | None = None) -> None:
        """Wait until the job is final.

        Completion is learnt from the job's stream when one is open (or can be opened),
        otherwise by polling with a back-off. ``timeout`` is one deadline over everything.

        Raises:
            RuntimeJobTimeoutError: The job was not final within ``timeout`` seconds.
        """
        check_timeout(timeout)
        try:
            self._core.wait_final(Deadline(timeout), timeout, self._wait_policy())
        except UserTimeoutExceededError as err:
            raise RuntimeJobTimeoutError(
                f"Timed out waiting for job to complete after {timeout} secs."
            ) from err

    # ----------------------------------------------------------------------------- streaming

    def stream_results(
        self,
        callback: ResultCallback,
        decoder: type[ResultDecoder] | None = None,
        *,
        callback_errors: CallbackErrors = "log",
    ) -> None:
        """Stream interim results (and the final result) to ``callback(job_id, result)``.

        Each message reaches the callback exactly once and in order, from the job's start,
        on a library thread (``runtime-job-deliver-N``; the last ones may run on a thread
        waiting in :meth:`result` without a timeout, which reads the stream itself).

        Args:
            callback: Called with the job id and each decoded result.
            decoder: Decoder for interim results (default: the job's interim decoder).
            callback_errors: ``"log"`` (default) logs a raising callback and goes on;
                ``"raise"`` stops the stream and raises the error from ``result()``.

        Raises:
            RuntimeInvalidStateError: The job already finished, or a callback is streaming.
        """
        _check_callback_errors(callback_errors)
        if self.status() in JOB_FINAL_STATES:
            raise RuntimeInvalidStateError("Job already finished.")
        if self._is_streaming():
            raise RuntimeInvalidStateError("A callback function is already streaming results.")
        self._start_stream(callback, decoder, callback_errors)

    def cancel_result_streaming(self) -> None:
        """Stop streaming results; nothing more reaches the callback."""
        consumer, self._callback = self._callback, None
        if consumer is not None:
            self._core.stream.detach(consumer)

    def _is_streaming(self) -> bool:
        """Whether a result callback is attached to an open stream."""
        consumer = self._callback
        if consumer is None or consumer.ended:
            return False
        stream = self._core.stream
        return not stream.final_seen and stream.attached(consumer)  # the final frame ends it

    def _start_stream(
        self,
        callback: ResultCallback,
        decoder: type[ResultDecoder] | None,
        callback_errors: CallbackErrors,
    ) -> None:
        stream = self._core.stream
        if not stream.can_stream:
            if getattr(self._api_client, "has_interim_results", True) is False:
                self._callback_at_end(callback, callback_errors)
                return
            raise IBMRuntimeError(
                f"Cannot stream results of job {self._job_id}: "
                f"{type(self._api_client).__name__} does not support streaming."
            )
        consumer = CallbackConsumer(self._core, callback, decoder, callback_errors)
        self._callback = consumer
        stream.attach(consumer, replay=True)

    def _callback_at_end(self, callback: ResultCallback, callback_errors: CallbackErrors) -> None:
        """Give ``callback`` the final result once, when the job is done.

        For a client whose dialect has no interim results (``has_interim_results`` false,
        the platform): what 0.11 gave a callback at the end. It runs on a callback thread of
        the completion watcher; a failed or cancelled job gives it nothing.
        """

        def deliver(job: RuntimeJob) -> None:
            if job._state.status is not JobStatus.DONE:
                return
            value = job.result()
            try:
                callback(job.job_id(), value)
            except Exception as err:
                if callback_errors == "raise":
                    job._state.record_callback_error(err)
                raise

        self.add_done_callback(deliver)

    def _raise_callback_error(self) -> None:
        err = self._state.callback_error
        if err is not None:
            raise IBMRuntimeError(
                f"The result callback of job {self._job_id} raised: {err!r}"
            ) from err

    # ------------------------------------------------------------ futures, asyncio, progress

    def to_future(self) -> Future[Any]:
        """A :class:`concurrent.futures.Future` of the job's result.

        It resolves as :meth:`result` would: with the decoded result, or with the exception
        it would raise (job failed, ran too long, cancelled, undecodable result). One shared
        watcher feeds every such future from the jobs' streams (the job's one stream, shared
        with its callback), or by polling, without a thread per job (see
        ``docs/async-and-futures.md``). Cancelling the future does not cancel the job: it
        only stops that future waiting.

        Returns:
            A new future (each call gives another one).
        """
        from .futures import default_watcher  # the views load on first use

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
        thread (``runtime-job-callbacks-N``); a known status is told at once.
        ``queue_position`` is the job's place in the queue when it is queued and the server
        says, else ``None``. While the job is not final, its status is polled in the
        background with a back-off.

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
        iteration ends when the job is final. The loop is never blocked. It shares the
        job's one stream with its callback and futures.

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

    def _get_job(self) -> JobResponse:
        return self._core.fetch()

    def _wait_policy(self) -> PollPolicy:
        """The poll policy of a wait: the job's own if set, else the client's, else the default."""
        policy = self.poll_policy
        api = self._api_client
        if policy is RuntimeJob.poll_policy and isinstance(api, PollingApi):
            return api.poll_policy_for(self._session_id)
        return policy

    def _refresh_status_quietly(self) -> None:
        try:
            self._core.refresh_status()
        except Exception as err:  # the caller raises a clearer error
            logger.debug("Could not refresh the status of job %s: %r", self._job_id, err)


def _check_callback_errors(policy: object) -> None:
    if policy not in CALLBACK_ERRORS:
        raise IBMInputValueError(f"callback_errors must be 'log' or 'raise', not {policy!r}")


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
