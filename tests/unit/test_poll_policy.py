"""The polling schedule of a wait without a stream (``runtime_job.timing.PollPolicy``).

Time is the clock seam (``timing.clock.monotonic``), advanced by hand: nothing sleeps.
"""

from __future__ import annotations

import pytest

from runtime_job import futures
from runtime_job.timing import DEFAULT_POLL_POLICY, PollPolicy
from tests.support import FakeClock

REFERENCE_INTERVAL = 0.1
"""The reference client's fixed polling loop (qiskit-ibm-runtime 0.11)."""


def status_requests(policy: PollPolicy, job_seconds: float, fake: FakeClock, rtt: float) -> int:
    """Status requests of one wait on a job that ends ``job_seconds`` after the wait starts.

    Each request takes ``rtt``; the wait asks, sleeps the next interval, asks again...
    """
    intervals = policy.intervals()
    start = fake.now
    requests = 0
    while True:
        fake.now += rtt
        requests += 1
        if fake.now - start >= job_seconds:
            return requests
        fake.now += intervals.next()


def interval_at(policy: PollPolicy, seconds: float, fake: FakeClock) -> float:
    """The interval the wait sleeps when ``seconds`` have passed since it started."""
    intervals = policy.intervals()
    start = fake.now
    value = intervals.next()
    while fake.now - start + value < seconds:
        fake.now += value
        value = intervals.next()
    return value


def test_default_schedule_first_polls_then_proportional_then_capped(fake_clock: FakeClock) -> None:
    intervals = DEFAULT_POLL_POLICY.intervals()
    assert intervals.next() == pytest.approx(0.01)
    fake_clock.now += 0.2
    assert intervals.next() == pytest.approx(0.01)  # 4 % of 0.2 s is less than the floor
    fake_clock.now += 0.8
    assert intervals.next() == pytest.approx(0.04)  # 4 % of the 1 s waited
    fake_clock.now += 9.0
    assert intervals.next() == pytest.approx(0.4)
    fake_clock.now += 990.0
    assert intervals.next() == pytest.approx(2.0)  # the cap


def test_near_a_short_jobs_end_the_interval_keeps_the_median_delay_small(
    fake_clock: FakeClock,
) -> None:
    # Completion falls uniformly inside an interval: the median delay is half of it.
    assert interval_at(DEFAULT_POLL_POLICY, 0.3, fake_clock) / 2 <= 0.0061


@pytest.mark.parametrize("rtt", [0.0, 0.001, 0.01])
def test_a_60_s_job_costs_far_fewer_requests_than_the_reference(
    fake_clock: FakeClock, rtt: float
) -> None:
    reference = 60.0 / REFERENCE_INTERVAL
    count = status_requests(DEFAULT_POLL_POLICY, 60.0, fake_clock, rtt)
    assert 130 <= count <= 170
    assert count <= reference / 3.5


def test_request_counts_stated_in_the_docs(fake_clock: FakeClock) -> None:
    counts = {
        seconds: status_requests(DEFAULT_POLL_POLICY, seconds, fake_clock, 0.001)
        for seconds in (0.3, 1.0, 10.0, 30.0, 60.0, 600.0)
    }
    assert counts == {0.3: 28, 1.0: 58, 10.0: 116, 30.0: 144, 60.0: 162, 600.0: 432}


def test_a_long_wait_settles_at_the_cap(fake_clock: FakeClock) -> None:
    intervals = DEFAULT_POLL_POLICY.intervals()
    fake_clock.now += 3600.0
    assert [intervals.next() for _ in range(3)] == [2.0, 2.0, 2.0]


def test_a_longer_server_hint_wins(fake_clock: FakeClock) -> None:
    intervals = DEFAULT_POLL_POLICY.intervals()
    assert intervals.next(hint=3.0) == 3.0
    assert intervals.next(hint=0.001) == pytest.approx(0.01)


def test_each_wait_starts_its_own_time(fake_clock: FakeClock) -> None:
    policy = PollPolicy()
    first = policy.intervals()
    fake_clock.now += 10.0
    assert first.next() == pytest.approx(0.4)
    assert policy.intervals().next() == pytest.approx(0.01)


def test_geometric_policies_are_unchanged_by_the_proportional_part(fake_clock: FakeClock) -> None:
    intervals = futures.WATCH_POLL_POLICY.intervals()
    got = []
    for _ in range(6):
        value = intervals.next()
        got.append(value)
        fake_clock.now += value
    assert got == pytest.approx([0.05, 0.075, 0.1125, 0.16875, 0.253125, 0.3796875])


def test_factor_and_ratio_can_both_be_off(fake_clock: FakeClock) -> None:
    intervals = PollPolicy(initial=0.2, factor=1.0, ratio=0.0, max_interval=5.0).intervals()
    fake_clock.now += 1000.0
    assert intervals.next() == 0.2
