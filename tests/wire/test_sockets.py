"""Against real loopback sockets: a server that never answers, a port nobody listens on."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from runtime_job.api.client import RuntimeClient
from runtime_job.api.retry import RetryPolicy
from runtime_job.exceptions import RequestsApiError

from .conftest import StalledServer, local_params

READ_TIMEOUT = 0.3


def test_stalled_get_times_out_within_the_read_timeout(
    make_client: Callable[..., RuntimeClient], stalled_server: StalledServer
) -> None:
    params = local_params(url=stalled_server.url, connect_timeout=2.0, read_timeout=READ_TIMEOUT)
    client = make_client(params, policy=RetryPolicy.never())
    start = time.monotonic()
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    elapsed = time.monotonic() - start
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + 1.0
    assert info.value.status_code == -1
    assert "read timeout" in info.value.message
    assert stalled_server.accepted == 1


def test_stalled_get_is_retried_a_bounded_number_of_times(
    make_client: Callable[..., RuntimeClient],
    stalled_server: StalledServer,
    sleeps: list[float],
) -> None:
    params = local_params(url=stalled_server.url, connect_timeout=2.0, read_timeout=READ_TIMEOUT)
    client = make_client(params)
    start = time.monotonic()
    with pytest.raises(RequestsApiError) as info:
        client.job_get("j1")
    elapsed = time.monotonic() - start
    assert stalled_server.accepted == 3  # read_retries=2
    assert sleeps == [0.5, 1.0]
    assert elapsed < 3 * READ_TIMEOUT + 1.5
    assert "Gave up after 3 attempts" in info.value.message


def test_stalled_post_jobs_is_not_resent(
    make_client: Callable[..., RuntimeClient],
    stalled_server: StalledServer,
    sleeps: list[float],
) -> None:
    params = local_params(url=stalled_server.url, connect_timeout=2.0, read_timeout=READ_TIMEOUT)
    client = make_client(params)
    with pytest.raises(RequestsApiError):
        client.program_run("p", None, {}, None, None, None, None)
    assert stalled_server.accepted == 1
    assert sleeps == []


def test_refused_connection_fails_fast(
    make_client: Callable[..., RuntimeClient], refused_url: str, sleeps: list[float]
) -> None:
    client = make_client(local_params(url=refused_url, connect_timeout=2.0))
    start = time.monotonic()
    with pytest.raises(RequestsApiError) as info:
        client.list_backends()
    assert time.monotonic() - start < 2.0
    assert info.value.status_code == -1
    assert len(sleeps) == 3
