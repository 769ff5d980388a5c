"""The reactor's lease: how a waiting thread borrows the loop, and what it holds meanwhile.

A thread that waits for something a stream will deliver may run the reactor's loop in place
of the reactor thread (:meth:`~runtime_job.api.stream.reactor.Reactor.lead`). This module
holds the pieces of that hand-over: the :class:`Lease` (who asked, who owns the loop, its
state), :class:`Wakeup` (the flag the parked reactor thread rests on: one lock release to
set, not an ``Event``), and :class:`InterruptGuard` (``Ctrl-C`` held on the main thread
while it leads, raised once the loop is back). The reactor reads :data:`GRANT_TIMEOUT` and
:data:`LEASE_CHECK` from this module at each use, so tests may change them.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .reactor import Reactor, _Loop

ASKED, GRANTED, RETURNED, WITHDRAWN = "asked", "granted", "returned", "withdrawn"
GRANT_TIMEOUT = 0.05
"""Seconds a thread asking to lead waits for the reactor thread to hand over."""
LEASE_CHECK = 1.0
"""How often the parked reactor thread checks that the leading thread is still alive."""


class Lease:
    """One thread's turn at running a reactor's loop."""

    def __init__(
        self,
        loop: _Loop,
        owner: threading.Thread,
        owner_id: int | None,
        borrower: threading.Thread,
        borrower_id: int,
    ):
        self.loop = loop
        self.owner, self.owner_id = owner, owner_id
        self.borrower, self.borrower_id = borrower, borrower_id
        self.state = ASKED  # guarded by the reactor's lock
        self.granted = threading.Event()
        self.returned = Wakeup()


class Wakeup:
    """A flag that one thread waits for: setting it costs one lock release.

    ``threading.Event.set`` wakes its waiter while holding the condition's lock, which the
    waiter then needs too: 65 µs against 17 µs here, paid by a thread that gives the loop
    back on its way to the user.
    """

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()  # released by set(): what the waiter acquires

    def set(self) -> None:
        """Set the flag and wake the waiter (any thread; again: no effect)."""
        if self._flag:
            return
        self._flag = True
        try:  # noqa: SIM105 - not contextlib.suppress: three Python calls more on this path
            self._lock.release()
        except RuntimeError:  # two threads set it at once
            pass

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._flag

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the flag (one thread at a time); the flag."""
        return self._flag or self._lock.acquire(timeout=timeout) or self._flag


class InterruptGuard:
    """Holds ``Ctrl-C`` while the main thread runs the loop, and raises it afterwards."""

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self.pending = False
        self._old_wakeup_fd = -1

    @classmethod
    def install(cls, reactor: Reactor) -> InterruptGuard | Literal[False] | None:
        """The guard; ``None`` when none is needed; ``False`` when a signal handler could
        raise in the middle of a turn.

        ``None``: ``SIGINT`` is ignored, as in a process that a shell started in the
        background, so there is no ``Ctrl-C`` to hold.
        """
        sigint = _get_handler(_SIGINT)
        if sigint is not signal.default_int_handler and sigint != _SIG_IGN:
            return False
        for number in _OTHER_SIGNALS:
            if callable(_handler_of(number)):
                return False
        if sigint == _SIG_IGN:
            return None
        guard = cls(reactor)
        try:
            _set_handler(_SIGINT, guard._hold)
        except ValueError:  # not the main interpreter's main thread
            return False
        return guard

    def watch(self, loop: _Loop) -> None:
        """Make a signal wake ``loop``'s selector while this thread leads it.

        The handler runs only between two bytecodes, so a signal that lands just before
        the selector blocks would wait for its timeout; with the wake-up fd, the C-level
        handler itself wakes the selector. Set only while the loop is lent (its socket
        cannot close meanwhile), and the fd in place before is put back.
        """
        self._old_wakeup_fd = signal.set_wakeup_fd(loop.wake_w.fileno(), warn_on_full_buffer=False)

    def unwatch(self) -> None:
        """Put back the wake-up fd that was set before :meth:`watch`."""
        signal.set_wakeup_fd(self._old_wakeup_fd)

    def _hold(self, signum: int, frame: object) -> None:
        # Runs between two bytecodes of the leading thread, which may hold the reactor's
        # lock: write to the wake-up socket directly.
        self.pending = True
        loop = self._reactor._loop
        if loop is not None:
            with contextlib.suppress(OSError):
                loop.wake_w.send(b"\0")

    def restore(self) -> None:
        """Put the default handler back; raise the ``Ctrl-C`` that was held, if any."""
        _set_handler(_SIGINT, signal.default_int_handler)
        if self.pending:
            raise KeyboardInterrupt


def _signal_functions() -> tuple[Callable[[int, Any], object], Callable[[int], object]]:
    """``signal.signal`` and ``getsignal`` without their enum wrappers.

    The public functions convert each result to an enum, which costs ten times the call
    itself (50 µs when cold) on the path from a job's completion to ``result()``.
    """
    try:
        module: Any = importlib.import_module("_signal")
    except ImportError:  # pragma: no cover - another interpreter
        module = signal
    return module.signal, module.getsignal


_set_handler, _get_handler = _signal_functions()
_SIGINT = int(signal.SIGINT)
_SIG_IGN = int(signal.SIG_IGN)
_OTHER_SIGNALS = tuple(int(number) for number in signal.valid_signals() if number != signal.SIGINT)


def _handler_of(number: int) -> object:
    try:
        return _get_handler(number)
    except (OSError, ValueError):  # pragma: no cover - a number the platform rejects
        return None


__all__ = [
    "ASKED",
    "GRANTED",
    "GRANT_TIMEOUT",
    "LEASE_CHECK",
    "RETURNED",
    "WITHDRAWN",
    "InterruptGuard",
    "Lease",
    "Wakeup",
]
