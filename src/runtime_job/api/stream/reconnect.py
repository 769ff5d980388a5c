"""When a job stream reconnects, and when it gives up: :class:`ReconnectPolicy`.

A stream whose connection drops (or cannot be opened) tries again after a capped,
jittered exponential backoff, as long as it has not gone :attr:`ReconnectPolicy.budget`
seconds without a healthy connection. The policy is a frozen value: a hub is built with one
(``StreamHub(reconnect=ReconnectPolicy(...))``) and never changes it.

Example::

    from runtime_job.api import ReconnectPolicy

    policy = ReconnectPolicy(budget=120.0)
    policy.delay(attempts=3, retry_after=0.0)  # 0.4 s jittered to 0.2-0.4 s
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Final

DEFAULT_BACKOFF_INITIAL: Final = 0.1
DEFAULT_BACKOFF_MAX: Final = 5.0
DEFAULT_RECONNECT_BUDGET: Final = 60.0
DEFAULT_HEALTHY_AFTER: Final = 5.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a job stream retries a lost or refused connection.

    Attributes:
        initial_delay: First reconnect delay, in seconds (0.1). Each failed attempt
            doubles it.
        max_delay: Cap on the reconnect delay, in seconds (5). Each delay is jittered to
            50-100 % of its value; a longer ``Retry-After`` from the server wins.
        budget: Seconds a stream may go without a healthy connection before it ends with
            ``FAILED`` (60). A healthy connection resets it, and the backoff.
        healthy_after: Seconds an acknowledged connection must stay up to count as healthy
            (5); delivering a new message makes it healthy at once.

    Raises:
        ValueError: A value is not a positive number, or ``max_delay < initial_delay``.
    """

    initial_delay: float = DEFAULT_BACKOFF_INITIAL
    max_delay: float = DEFAULT_BACKOFF_MAX
    budget: float = DEFAULT_RECONNECT_BUDGET
    healthy_after: float = DEFAULT_HEALTHY_AFTER

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{field.name} must be a positive number, not {value!r}")
            object.__setattr__(self, field.name, float(value))
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay:g}) must not be below initial_delay "
                f"({self.initial_delay:g})"
            )

    def delay(self, attempts: int, retry_after: float = 0.0) -> float:
        """Seconds to wait before the next attempt, after ``attempts`` failed ones.

        Args:
            attempts: Failed attempts since the last healthy connection (0 for the first).
            retry_after: Seconds the server asked for (``Retry-After``), or 0.

        Returns:
            The capped, jittered backoff, or ``retry_after`` when that is longer.
        """
        base = min(self.max_delay, self.initial_delay * 2.0 ** min(max(attempts, 0), 32))
        return max(base * random.uniform(0.5, 1.0), retry_after)

    def allows(self, failing_for: float, delay: float) -> bool:
        """Whether an attempt ``delay`` seconds from now still fits in the budget.

        Args:
            failing_for: Seconds since the stream last had a healthy connection.
            delay: The wait before the attempt.
        """
        return failing_for + delay <= self.budget


__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_HEALTHY_AFTER",
    "DEFAULT_RECONNECT_BUDGET",
    "ReconnectPolicy",
]
