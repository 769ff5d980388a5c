"""The one bounded wait of the test suite.

Tests synchronise on events and on the fake clock; when a test must wait for a state that
nothing signals (a count on a server, a thread that has gone), it calls :func:`wait_until`.
This is the only place in the suite that polls. It reads the real clock (``time``), never
``runtime_job.timing.clock``, so it keeps working while a test has faked the library's clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
"""Seconds a wait may take before the test fails."""

_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.02


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str | None = None,
) -> T:
    """Wait until ``predicate()`` is truthy and return its value.

    The predicate is asked at once, then after pauses growing from 1 ms to 20 ms, so a
    condition that holds soon is seen soon and a long wait costs little.

    Args:
        predicate: The condition; it must be cheap and have no side effect.
        timeout: Real seconds to wait at most.
        what: What the test waits for, named in the failure (default: the predicate).

    Raises:
        AssertionError: ``predicate()`` was still falsy after ``timeout`` seconds.
    """
    end = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    pauser = threading.Event()  # never set: its wait is an interruptible sleep
    while True:
        value = predicate()
        if value:
            return value
        left = end - time.monotonic()
        if left <= 0:
            break
        pauser.wait(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)
    value = predicate()
    if value:
        return value
    name = what or getattr(predicate, "__qualname__", repr(predicate))
    raise AssertionError(f"timed out after {timeout:g} s waiting for {name}")


def wait_for_event(
    event: threading.Event, timeout: float = DEFAULT_TIMEOUT, what: str = ""
) -> None:
    """Wait for ``event`` (no polling); fail naming ``what`` if it is not set in time."""
    if not event.wait(timeout):
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'an event'}")


def callbacks_drained(job: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until the callbacks queued for ``job`` before now have run.

    ``add_done_callback`` runs a callback after those queued before it, on the same thread,
    so a last done callback on a final job is a barrier: once it ran, any callback (or
    duplicate) queued earlier has been delivered. ``job`` must be final.
    """
    ran = threading.Event()
    job.add_done_callback(lambda _job: ran.set())
    wait_for_event(ran, timeout, f"the callbacks of job {job.job_id()} to drain")
