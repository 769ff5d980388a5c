"""The fake clock and the shared wait do what the tests rely on."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from runtime_job import timing
from runtime_job.timing import Deadline
from tests.support import FakeClock, wait_until


def test_fixture_installs_every_seam_and_sleep_advances(fake_clock: FakeClock) -> None:
    start = timing.clock.monotonic()
    timing.clock.sleep(5)
    timing.clock.sleep(0)
    assert timing.clock.monotonic() == start + 5
    assert fake_clock.sleeps == [5, 0]
    deadline = Deadline(3)
    fake_clock.now += 2.5
    assert not deadline.expired()
    fake_clock.advance(0.5)
    assert deadline.expired()


def test_autoadvance_timed_waits_end_at_once(fake_clock: FakeClock) -> None:
    event = threading.Event()
    assert timing.clock.wait(event, 7) is False
    assert fake_clock.now == 1007
    event.set()
    assert timing.clock.wait(event, 7) is True
    assert fake_clock.now == 1007
    condition = threading.Condition()
    with condition:
        assert fake_clock.wait_condition(condition, 2) is False
    assert fake_clock.now == 1009


def test_clock_cannot_go_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="cannot go back"):
        clock.now -= 1


def run(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, name="fake-clock-test")
    thread.start()
    return thread


def test_manual_sleep_ends_when_the_test_moves_time() -> None:
    clock = FakeClock(autoadvance=False)
    done = threading.Event()

    def sleeper() -> None:
        clock.sleep(3)
        done.set()

    thread = run(sleeper)
    clock.wait_for_waiters(1)
    assert clock.pending == [1003]
    clock.advance(2.9)
    assert not done.is_set()
    assert clock.pending == [1003]  # still parked: the wait ends only at its time
    clock.advance_to_next()
    thread.join(5)
    assert done.is_set()
    assert clock.pending == []


def test_manual_event_wait_ends_on_set_or_on_time() -> None:
    clock = FakeClock(autoadvance=False)
    results: list[bool] = []
    event = threading.Event()
    thread = run(lambda: results.append(clock.wait(event, 10)))
    clock.wait_for_waiters(1)
    event.set()
    thread.join(5)
    assert results == [True]
    assert clock.now == 1000

    other = threading.Event()
    thread = run(lambda: results.append(clock.wait(other, 10)))
    clock.wait_for_waiters(1)
    clock.advance(10)
    thread.join(5)
    assert results == [True, False]


def test_manual_condition_wait_ends_on_notify_or_on_time() -> None:
    clock = FakeClock(autoadvance=False)
    condition = threading.Condition()
    results: list[bool] = []

    def waiter() -> None:
        with condition:
            results.append(clock.wait_condition(condition, 4))

    thread = run(waiter)
    clock.wait_for_waiters(1)
    with condition:
        condition.notify_all()
    thread.join(5)
    thread = run(waiter)
    clock.wait_for_waiters(1)
    clock.advance(4)
    thread.join(5)
    assert results == [True, False]


def test_a_forgotten_wait_fails_instead_of_hanging() -> None:
    clock = FakeClock(autoadvance=False, real_timeout=0.05)
    with pytest.raises(AssertionError, match=r"sleep\(3\).*advance"):
        clock.sleep(3)
    with pytest.raises(AssertionError, match="2 thread"):
        clock.wait_for_waiters(2, timeout=0.01)


def test_wait_until_returns_the_value_or_names_what_it_waited_for() -> None:
    box = [0]
    threading.Timer(0.01, lambda: box.__setitem__(0, 42)).start()
    assert wait_until(lambda: box[0], what="the answer") == 42
    with pytest.raises(AssertionError, match="timed out after 0.02 s waiting for nothing"):
        wait_until(lambda: False, timeout=0.02, what="nothing")


def test_wait_until_uses_real_time_under_the_fake_clock(fake_clock: FakeClock) -> None:
    with pytest.raises(AssertionError, match="waiting for"):
        wait_until(lambda: False, timeout=0.02)
    assert fake_clock.now == 1000


def test_install_refuses_a_clock_seam_it_does_not_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing.Clock, "deadline_at", lambda self: 0.0, raising=False)
    with pytest.raises(AssertionError, match=r"Clock\.deadline_at"):
        FakeClock().install(monkeypatch)
