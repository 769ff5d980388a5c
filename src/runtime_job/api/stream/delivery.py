"""Per-stream ordered delivery: a listener's calls, in order and one at a time.

Each subscription has a :class:`Delivery`: the queue between the thread that reads its
frames (the reactor's loop) and its listener. The queue is served by one dispatcher thread at
a time (a "serial executor"), so ``on_frame`` calls keep the server's order and never
overlap, and ``on_end`` comes exactly once, last. A listener that says ``inline = True``
(quick, never blocks: the job's own completion watcher) is called directly on the thread
that has the frame instead, still one call at a time.

A thread waiting for the stream that read its final frame itself may become the *host* of
the delivery (see :mod:`.waiting`): it then runs the last callbacks itself once it has given
the loop back, with no hand-off to a dispatcher.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ..protocol import StreamEnd, StreamFrame, StreamListener

logger = logging.getLogger("runtime_job.api.stream")

DISPATCH_BATCH = 64
"""Callbacks one subscription runs per turn before letting other subscriptions go first."""


class _End:
    """The marker queued after a subscription's last frame."""


END = _End()


class Delivery:
    """The listener side of one subscription: its queue, its end, the threads waiting on it.

    ``end``, ``error`` and the queue are guarded by ``_lock``. ``dispatch(self)`` asks for a
    dispatcher thread to run :meth:`drain`; ``released(self)`` is told once, when the end is
    recorded.

    Args:
        job_id: The job, for log lines.
        listener: Receives the frames, then the end.
        dispatch: Schedules :meth:`drain` on a dispatcher thread.
        released: Called once when the end is recorded (the hub forgets the stream).
    """

    def __init__(
        self,
        job_id: str,
        listener: StreamListener,
        dispatch: Callable[[Delivery], None],
        released: Callable[[Delivery], None],
    ) -> None:
        self.job_id = job_id
        self.listener = listener
        self._dispatch = dispatch
        self._released = released
        self._lock = threading.Lock()
        self.end: StreamEnd | None = None
        self.error: BaseException | None = None
        self._items: deque[StreamFrame | _End] = deque()
        self._scheduled = False
        self.waiters: set[int] = set()  # threads leading the loop while they wait for this
        self.host: int | None = None  # the waiter that took the final frame to deliver
        self.done = threading.Event()
        # An inline listener is called on the reactor (or on the thread that cancels), one
        # call at a time under ``_serial``: no hand-off to a dispatcher.
        self.inline = getattr(listener, "inline", False) is True
        self._serial = threading.RLock()  # re-entrant: the listener may cancel its stream
        self._end_called = False
        self.on_delivered: Callable[[], None] | None = None
        """Told after each listener call (the waiting strategy wakes parked waiters)."""

    def push(self, frame: StreamFrame) -> None:
        """Queue a frame for the listener, or hand it over now if inline (reactor thread)."""
        if self.inline:
            with self._serial:
                if self.end is None and not self._end_called:
                    self._call_frame(frame)
            return
        with self._lock:
            if self.end is not None:
                return
            self._items.append(frame)
            if self._scheduled:
                return
            self._scheduled = True
            if frame.final and threading.get_ident() in self.waiters:
                # Read by a thread that waits for this stream: it delivers the rest itself.
                self.host = threading.get_ident()
                return
        self._dispatch(self)

    def unhost(self, thread: int, *, run: bool) -> None:
        """A waiter that took the delivery (``host``) runs it now, or hands it to a dispatcher."""
        if self.host != thread:
            return  # only ``thread`` itself, while it waited, could have made it the host
        with self._lock:
            if self.host != thread:
                return
            self.host = None
        if run:
            self.drain()
        else:
            self._dispatch(self)

    def finish(
        self,
        end: StreamEnd,
        error: BaseException | None,
        *,
        drop_pending: bool,
        announce: Callable[[], None] | None = None,
    ) -> bool:
        """Record the end once and queue ``on_end`` (inline: call it); whether this was the first.

        ``announce`` (a log line) runs only for the first call, before ``on_end`` is queued,
        so whoever waits for ``on_end`` also sees the log record.
        """
        schedule = False
        with self._lock:
            if self.end is not None:
                return False
            self.end = end
            self.error = error
            if announce is not None:
                announce()
            if not self.inline:
                if drop_pending:
                    self._items.clear()
                self._items.append(END)
                schedule = not self._scheduled
                self._scheduled = True
        self._released(self)
        if self.inline:
            with self._serial:
                if not self._end_called:
                    self._call_end()
        elif schedule:
            self._dispatch(self)
        return True

    def drain(self) -> None:
        """Run this subscription's queued callbacks, in order (a dispatcher thread).

        Only one dispatcher runs a subscription at a time (``_scheduled``). It takes a batch,
        runs it, and goes to the back of the line if more came meanwhile, so a busy stream
        never keeps the others waiting for long.
        """
        items = self._items
        with self._lock:
            batch = [items.popleft() for _ in range(min(len(items), DISPATCH_BATCH))]
        for item in batch:
            if isinstance(item, _End):
                self._call_end()
            else:
                self._call_frame(item)  # skipped if cancelled since the batch was taken
        del batch
        with self._lock:
            if not items:
                self._scheduled = False
                return
        self._dispatch(self)

    def _call_frame(self, frame: StreamFrame) -> None:
        if self.end is StreamEnd.CANCELLED:
            return
        try:
            self.listener.on_frame(frame)
        except Exception:
            logger.warning(
                "The stream listener of job %s raised on a frame; streaming continues.",
                self.job_id,
                exc_info=True,
            )
        delivered = self.on_delivered
        if delivered is not None:
            delivered()

    def _call_end(self) -> None:
        assert self.end is not None
        self._end_called = True
        try:
            self.listener.on_end(self.end, self.error)
        except Exception:
            logger.warning(
                "The stream listener of job %s raised at the end of the stream.",
                self.job_id,
                exc_info=True,
            )
        finally:
            self.done.set()
            delivered = self.on_delivered
            if delivered is not None:
                delivered()


__all__ = ["DISPATCH_BATCH", "END", "Delivery"]
