"""Job states: the :class:`JobStatus` enum, final states, and how API statuses map to them.

The server reports ``state.status`` as one of ``QUEUED``, ``RUNNING``, ``COMPLETED``,
``FAILED`` or ``CANCELLED`` (any case) with an optional ``state.reason``. A cancelled job
whose reason is ``RAN TOO LONG`` counts as an error, as in the reference; so does one whose
platform reason code is 1305 (:func:`ran_too_long`).
"""

from __future__ import annotations

import enum

from .exceptions import IBMError


class JobStatus(enum.Enum):
    """The state of a job; values are the reference's human-readable messages.

    A member also equals the member of the same name of qiskit's own
    ``qiskit.providers.JobStatus`` (so ``job.status() == JobStatus.DONE`` holds with the
    reference's import), and hashes like it. qiskit is never imported for this: the other
    side is recognised by its class name and module.
    """

    INITIALIZING = "job is being initialized"
    QUEUED = "job is queued"
    VALIDATING = "job is being validated"
    RUNNING = "job is actively running"
    CANCELLED = "job has been cancelled"
    DONE = "job has successfully run"
    ERROR = "job incurred error"

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is self.__class__:
            return False
        if _is_qiskit_job_status(other):
            return bool(self.name == other.name and self.value == other.value)  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        # Enum's hash (the member name): equal to the hash of qiskit's member of that name.
        return hash(self._name_)


def _is_qiskit_job_status(other: object) -> bool:
    """Whether ``other`` is a member of qiskit's ``JobStatus`` enum (without importing it)."""
    cls = type(other)
    return (
        isinstance(other, enum.Enum)
        and cls.__name__ == "JobStatus"
        and cls.__module__.split(".")[:2] == ["qiskit", "providers"]
    )


JOB_FINAL_STATES: tuple[JobStatus, ...] = (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.ERROR)
"""States a job never leaves."""

API_TO_JOB_STATUS: dict[str, JobStatus] = {
    "QUEUED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.DONE,
    "FAILED": JobStatus.ERROR,
    "CANCELLED": JobStatus.CANCELLED,
}
"""Server status strings (upper-cased) to :class:`JobStatus`."""

RAN_TOO_LONG = "RAN TOO LONG"
"""The (upper-cased) reason of a job cancelled for exceeding its maximum execution time."""

MAX_EXECUTION_TIME_CODE = 1305
"""IBM Quantum Platform's reason code for the same (``platform.md`` 5.4)."""

_CODE_PREFIX = f"ERROR CODE {MAX_EXECUTION_TIME_CODE}"


def ran_too_long(reason: str | None) -> bool:
    """Whether an upper-cased reason says the job ran past its maximum execution time.

    The 2023 dialect says ``RAN TOO LONG``; the platform's reason code 1305 reaches the job
    folded into its reason (``"Error code 1305; Ran too long"``, upper-cased).
    """
    if reason is None:
        return False
    return reason in (RAN_TOO_LONG, _CODE_PREFIX) or reason.startswith(_CODE_PREFIX + ";")


API_TO_JOB_ERROR_MESSAGE: dict[str, str] = {
    "FAILED": "Job {} has failed:\n{}",
    "CANCELLED - RAN TOO LONG": (
        "Job {} ran longer than maximum execution time. Job was cancelled:\n{}"
    ),
}
"""Error message templates, filled with ``(job_id, error text)``."""


def job_status_from_api(status: object, reason: str | None) -> JobStatus:
    """Map a server ``state.status`` (and the upper-cased reason) to a :class:`JobStatus`.

    Raises:
        IBMError: ``Unknown status: ...`` for a missing or unrecognised status.
    """
    if not isinstance(status, str) or status.upper() not in API_TO_JOB_STATUS:
        raise IBMError(f"Unknown status: {status}")
    mapped = API_TO_JOB_STATUS[status.upper()]
    if mapped is JobStatus.CANCELLED and ran_too_long(reason):
        return JobStatus.ERROR
    return mapped


def error_message_for(job_id: str, api_status: str, reason: str | None, raw_error: str) -> str:
    """Build the job's error message from its raw error text, as the reference does.

    Only the text from the last ``Traceback`` on is kept, when there is one.
    """
    cut = raw_error.rfind("Traceback")
    text = raw_error[cut:] if cut != -1 else raw_error
    key = "FAILED"
    if api_status.upper() == "CANCELLED" and ran_too_long(reason):
        key = "CANCELLED - RAN TOO LONG"
    return API_TO_JOB_ERROR_MESSAGE[key].format(job_id, text)


__all__ = [
    "API_TO_JOB_ERROR_MESSAGE",
    "API_TO_JOB_STATUS",
    "JOB_FINAL_STATES",
    "MAX_EXECUTION_TIME_CODE",
    "RAN_TOO_LONG",
    "JobStatus",
    "error_message_for",
    "job_status_from_api",
    "ran_too_long",
]
