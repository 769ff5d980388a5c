"""Time in one place: the clock, the sleep seam, deadlines and the polling policy.

Tests replace :data:`clock` (see :class:`Clock`) so no unit test really sleeps. Every wait in
the library goes through a :class:`Deadline` built on the monotonic clock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class Clock:
    """The monotonic clock and the one sleep of the library (a seam for tests)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` (never negative)."""
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait for ``event`` up to ``seconds``; return whether it is set."""
        return event.wait(seconds)

    def wait_condition(self, condition: threading.Condition, seconds: float | None) -> bool:
        """Wait on ``condition`` (its lock held by the caller) up to ``seconds``.

        Returns whether it was notified. Every wait of a job's state goes through here, so a
        fake clock can end such waits in simulated time.
        """
        return condition.wait(seconds)


clock = Clock()
"""The clock every part of the library uses. Tests may swap its methods."""


class Deadline:
    """A point in monotonic time, or none (wait forever).

    Args:
        timeout: Seconds from now, or ``None`` for no limit.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else clock.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` when unbounded."""
        if self._end is None:
            return None
        return max(0.0, self._end - clock.monotonic())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._end is not None and clock.monotonic() >= self._end

    def cap(self, seconds: float) -> float:
        """``seconds``, shortened so it does not pass the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask the server for a job's status while waiting without a stream.

    The n-th interval (from 0) is ``initial * factor**n`` or ``ratio`` times the time
    waited so far, whichever is longer, capped at ``max_interval``. The default polls every
    10 ms for the first 0.25 s, then every 4 % of the time waited (learning of completion
    about 2 % late on average), then every 2 s from 50 s on: 162 requests over a 60 s job
    where the reference's fixed 0.1 s loop makes 600 (``docs/timeouts-and-retries.md``).

    Attributes:
        initial: First interval in seconds.
        factor: Growth of the fixed part per poll (1: none).
        ratio: Share of the time waited so far (0: none).
        max_interval: Cap on the interval.
    """

    initial: float = 0.01
    factor: float = 1.0
    ratio: float = 0.04
    max_interval: float = 2.0

    def intervals(self) -> PollIntervals:
        """A fresh sequence of intervals for one wait (its time starts now)."""
        return PollIntervals(self)


class PollIntervals:
    """The intervals of one wait, following a :class:`PollPolicy`."""

    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._next = policy.initial
        self._started = clock.monotonic()

    def next(self, hint: float | None = None) -> float:
        """The next interval; a server hint (``Retry-After``) wins when longer."""
        policy = self._policy
        value = self._next
        self._next = min(policy.max_interval, self._next * policy.factor)
        if policy.ratio > 0:
            waited = clock.monotonic() - self._started
            value = max(value, policy.ratio * waited)
        value = min(policy.max_interval, value)
        if hint is not None and hint > value:
            return hint
        return value


DEFAULT_POLL_POLICY = PollPolicy()
"""The policy used when none is given."""

__all__ = ["DEFAULT_POLL_POLICY", "Clock", "Deadline", "PollIntervals", "PollPolicy", "clock"]
