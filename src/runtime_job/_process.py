"""Process-wide singletons: made on first use, closed at interpreter exit, reset after fork.

The stream hub and the job watcher each keep one instance per process. Both need the same
care: creation under a lock, a fresh instance after the old one was closed (but not while the
interpreter exits), a bounded close from ``atexit`` that never raises, and a clean slate in a
forked child, which inherits the instance but none of its threads.

Example::

    _hubs = ProcessSingleton(
        StreamHub, is_closed=lambda hub: hub.closed, at_exit=lambda hub: hub and hub.close(0.5)
    )
    hub = _hubs.get()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessSingleton(Generic[T]):
    """Holds the one ``T`` of this process.

    Args:
        factory: Makes a new instance.
        is_closed: Whether an instance was closed (the next :meth:`get` then makes another).
        at_exit: Runs at interpreter exit with the instance (``None`` if none was made), to
            close it; it must bound its own wait. What it raises is suppressed: exit stays
            quiet.
        after_fork: Also run in a forked child, after the instance is forgotten.
    """

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        is_closed: Callable[[T], bool],
        at_exit: Callable[[T | None], None],
        after_fork: Callable[[], None] | None = None,
    ) -> None:
        self._factory = factory
        self._is_closed = is_closed
        self._at_exit = at_exit
        self._after_fork_hook = after_fork
        self._lock = threading.Lock()
        self._value: T | None = None
        self._exiting = False
        atexit.register(self._close_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_after_fork)

    def get(self) -> T:
        """The instance, made now if there is none or it was closed (thread-safe).

        During interpreter exit a closed instance is returned as it is.
        """
        with self._lock:
            value = self._value
            if value is None or (self._is_closed(value) and not self._exiting):
                value = self._value = self._factory()
            return value

    def current(self) -> T | None:
        """The instance if one was made, without making one."""
        return self._value

    @property
    def exiting(self) -> bool:
        """Whether the interpreter is exiting (the ``atexit`` close ran)."""
        return self._exiting

    def _close_at_exit(self) -> None:
        self._exiting = True
        with contextlib.suppress(Exception):
            self._at_exit(self._value)

    def _forget_after_fork(self) -> None:
        self._value = None
        self._lock = threading.Lock()
        if self._after_fork_hook is not None:
            self._after_fork_hook()


__all__ = ["ProcessSingleton"]
