"""The handle a subscriber holds: :class:`StreamHandle` (implements ``StreamSubscription``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, overload

from ..protocol import StreamEnd
from . import waiting

if TYPE_CHECKING:
    from .hub import Stream


class StreamHandle:
    """A handle on one subscription: cancel it, wait on it, watch its end.

    Attributes:
        job_id: The job being streamed.
    """

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self.job_id = stream.job_id

    def cancel(self) -> None:
        """Stop the stream now; ``on_end(CANCELLED, None)`` follows unless it already ended.

        Returns at once: the socket is closed by the reactor (close 1000, best effort).
        Frames queued but not yet delivered are dropped; a callback already running
        finishes. Safe to call at any time, twice, or from a listener callback; a cancel
        before the connection is even open is never lost.
        """
        self._stream.hub._cancel(self._stream)

    @property
    def active(self) -> bool:
        """Whether the stream has not ended yet (``False`` as soon as ``cancel`` returns)."""
        return self._stream.end is None

    @property
    def reconnecting(self) -> bool:
        """Whether the stream lost its connection, or could not open one, and tries again.

        ``True`` from the first failed attempt until a new connection delivers data or stays
        up (see ``ReconnectPolicy.healthy_after``); a waiting job then polls instead of
        trusting the stream.
        """
        stream = self._stream
        return stream.end is None and stream.failing_since is not None

    @property
    def acknowledged(self) -> bool:
        """Whether a connection of this stream was acknowledged by the server (ever).

        From then on the server knows the subscriber: what the job publishes reaches it
        even from a server that does not replay.
        """
        return self._stream.acknowledged

    @property
    def end(self) -> StreamEnd | None:
        """How the stream ended, once it has."""
        return self._stream.end

    @property
    def error(self) -> BaseException | None:
        """The error the stream ended with (``FAILED`` only)."""
        return self._stream.error

    @overload
    def wait(self, until: Callable[[], bool], timeout: float) -> bool: ...

    @overload
    def wait(self, timeout: float | None = None, /) -> bool: ...

    def wait(
        self, until: Callable[[], bool] | float | None = None, timeout: float | None = None
    ) -> bool:
        """Block the calling thread until ``until()`` holds or ``timeout`` seconds pass.

        Whether the thread reads the sockets itself meanwhile or sleeps until woken
        (:meth:`wake`, a listener call) is the hub's choice (:mod:`.waiting`); the caller
        must hold no lock that the listener needs. ``until`` is checked often: keep it
        cheap and lock-free.

        ``wait(timeout)`` (a number or ``None``, no condition) waits for the stream's
        end instead: until ``on_end`` has returned.

        Args:
            until: The condition.
            timeout: Seconds to wait at most.

        Returns:
            ``until()`` at the end of the wait (or whether ``on_end`` has returned).

        Raises:
            KeyboardInterrupt: ``Ctrl-C`` while the main thread was reading the sockets
                (held until the end of the turn, so no frame is lost).
        """
        if until is None or not callable(until):
            return self._stream.done.wait(until if timeout is None else timeout)
        if timeout is None:
            raise TypeError("wait(until, timeout) needs a timeout: every wait has a bound")
        return waiting.wait(self._stream, until, timeout)

    def wake(self) -> None:
        """Make the threads in :meth:`wait` check their ``until`` again now (any thread)."""
        waiting.wake(self._stream)

    def __repr__(self) -> str:
        state = "active" if self.active else f"ended={self._stream.end}"
        return f"<StreamHandle job={self.job_id} {state}>"


__all__ = ["StreamHandle"]
