"""How a thread waits on a stream: it leads the reactor, or it parks (the hub's choice).

A thread that waits for something a stream will tell (``subscription.wait(until,
timeout)``: a job's ``result()``) is either put to work or put to sleep, and this module is
the one place that decides:

- **Lead** when the reactor lends its loop (:meth:`~.reactor.Reactor.lead`): the waiting
  thread reads the process's sockets itself, so the final frame reaches it with no thread
  hand-off, and a final frame of a stream with callbacks that it reads is delivered by it
  too (it *hosts* the delivery, :mod:`.delivery`) once it has given the loop back. On the
  main thread ``Ctrl-C`` is held for the length of a turn and raised afterwards
  (:class:`~.lease.InterruptGuard`).
- **Park** otherwise (another thread leads, no reactor runs, a signal set-up forbids it):
  the thread sleeps on its own event, woken by :func:`wake`, by each listener call of the
  stream, and at least every :data:`PARK_CHECK` seconds to try to lead again.

The caller holds no lock; ``until`` must be cheap and lock-free (it is checked after each
socket a leading thread serves). This module also keeps the bookkeeping of which threads
wait on which stream (``Delivery.waiters`` and ``Stream.parked``), so :func:`wake` reaches
them wherever they wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Stream

PARK_CHECK = 0.5
"""Longest sleep of a parked waiter before it checks ``until`` and tries to lead again."""
_new_event = threading.Event
"""What a parked waiter sleeps on (a seam for tests)."""


def wait(stream: Stream, until: Callable[[], bool], timeout: float) -> bool:
    """Block until ``until()`` holds or ``timeout`` seconds pass; returns ``until()``.

    Args:
        stream: The stream whose news the caller waits for.
        until: The condition (cheap, no locks).
        timeout: Seconds to wait at most (0: just check).

    Raises:
        KeyboardInterrupt: ``Ctrl-C`` arrived while the main thread was leading.
    """
    end = time.monotonic() + max(0.0, timeout)
    while True:
        # Lead first, check after: a thread that leads is the one that reads what it
        # waits for (and hosts a callback stream's last deliveries).
        left = end - time.monotonic()
        if stream.end is None and left > 0 and lead(stream, until, left):
            if until():
                return True
            continue
        if until():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        if _park(stream, until, min(left, PARK_CHECK)):
            return True


def lead(stream: Stream, until: Callable[[], bool], timeout: float) -> bool:
    """Lead the reactor for ``stream`` while waiting for ``until()``; whether it could.

    Returns ``False`` at once, having done nothing, when the reactor cannot lend its loop
    now. A final frame of a callback stream read while leading is delivered by this thread
    after the loop is given back (unless a ``KeyboardInterrupt`` ends the wait: a
    dispatcher then delivers it).
    """
    me = threading.get_ident()
    stream.waiters.add(me)
    try:
        served = stream.hub._reactor.lead(lambda: stream.host == me or until(), timeout)
    except BaseException:
        stream.unhost(me, run=False)  # no callbacks on an interrupted thread
        raise
    finally:
        stream.waiters.discard(me)
    if stream.host == me:
        stream.unhost(me, run=True)
    return served


def _park(stream: Stream, until: Callable[[], bool], seconds: float) -> bool:
    """Sleep up to ``seconds`` or until woken; whether ``until()`` holds."""
    event = _new_event()
    parked = stream.parked
    parked.append(event)
    if stream.on_delivered is None:
        stream.on_delivered = _waker(stream)  # kept: a no-op once nobody is parked
    try:
        if until():
            return True
        event.wait(seconds)
        return until()
    finally:
        parked.remove(event)


def _waker(stream: Stream) -> Callable[[], None]:
    """The hook a delivery calls after each listener call: wakes the parked threads."""

    def wake_parked() -> None:
        if stream.parked:
            for event in list(stream.parked):
                event.set()

    return wake_parked


def wake(stream: Stream) -> None:
    """Make every thread waiting on ``stream`` check its ``until`` again now (any thread).

    A thread leading the loop is poked through the reactor (unless it is the caller: it
    checks ``until`` after what it is doing anyway); parked threads are woken.
    """
    waiters = stream.waiters
    if waiters and (len(waiters) > 1 or threading.get_ident() not in waiters):
        stream.hub._reactor.poke()
    for event in list(stream.parked):
        event.set()


__all__ = ["PARK_CHECK", "lead", "wait", "wake"]
