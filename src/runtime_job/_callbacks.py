"""One guarded call for user callbacks: what they raise never breaks the library.

Every place that calls user code for a job (stream callbacks, done and status callbacks,
async iterators' decoding, the monitor) goes through :func:`call_guarded`: an error is
logged with the job id and the library carries on, or, with the ``"raise"`` policy, it is
handed to ``on_raise`` (which records it for ``result()`` to raise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

logger = logging.getLogger(__name__)

CallbackErrors = Literal["log", "raise"]
"""What a raising callback does: ``"log"`` it and go on, or ``"raise"`` it from ``result()``."""

CALLBACK_ERRORS: tuple[CallbackErrors, ...] = ("log", "raise")
"""The valid :data:`CallbackErrors` values."""


def call_guarded(
    fn: Callable[..., object],
    *args: Any,
    job_id: str,
    what: str,
    policy: CallbackErrors = "log",
    on_raise: Callable[[Exception], None] | None = None,
) -> bool:
    """Call ``fn(*args)``; on an error, log it with the job id or hand it to ``on_raise``.

    Args:
        fn: The user code.
        args: Its arguments.
        job_id: The job the call is about (named in the log line).
        what: What was being done, for the log line: "Error {what} of job {id}"
            (e.g. "in the result callback").
        policy: ``"log"`` logs and goes on; ``"raise"`` calls ``on_raise(err)`` instead.
        on_raise: What to do with the error under the ``"raise"`` policy.

    Returns:
        Whether ``fn`` returned without raising.
    """
    try:
        fn(*args)
    except Exception as err:
        report_failure(err, job_id=job_id, what=what, policy=policy, on_raise=on_raise)
        return False
    return True


def report_failure(
    err: Exception,
    *,
    job_id: str,
    what: str,
    policy: CallbackErrors = "log",
    on_raise: Callable[[Exception], None] | None = None,
) -> None:
    """Deal with an error of user code (or of decoding for it) as :func:`call_guarded` does.

    Args:
        err: The error.
        job_id: The job concerned.
        what: What was being done.
        policy: ``"log"`` or ``"raise"``.
        on_raise: Called with ``err`` under the ``"raise"`` policy.
    """
    if policy == "raise" and on_raise is not None:
        on_raise(err)
        return
    logger.warning("Error %s of job %s: %r", what, job_id, err, exc_info=err)


__all__ = ["CALLBACK_ERRORS", "CallbackErrors", "call_guarded", "report_failure"]
