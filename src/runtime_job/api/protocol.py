"""The narrow interfaces between the job handle and the transport.

:class:`~runtime_job.job.RuntimeJob` depends only on these protocols, never on ``requests``
or ``websocket``: :class:`~runtime_job.api.client.RuntimeClient` implements them over HTTP and
websockets, and unit tests hand the job a scripted fake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..timing import Deadline

if TYPE_CHECKING:
    from ..timing import PollPolicy
    from .models import JobResponse


class JobApi(Protocol):
    """The REST calls a job needs.

    Every call raises :class:`~runtime_job.exceptions.RequestsApiError` on a failure, as
    one of its typed leaves where one fits (``NotFoundError`` for 404, ``ConflictError`` for
    409, ...). A ``deadline`` bounds the whole call (connects, reads, retry sleeps); past
    it, the call raises :class:`~runtime_job.exceptions.UserTimeoutExceededError`.
    """

    def fetch_job(
        self,
        job_id: str,
        *,
        exclude_params: bool | None = None,
        deadline: Deadline | None = None,
    ) -> JobResponse:
        """``GET /jobs/{id}``: the job, validated once into its wire model."""
        ...

    def job_results(self, job_id: str, *, deadline: Deadline | None = None) -> str | bytes:
        """``GET /jobs/{id}/results``: the result text (or its UTF-8 bytes)."""
        ...

    def job_interim_results(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/interim_results``: the interim results text."""
        ...

    def job_cancel(self, job_id: str, *, deadline: Deadline | None = None) -> None:
        """``POST /jobs/{id}/cancel``."""
        ...

    def job_logs(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/logs``: the logs text."""
        ...

    def job_metadata(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/metrics``: the metrics JSON text."""
        ...


@runtime_checkable
class PollingApi(Protocol):
    """Optional: the client knows how often its service wants a job's status asked."""

    def poll_policy_for(self, session_id: str | None) -> PollPolicy:
        """The polling pace for a job (in the session ``session_id``, if any)."""
        ...


@runtime_checkable
class ExternalResultApi(Protocol):
    """Optional: download a result stored elsewhere (``{"url": ...}``)."""

    def external_result(self, url: str) -> bytes:
        """Download ``url`` with the client's TLS, proxy and timeout settings."""
        ...


@dataclass(frozen=True)
class StreamFrame:
    """One message received on a job's stream.

    Attributes:
        payload: The message text as the program's codec produced it.
        seq: Its sequence number, on servers with the sequence extension.
        final: Whether this is the job's final frame (known only with the extension).
        status: The job's final API status, on a final frame.
        reason: The job's final reason, on a final frame.
    """

    payload: str
    seq: int | None = None
    final: bool = False
    status: str | None = None
    reason: str | None = None


class StreamEnd(Enum):
    """Why a stream ended."""

    COMPLETED = "completed"
    """The server closed normally: the job is final."""
    CANCELLED = "cancelled"
    """The client stopped the stream."""
    FAILED = "failed"
    """The reconnect budget ran out; the job may still be running."""


class StreamListener(Protocol):
    """Receives a stream's frames, in order, one call at a time, then one end.

    A listener whose calls are quick and never block may also have ``inline = True``: the
    hub then calls it on the thread that has the frame (its reader) instead of handing the
    call to a dispatcher thread.
    """

    def on_frame(self, frame: StreamFrame) -> None:
        """A frame arrived (never the acknowledgement, never a duplicate)."""
        ...

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        """The stream ended; called exactly once, after the last frame."""
        ...


class StreamSubscription(Protocol):
    """A handle on an open stream."""

    def cancel(self) -> None:
        """Stop the stream now; ``on_end(CANCELLED)`` follows unless it already ended."""
        ...

    @property
    def active(self) -> bool:
        """Whether the stream has not ended yet."""
        ...

    @property
    def reconnecting(self) -> bool:
        """Whether the stream lost its connection, or could not open one, and tries again."""
        ...

    def wait(self, until: Callable[[], bool], timeout: float) -> bool:
        """Block the calling thread until ``until()`` is true or ``timeout`` seconds pass.

        Returns ``until()``. The hub decides whether this thread reads the sockets itself
        (leads) or parks; the caller holds no lock. ``until`` must be cheap and lock-free:
        the hub may call it after each event it handles. Something else that can make it
        true calls :meth:`wake`.
        """
        ...

    def wake(self) -> None:
        """Make the threads in :meth:`wait` check their ``until`` again now (any thread)."""
        ...


@runtime_checkable
class StreamingApi(Protocol):
    """Optional: open a job's result stream."""

    def open_stream(self, job_id: str, listener: StreamListener) -> StreamSubscription:
        """Start streaming ``job_id`` into ``listener``; returns at once."""
        ...

    def prepare_streams(self) -> None:
        """A hint that a stream will be opened soon: get ready (imports, threads) now."""
        ...


__all__ = [
    "ExternalResultApi",
    "JobApi",
    "PollingApi",
    "StreamEnd",
    "StreamFrame",
    "StreamListener",
    "StreamSubscription",
    "StreamingApi",
]
