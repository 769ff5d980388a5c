"""One job's state: what is known of it, one condition to wait on, and status listeners.

A :class:`JobState` does no I/O. The job's façade (:mod:`runtime_job.job`), its stream
(:mod:`runtime_job._job_stream`) and its views (futures, asyncio, the monitor) all read and
write the same one, under its lock, and every thread that waits for the job waits on its
condition (through :data:`runtime_job.timing.clock`, so tests can drive the waits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .exceptions import IBMInputValueError
from .status import JOB_FINAL_STATES, JobStatus
from .timing import Deadline, clock

StatusListener = Callable[[JobStatus, "int | None"], None]
"""Told ``(status, queue_position)`` on each status change, with the state's lock held: it
must be quick and never block (queue the work elsewhere)."""


class JobState:
    """The mutable state of one job, shared by everything that looks at the job.

    Fields are read without the lock (each is one atomic reference) and written under
    :attr:`lock`; a change that a waiter may care about ends with :meth:`notify`.

    Args:
        job_id: The job's id.

    Attributes:
        job_id: The job's id.
        lock: Guards every write (re-entrant: a listener may read the state again).
        status: The last status learnt (``INITIALIZING`` until the first).
        final: Whether :attr:`status` is final (kept beside it: it is read after each
            socket a waiting thread serves).
        reason: The server's reason for the status, upper-cased, when it gave one.
        error_message: Why the job failed, once it has.
        queue_position: The job's place in the queue while queued, when the server says.
        results: The decoded result (``has_results`` says whether it is set).
        has_results: Whether :attr:`results` holds the result (decoded with the default).
        final_payload: The undecoded final result, when a stream delivered it.
        stream_final: A stream said the job ended: a waiter asks the status now.
        callback_error: What a result callback with the ``"raise"`` policy raised.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.status = JobStatus.INITIALIZING
        self.final = False
        self.reason: str | None = None
        self.error_message: str | None = None
        self.queue_position: int | None = None
        self.results: Any = None
        self.has_results = False
        self.final_payload: str | None = None
        self.stream_final = False
        self.callback_error: BaseException | None = None
        self._listeners: list[StatusListener] = []
        self._wakers: list[Callable[[], None]] = []
        self._sleepers = 0  # threads in wait(): notify() skips the condition without any
        self._asked = 0  # status requests begun (see begin_refresh)
        self._answered = 0  # the newest of them whose answer was recorded

    # -- writes (lock held by the caller, or taken here) ------------------------------------

    def begin_refresh(self) -> int:
        """Number a status request about to be sent, for :meth:`set_status`'s ``ticket``.

        Several threads may ask for the status at once (a waiter, the futures watcher);
        their answers can come back out of order, and an older answer must not undo a newer
        one (``RUNNING`` back to ``QUEUED``).
        """
        with self.lock:
            self._asked += 1
            return self._asked

    def is_stale(self, ticket: int) -> bool:
        """Whether the answer to request ``ticket`` is older than one already recorded."""
        return ticket < self._answered

    def set_status(
        self,
        status: JobStatus,
        *,
        error_message: str | None = None,
        queue_position: int | None = None,
        ticket: int | None = None,
    ) -> bool:
        """Record a status unless the job is already final; tell the listeners on a change.

        Args:
            status: The new status.
            error_message: Why the job failed (for ``ERROR``).
            queue_position: The place in the queue (kept for ``QUEUED`` only).
            ticket: The :meth:`begin_refresh` number of the request that answered, if it
                came from one: an answer older than one already recorded is dropped.

        Returns:
            Whether it was recorded (``False``: the job was final already, or the answer
            was stale).
        """
        with self.lock:
            if self.final:
                return False
            if ticket is not None:
                if ticket < self._answered:
                    return False
                self._answered = ticket
            changed = status is not self.status
            self.status = status
            self.error_message = error_message
            self.queue_position = queue_position if status is JobStatus.QUEUED else None
            if status in JOB_FINAL_STATES:
                self.final = True  # after status: a reader that sees it sees the status
                self.notify()
            if changed:
                for listener in tuple(self._listeners):
                    listener(status, self.queue_position)
            return True

    def set_result(self, value: Any) -> None:
        """Cache the decoded result (the default decoder's) and drop the raw payload."""
        with self.lock:
            self.results, self.has_results = value, True
            self.final_payload = None

    def record_callback_error(self, err: BaseException) -> None:
        """Keep the first error of a ``"raise"``-policy callback for ``result()``."""
        with self.lock:
            if self.callback_error is None:
                self.callback_error = err
            self.notify()

    def notify(self) -> None:
        """Wake every thread waiting for this job, wherever it waits."""
        with self.lock:
            if self._sleepers:
                self._changed.notify_all()
            wakers = tuple(self._wakers)
        for wake in wakers:
            wake()

    # -- listeners ---------------------------------------------------------------------------

    def add_status_listener(self, listener: StatusListener) -> None:
        """Tell ``listener`` each later status change (with the lock held)."""
        with self.lock:
            self._listeners.append(listener)

    def remove_status_listener(self, listener: StatusListener) -> bool:
        """Stop telling ``listener``; whether it was registered."""
        with self.lock:
            try:
                self._listeners.remove(listener)
            except ValueError:
                return False
            return True

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` on each :meth:`notify` (e.g. to rouse a thread that leads a stream)."""
        with self.lock:
            self._wakers.append(wake)

    def remove_waker(self, wake: Callable[[], None]) -> None:
        """Undo :meth:`add_waker`."""
        with self.lock:
            if wake in self._wakers:
                self._wakers.remove(wake)

    # -- waiting -----------------------------------------------------------------------------

    def wait(self, until: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``until()`` holds (checked under the lock after each notify) or time out.

        Args:
            until: The condition; cheap, called with the lock held.
            timeout: Seconds at most (``None``: no limit).

        Returns:
            ``until()`` at the end.
        """
        deadline = Deadline(timeout)
        with self.lock:
            while not until():
                left = deadline.remaining()
                if left is not None and left <= 0:
                    return False
                self._sleepers += 1
                try:
                    clock.wait_condition(self._changed, left)
                finally:
                    self._sleepers -= 1
            return True

    def __repr__(self) -> str:
        return f"<JobState {self.job_id} {self.status.name}>"


def check_timeout(timeout: float | None) -> None:
    """Refuse a timeout that is not a positive number of seconds or ``None``.

    Raises:
        IBMInputValueError: It is not.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise IBMInputValueError(
            f"timeout must be a positive number of seconds or None, not {timeout!r}"
        )


__all__ = ["JobState", "StatusListener", "check_timeout"]
