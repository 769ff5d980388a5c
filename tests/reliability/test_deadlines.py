"""The transport honours a caller's deadline (the ``deadline=`` argument of its calls).

What ``result(timeout=T)`` needs from the transport to return within T against a stalled
server or during a slow download: every request given the deadline ends by it, whatever
the session's read timeout, retries and body size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.exceptions import NotFoundError, UserTimeoutExceededError
from runtime_job.server import LocalRuntimeServer
from runtime_job.timing import Deadline

from .conftest import ALICE
from .faultproxy import FaultProxy, Respond, Stall, Throttle
from .test_http import finished_job


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[RuntimeClient]:
    with RuntimeClient(ClientParameters(channel="local", token=ALICE, url=proxy.url)) as c:
        yield c


def test_a_stalled_request_ends_at_the_deadline_not_the_read_timeout(
    proxy: FaultProxy, client: RuntimeClient, direct: RuntimeClient, sleeps: list[float]
) -> None:
    job_id = finished_job(direct)
    proxy.add("GET", f"/jobs/{job_id}", Stall())
    started = time.monotonic()
    with pytest.raises(UserTimeoutExceededError) as caught:
        client.job_get(job_id, deadline=Deadline(0.5))
    assert 0.45 < time.monotonic() - started < 1.5
    assert job_id in str(caught.value) and "timeout ran out" in str(caught.value)
    assert sleeps == []  # no retry was started that would pass the deadline


def test_a_slow_download_ends_at_the_deadline(
    proxy: FaultProxy, client: RuntimeClient, direct: RuntimeClient
) -> None:
    job_id = finished_job(direct, "big-text", mib=2)
    proxy.add("GET", f"/jobs/{job_id}/results", Throttle(chunk=64 * 1024, interval=0.05))
    started = time.monotonic()
    with pytest.raises(UserTimeoutExceededError):
        client.job_results(job_id, deadline=Deadline(0.4))
    assert time.monotonic() - started < 1.2


def test_within_the_deadline_everything_is_as_usual(
    proxy: FaultProxy, client: RuntimeClient, direct: RuntimeClient
) -> None:
    job_id = finished_job(direct, "big-text", mib=1)
    deadline = Deadline(30)
    text = client.job_results(job_id, deadline=deadline)
    job = client.fetch_job(job_id, deadline=deadline)
    body = text if isinstance(text, bytes) else text.encode()
    assert body == b'"' + b"x" * 1024 * 1024 + b'"'
    assert job.id == job_id
    assert proxy.connections == 1  # the streamed bodies still left the connection reusable


def test_a_retry_wait_longer_than_the_time_left_is_not_slept(
    proxy: FaultProxy, client: RuntimeClient, direct: RuntimeClient, sleeps: list[float]
) -> None:
    job_id = finished_job(direct)
    proxy.add("GET", f"/jobs/{job_id}", Respond(429, "{}", {"Retry-After": "5"}))
    started = time.monotonic()
    with pytest.raises(UserTimeoutExceededError, match="retry"):
        client.job_get(job_id, deadline=Deadline(1.0))
    assert time.monotonic() - started < 1.0
    assert sleeps == []


def test_without_a_deadline_nothing_changes(
    proxy: FaultProxy, client: RuntimeClient, direct: RuntimeClient, sleeps: list[float]
) -> None:
    job_id = finished_job(direct)
    proxy.add("GET", f"/jobs/{job_id}", Respond(503, "{}"), times=2)
    assert client.job_get(job_id, deadline=Deadline(None))["id"] == job_id  # no limit
    assert len(sleeps) == 2
    proxy.add("GET", f"/jobs/{job_id}", Respond(404, '{"errors": [{"message": "gone"}]}'))
    with pytest.raises(NotFoundError) as caught:
        client.job_get(job_id, deadline=Deadline(5))
    assert caught.value.status_code == 404 and "gone" in str(caught.value)


def test_the_deadline_bounds_only_the_call_it_is_given_to(
    server: LocalRuntimeServer, proxy: FaultProxy, direct: RuntimeClient, sleeps: list[float]
) -> None:
    job_id = finished_job(direct)
    params = ClientParameters(channel="local", token=ALICE, url=proxy.url, read_timeout=1.0)
    with RuntimeClient(params) as client:
        deadline = Deadline(0.3)
        proxy.add("GET", f"/jobs/{job_id}", Stall(), times=1)
        with pytest.raises(UserTimeoutExceededError):
            client.job_get(job_id, deadline=deadline)
        # The same client, without a deadline (the deadline above has passed): the request
        # waits for a stall to end (the read timeout of 1 s), then succeeds on the retry.
        proxy.add("GET", f"/jobs/{job_id}", Stall(), times=1)
        assert deadline.expired()
        assert client.job_get(job_id)["id"] == job_id
    assert len(sleeps) == 1
