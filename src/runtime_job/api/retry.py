"""Retry policy: what is retried, how often, and how long to wait in between.

:class:`RetryPolicy` is the frozen description (one per session); :class:`Attempts` counts
one request's attempts against it; :func:`parse_retry_after` reads the server's
``Retry-After``. Which statuses are retried at once (:meth:`RetryPolicy.retries_status`) and
which may succeed later (:func:`retryable_status`, the ``retryable`` attribute of the
transport's errors) are decided here and nowhere else. No I/O: the session sleeps and sends.

See ``docs/timeouts-and-retries.md`` for the policy and its defaults.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

GATEWAY_STATUSES: Final = frozenset({500, 502, 503, 504, 520, 521, 522, 524})
"""Server and gateway statuses after which a request that is safe to resend is retried."""
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods whose repetition has the same effect as one call (RFC 9110, section 9.2.2)."""
TOO_MANY_REQUESTS: Final = 429
"""Rate limited: the server refused the request without acting on it."""
SERVICE_UNAVAILABLE: Final = 503
"""The other status whose ``Retry-After`` is honoured."""
RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 425, TOO_MANY_REQUESTS})
"""4xx statuses after which the same request may succeed later (timeout, too early, rate)."""
NOT_RETRYABLE_SERVER_STATUSES: Final = frozenset({501, 505})
"""5xx statuses that sending again cannot change (not implemented, version unsupported)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is retried. One policy per session; immutable.

    A request is *safe to resend* when its method is idempotent (``GET``, ``HEAD``,
    ``OPTIONS``, ``PUT``, ``DELETE``), when it is a ``POST`` to a ``.../cancel`` path
    (cancelling twice is cancelling once), or when it carries an ``Idempotency-Key`` and the
    server said it honours such keys (see :data:`IDEMPOTENCY_SUPPORTED_HEADER`).

    What is retried, within ``max_attempts`` in all:

    - a connection that could not be established (the request was provably not sent):
      every method, up to ``connect_retries`` times;
    - a read timeout or a connection dropped mid-response: only requests safe to resend,
      up to ``read_retries`` times;
    - a status in ``retry_statuses``: only requests safe to resend, up to ``status_retries``
      times (with the statuses below);
    - 429: every method (the server did not act on it); a ``Retry-After`` is honoured;
    - 503 with ``Retry-After``: as any 503, waiting what the server asked.

    A ``Retry-After`` longer than ``retry_after_max`` is not slept through: the request
    fails at once with the status and the requested delay (``RequestsApiError.retry_after``).
    Other waits follow exponential backoff: ``backoff_initial`` doubled per retry
    (0.5, 1, 2, 4, 8 s with the defaults), capped at ``backoff_max``, each shortened by a
    random fraction of at most ``jitter`` so that many clients do not retry in step.

    Attributes:
        max_attempts: Requests sent at most, the first included.
        connect_retries: Retries after failing to connect.
        read_retries: Retries after a read timeout or a dropped response.
        status_retries: Retries after a retryable HTTP status (5xx gateways, 429).
        backoff_initial: Wait before the first retry, in seconds.
        backoff_factor: Growth of the wait per retry.
        backoff_max: Longest backoff wait, in seconds.
        jitter: Fraction (0 to 1) by which a backoff wait may be randomly shortened.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds.
        retry_statuses: Statuses retried on requests safe to resend.
        idempotent_methods: Methods safe to resend.
    """

    max_attempts: int = 6
    connect_retries: int = 3
    read_retries: int = 2
    status_retries: int = 5
    backoff_initial: float = 0.5
    backoff_factor: float = 2.0
    backoff_max: float = 8.0
    jitter: float = 0.25
    retry_after_max: float = 30.0
    retry_statuses: frozenset[int] = field(default=GATEWAY_STATUSES)
    idempotent_methods: frozenset[str] = field(default=IDEMPOTENT_METHODS)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("connect_retries", "read_retries", "status_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("backoff_initial", "backoff_max", "retry_after_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite, non-negative number of seconds")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that sends every request once and never retries.

        Returns:
            The policy.
        """
        return cls(max_attempts=1, connect_retries=0, read_retries=0, status_retries=0)

    def retries_status(self, status: int, safe_to_resend: bool) -> bool:
        """Whether an answer with ``status`` is retried (budget aside).

        Args:
            status: The HTTP status.
            safe_to_resend: Whether the request may be sent twice (see the class).

        Returns:
            ``True`` for 429 (any request: the server did not act on it) and for a status in
            :attr:`retry_statuses` when the request is safe to resend.
        """
        if status == TOO_MANY_REQUESTS:
            return True
        return status in self.retry_statuses and safe_to_resend

    def honours_retry_after(self, status: int) -> bool:
        """Whether a ``Retry-After`` on an answer with ``status`` replaces the backoff.

        Args:
            status: The HTTP status.

        Returns:
            ``True`` for 429 and 503.
        """
        return status in (TOO_MANY_REQUESTS, SERVICE_UNAVAILABLE)

    def backoff(self, retry: int, fraction: float = 0.0) -> float:
        """The wait before retry number ``retry``.

        Args:
            retry: 1 for the first retry, 2 for the second, ...
            fraction: A number in ``[0, 1)``; the wait is shortened by ``fraction * jitter``
                of itself. ``0`` gives the nominal wait.

        Returns:
            Seconds to wait.
        """
        nominal = min(
            self.backoff_max, self.backoff_initial * self.backoff_factor ** max(0, retry - 1)
        )
        return nominal * (1.0 - self.jitter * fraction)


DEFAULT_RETRY_POLICY: Final = RetryPolicy()
"""The policy a session uses when none is given."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header.

    Args:
        value: The header: seconds (``"2"``, ``"1.5"``) or an HTTP date.
        now: The current time, for HTTP dates (default: now, UTC).

    Returns:
        Seconds to wait (never negative), or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Attempts:
    """Counts the attempts and retries of one request against a policy.

    Attributes:
        policy: The policy.
        sent: Requests sent so far (the first included).
        retries: Retries taken so far, of any kind.
        note: Why the last failure was not retried, when it is worth saying.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.sent = 0
        self.retries = 0
        self.note: str | None = None
        self._used = {"connect": 0, "read": 0, "status": 0}
        self._limits = {
            "connect": policy.connect_retries,
            "read": policy.read_retries,
            "status": policy.status_retries,
        }

    def allows(self, kind: str) -> bool:
        """Whether one more retry of ``kind`` (connect, read, status) is within the budget."""
        return self.sent < self.policy.max_attempts and self._used[kind] < self._limits[kind]

    def take(self, kind: str) -> int:
        """Count a retry of ``kind``; the number of this retry (1 for the first)."""
        self._used[kind] += 1
        self.retries += 1
        return self.retries


def retryable_status(status: int) -> bool:
    """Whether a request that failed with ``status`` may succeed if sent again later.

    Args:
        status: An HTTP error status.

    Returns:
        ``True`` for 408, 425, 429 and 5xx (except 501 and 505).
    """
    if status >= 500:
        return status not in NOT_RETRYABLE_SERVER_STATUSES
    return status in RETRYABLE_CLIENT_STATUSES


__all__ = [
    "DEFAULT_RETRY_POLICY",
    "GATEWAY_STATUSES",
    "IDEMPOTENT_METHODS",
    "NOT_RETRYABLE_SERVER_STATUSES",
    "RETRYABLE_CLIENT_STATUSES",
    "TOO_MANY_REQUESTS",
    "Attempts",
    "RetryPolicy",
    "parse_retry_after",
    "retryable_status",
]
