"""A fake for :data:`runtime_job.timing.clock`: time that moves only when a test says so.

Every wait of the library goes through the clock seam (``monotonic``, ``sleep``, ``wait``).
:class:`FakeClock` answers them without real time passing, in one of two modes:

- ``autoadvance=True`` (the default): a thread that would block until some time instead moves
  the clock to that time at once, as if nothing else happened meanwhile. A poll loop that
  sleeps 5 s ten times returns at once with the clock 50 s later. Right for single-threaded
  tests and for loops that only sleep.
- ``autoadvance=False``: a timed wait blocks until the test moves the clock past its end
  (:meth:`FakeClock.advance`, :meth:`FakeClock.advance_to_next`) or, for an event or a
  condition, until it is signalled. With :meth:`FakeClock.wait_for_waiters` a test knows a
  thread is parked before it moves time, so what happens is decided by the test, not by the
  scheduler.

A fake wait never blocks for ever: after ``real_timeout`` real seconds it raises
``AssertionError`` naming what it waited for, so a test that forgot to move the clock fails
instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from runtime_job import timing

START = 1000.0
"""Where a fake clock starts (any value: only differences matter)."""


@dataclass(eq=False)
class _Waiter:
    """A thread blocked in the clock until ``target`` (fake seconds)."""

    target: float
    what: str
    wake: Callable[[], None]


class FakeClock:
    """A fake of :class:`runtime_job.timing.Clock` (see the module docstring).

    Args:
        start: The first value of :meth:`monotonic`.
        autoadvance: Whether a timed wait moves the clock itself (else the test does).
        real_timeout: Real seconds any fake wait may block before failing the test.

    Attributes:
        sleeps: Every ``sleep`` asked of the clock, in order (also those of 0 s).
    """

    def __init__(
        self, start: float = START, *, autoadvance: bool = True, real_timeout: float = 10.0
    ) -> None:
        self.autoadvance = autoadvance
        self.real_timeout = real_timeout
        self.sleeps: list[float] = []
        self._now = start
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []

    # ------------------------------------------------------------------ the test's side

    @property
    def now(self) -> float:
        """The fake time; assigning a later value moves the clock (``clock.now += 2``)."""
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self.advance_to(value)

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward and release the waits that end by then."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        return self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> float:
        """Move the clock to ``when`` (not before now); release the waits ending by then."""
        with self._cond:
            if when < self._now:
                raise ValueError(f"a monotonic clock cannot go back (from {self._now} to {when})")
            self._now = when
            due = [waiter for waiter in self._waiters if waiter.target <= when]
            self._cond.notify_all()
        for waiter in due:
            waiter.wake()
        return when

    def advance_to_next(self) -> float:
        """Move the clock to the end of the earliest blocked wait; return the new time."""
        with self._cond:
            if not self._waiters:
                raise AssertionError("no thread waits on the fake clock")
            target = min(waiter.target for waiter in self._waiters)
        return self.advance_to(max(target, self._now))

    @property
    def pending(self) -> list[float]:
        """When the waits blocked right now end (fake seconds), earliest first."""
        with self._cond:
            return sorted(waiter.target for waiter in self._waiters)

    def wait_for_waiters(self, count: int = 1, timeout: float | None = None) -> None:
        """Block until at least ``count`` threads are blocked in a timed wait of the clock."""
        limit = self.real_timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._waiters) >= count, limit):
                raise AssertionError(
                    f"timed out after {limit:g} s waiting for {count} thread(s) to wait on the "
                    f"fake clock ({len(self._waiters)} waiting)"
                )

    # ------------------------------------------------------------------ the library's side

    def monotonic(self) -> float:
        """The fake time."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of fake time (at once with ``autoadvance``)."""
        self.sleeps.append(seconds)
        if seconds <= 0:
            return
        if self.autoadvance:
            self.advance(seconds)
            return
        with self._cond:
            waiter = self._register(self._now + seconds, f"sleep({seconds:g})")
            try:
                ended = self._cond.wait_for(lambda: self._now >= waiter.target, self.real_timeout)
            finally:
                self._unregister(waiter)
        if not ended:
            self._hung(waiter.what)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait for ``event`` up to ``seconds`` of fake time; return whether it is set."""
        if event.is_set():
            return True
        if seconds is None:
            if not event.wait(self.real_timeout):
                self._hung("an event, without a timeout")
            return True
        if seconds <= 0:
            return event.is_set()
        if self.autoadvance:
            self.advance(seconds)
            return event.is_set()
        # Event.set() notifies the event's own condition; waiting on it (with the clock's
        # wake notifying it too) sees either without polling.
        event_cond: threading.Condition = getattr(event, "_cond")  # noqa: B009
        with self._cond:
            waiter = self._register(
                self._now + seconds, f"an event for {seconds:g} s", lambda: _notify(event_cond)
            )
        end = time.monotonic() + self.real_timeout
        try:
            with event_cond:
                while not event.is_set() and self._now < waiter.target:
                    left = end - time.monotonic()
                    if left <= 0:
                        self._hung(waiter.what)
                    event_cond.wait(left)
        finally:
            with self._cond:
                self._unregister(waiter)
        return event.is_set()

    def wait_condition(self, condition: threading.Condition, seconds: float | None) -> bool:
        """``condition.wait(seconds)`` in fake time (the caller holds ``condition``).

        Returns False when the time ran out, True when notified (as ``Condition.wait``).
        """
        if seconds is None:
            if not condition.wait(self.real_timeout):
                self._hung("a condition, without a timeout")
            return True
        if seconds <= 0:
            return False
        if self.autoadvance:
            self.advance(seconds)
            return False
        with self._cond:
            waiter = self._register(
                self._now + seconds, f"a condition for {seconds:g} s", lambda: _notify(condition)
            )
        try:
            # The caller holds ``condition``, so the wake (which takes it) cannot be lost.
            if not condition.wait(self.real_timeout):
                self._hung(waiter.what)
        finally:
            with self._cond:
                self._unregister(waiter)
        return self._now < waiter.target

    # ------------------------------------------------------------------ installing

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
        """Replace every method of ``timing.clock`` by this fake's (undone by ``monkeypatch``).

        Fails if the real clock has a method this fake lacks, so a new wait seam cannot
        silently use real time in the tests.
        """
        for name in _seams():
            fake = getattr(self, name, None)
            if fake is None:
                raise AssertionError(
                    f"FakeClock does not fake Clock.{name}: add it to tests/support/clock.py"
                )
            monkeypatch.setattr(timing.clock, name, fake)
        return self

    # ------------------------------------------------------------------ internals

    def _register(
        self, target: float, what: str, wake: Callable[[], None] = lambda: None
    ) -> _Waiter:
        waiter = _Waiter(target, what, wake)
        self._waiters.append(waiter)
        self._cond.notify_all()
        return waiter

    def _unregister(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)

    def _hung(self, what: str) -> None:
        raise AssertionError(
            f"a wait on the fake clock for {what} did not end within {self.real_timeout:g} real "
            f"seconds (fake time {self._now:g}; move it with advance())"
        )


def _notify(condition: threading.Condition) -> None:
    with condition:
        condition.notify_all()


def _seams() -> list[str]:
    """The public methods of the real clock."""
    return [
        name
        for name, value in vars(timing.Clock).items()
        if not name.startswith("_") and callable(value)
    ]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """A :class:`FakeClock` (auto-advancing) installed as ``runtime_job.timing.clock``.

    For a manual clock: ``fake_clock.autoadvance = False`` at the start of the test.
    """
    yield FakeClock().install(monkeypatch)
