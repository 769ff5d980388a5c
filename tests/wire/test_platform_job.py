"""RuntimeJob over PlatformClient (platform.md 5, 8): polling cadence, exact timeouts, reason
codes, error messages, cancel, logs, callbacks without a stream, and the later job members."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from responses import matchers

from runtime_job import JobStatus, RuntimeJob
from runtime_job.api.platform_client import PlatformClient
from runtime_job.exceptions import (
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobTimeoutError,
)
from runtime_job.v2 import bitarray_counts
from tests.support.clock import FakeClock
from tests.unit.test_codec_v2 import sampler_result

from .test_platform_auth import API_KEY, CRN_US, IAM, grant_reply, jwt

API = "https://quantum.cloud.ibm.com/api/v1"
JOB_URL = re.compile(re.escape(f"{API}/jobs/j1") + r"(\?.*)?$")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client(rsps: responses.RequestsMock) -> Iterator[PlatformClient]:
    grant_reply(rsps, jwt(3600))
    with PlatformClient(API_KEY, CRN_US) as made:
        yield made


def make_job(
    client: PlatformClient, session_id: str | None = None, program: str = "sampler", **kwargs: Any
) -> RuntimeJob:
    return RuntimeJob(
        None, client, client.params, "j1", program, None, session_id=session_id, **kwargs
    )


class StatusScript:
    """``GET /jobs/j1`` answers by fake time: ``[(from_time, state), ...]``."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, dict[str, Any]]]) -> None:
        self.clock = clock
        self.start = clock.now
        self.script = script
        self.times: list[float] = []
        self.queries: list[str] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        elapsed = self.clock.now - self.start
        self.times.append(elapsed)
        self.queries.append(request.url.partition("?")[2])
        state = [entry for at, entry in self.script if elapsed >= at][-1]
        body = {"id": "j1", "state": state, "program": {"id": "sampler"}, "backend": "ibm_a"}
        return 200, {}, json.dumps(body)


def script_status(
    rsps: responses.RequestsMock, clock: FakeClock, script: list[tuple[float, dict[str, Any]]]
) -> StatusScript:
    handler = StatusScript(clock, script)
    rsps.add_callback(responses.GET, JOB_URL, callback=handler)
    return handler


class TestWaiting:
    def test_polls_no_faster_than_half_a_second_and_decodes_v2(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        status = script_status(
            rsps, fake_clock, [(0, {"status": "Queued"}), (3, {"status": "Completed"})]
        )
        rsps.add(responses.GET, f"{API}/jobs/j1/results", body=json.dumps(sampler_result()))
        result = make_job(client).result()
        assert bitarray_counts(result[0].data.meas) == {"00": 1, "01": 1, "11": 2}
        gaps = [b - a for a, b in zip(status.times, status.times[1:], strict=False)]
        assert gaps and min(gaps) >= 0.5 - 1e-9
        assert status.times[-1] < 3.5  # done is learnt within one interval
        assert set(status.queries) == {"exclude_params=true"}

    def test_session_jobs_poll_at_a_tenth_of_a_second(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        status = script_status(
            rsps, fake_clock, [(0, {"status": "Running"}), (1, {"status": "Completed"})]
        )
        make_job(client, session_id="sess").wait_for_final_state()
        gaps = [b - a for a, b in zip(status.times, status.times[1:], strict=False)]
        assert min(gaps) == pytest.approx(0.1)

    def test_back_off_on_long_jobs(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        status = script_status(
            rsps, fake_clock, [(0, {"status": "Running"}), (600, {"status": "Completed"})]
        )
        make_job(client).wait_for_final_state()
        assert len(status.times) < 200  # 0.5 s polling would be 1200 requests
        assert status.times[-1] - 600 <= 5.0  # never later than the 5 s cap

    def test_timeout_is_exact(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        script_status(rsps, fake_clock, [(0, {"status": "Running"})])
        start = fake_clock.now
        with pytest.raises(RuntimeJobTimeoutError, match="after 1.2 secs"):
            make_job(client).result(timeout=1.2)
        assert fake_clock.now - start == pytest.approx(1.2)

    def test_iam_token_expiring_mid_wait_is_refreshed_without_401(
        self, rsps: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        grant_reply(rsps, jwt(60, serial=1))
        grant_reply(rsps, jwt(60, serial=2))
        script_status(
            rsps, fake_clock, [(0, {"status": "Running"}), (120, {"status": "Completed"})]
        )
        with PlatformClient(API_KEY, CRN_US) as made:
            make_job(made).wait_for_final_state()
        grants = [c for c in rsps.calls if c.request.url.startswith(IAM)]
        assert len(grants) >= 3  # a 60 s token, renewed before expiry while waiting 120 s
        assert all(c.response.status_code == 200 for c in rsps.calls)

    def test_timeout_bounds_a_token_refresh_iam_keeps_failing(
        self, rsps: responses.RequestsMock, fake_clock: FakeClock
    ) -> None:
        grant_reply(rsps, jwt(20, serial=1))  # unusable from about 10 s on
        script_status(rsps, fake_clock, [(0, {"status": "Running"})])
        with PlatformClient(API_KEY, CRN_US) as made:
            assert made.params.token_manager is not None
            made.params.token_manager.token()
            rsps.replace(
                responses.POST, f"{IAM}/identity/token", status=503, headers={"Retry-After": "30"}
            )
            start = fake_clock.now
            with pytest.raises(RuntimeJobTimeoutError, match="after 15 secs"):
                make_job(made).result(timeout=15)
        assert 9 <= fake_clock.now - start <= 15  # not the 60 s of IAM's two Retry-Afters


class TestOutcomes:
    def test_reason_code_1305_is_max_execution_time(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        script_status(
            rsps,
            fake_clock,
            [(0, {"status": "Cancelled", "reason": "Ran too long", "reasonCode": 1305})],
        )
        rsps.add(responses.GET, f"{API}/jobs/j1/results", body="out of time\nTraceback: x")
        job = make_job(client)
        with pytest.raises(RuntimeJobMaxTimeoutError, match="(?i)error code 1305; ran too long"):
            job.result()
        assert job.status() is JobStatus.ERROR
        assert job.error_message() == (
            "Job j1 ran longer than maximum execution time. Job was cancelled:\nTraceback: x"
        )
        assert job.errored()

    def test_failed_with_reason_code(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        script_status(
            rsps,
            fake_clock,
            [(0, {"status": "Failed", "reason": "Bad circuit", "reason_code": 1517})],
        )
        rsps.add(responses.GET, f"{API}/jobs/j1/results", body="details")
        with pytest.raises(RuntimeJobFailureError, match="(?i)error code 1517; bad circuit"):
            make_job(client).result()

    def test_cancel(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        rsps.add(responses.POST, f"{API}/jobs/j1/cancel", status=204)
        rsps.add(
            responses.GET,
            f"{API}/jobs/j1",
            match=[matchers.query_param_matcher({"exclude_params": "true"})],
            json={"id": "j1", "state": {"status": "Cancelled"}},
        )
        job = make_job(client)
        job.cancel()
        assert job.status() is JobStatus.CANCELLED
        with pytest.raises(RuntimeInvalidStateError, match="Job was cancelled"):
            job.result()

    def test_cancel_conflict(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        rsps.add(responses.POST, f"{API}/jobs/j1/cancel", status=409, json={"errors": []})
        rsps.add(responses.GET, JOB_URL, json={"id": "j1", "state": {"status": "Completed"}})
        with pytest.raises(RuntimeInvalidStateError, match="cannot be cancelled"):
            make_job(client).cancel()

    def test_logs_404_is_empty(self, rsps: responses.RequestsMock, client: PlatformClient) -> None:
        rsps.add(responses.GET, JOB_URL, json={"id": "j1", "state": {"status": "Running"}})
        rsps.add(responses.GET, f"{API}/jobs/j1/logs", status=404)
        assert make_job(client).logs() == ""

    def test_inputs_are_read_with_params(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        rsps.add(
            responses.GET,
            f"{API}/jobs/j1",
            match=[matchers.query_param_matcher({})],
            json={"id": "j1", "params": {"pubs": [], "version": 2}},
        )
        assert make_job(client).inputs == {"pubs": [], "version": 2}

    def test_callback_gets_the_final_result_once(
        self, rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
    ) -> None:
        script_status(rsps, fake_clock, [(0, {"status": "Running"}), (2, {"status": "Completed"})])
        rsps.add(responses.GET, f"{API}/jobs/j1/results", body='{"answer": 42}')
        got: list[tuple[str, Any]] = []
        job = make_job(
            client,
            program="echo",
            user_callback=lambda job_id, result: got.append((job_id, result)),
        )
        assert job.result() == {"answer": 42}
        from tests.support.waiting import wait_until

        wait_until(lambda: got, timeout=10)
        assert got == [("j1", {"answer": 42})]
        assert job.interim_results() is None


class TestLaterMembers:
    def test_usage_tags_queue_private_instance(
        self, rsps: responses.RequestsMock, client: PlatformClient
    ) -> None:
        metrics = {
            "usage": {"qpu_charge_time_seconds": 2, "status": "pending"},
            "position_in_queue": 4,
            "estimated_start_time": "2026-03-01T12:00:00Z",
        }
        rsps.add(responses.GET, f"{API}/jobs/j1/metrics", json=metrics)
        rsps.add(
            responses.GET,
            JOB_URL,
            json={
                "id": "j1",
                "state": {"status": "Queued"},
                "tags": ["x", "y"],
                "private": True,
                "estimated_running_time_seconds": 7.5,
            },
        )
        rsps.add(
            responses.PUT,
            f"{API}/jobs/j1/tags",
            match=[matchers.json_params_matcher({"tags": ["x", "y", "x"]})],
            status=204,
        )
        job = make_job(client)
        assert job.usage() == 0 and job.usage(partial=True) == 2
        assert job.usage_estimation == {"quantum_seconds": 7.5}
        assert job.update_tags(["x", "y", "x"]) == ["x", "y"] and job.tags == ["x", "y"]
        assert job.queue_position() is None  # nothing known yet without a request
        info = job.queue_info()
        assert info is not None and info.position == 4 and "2026-03-01" in info.format()
        assert job.queue_position() == 4
        assert job.private is True
        assert job.instance == CRN_US
        assert not job.errored()


def test_async_interim_results_are_empty_and_end_with_the_job(
    rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
) -> None:
    import asyncio

    script_status(rsps, fake_clock, [(0, {"status": "Running"}), (1, {"status": "Completed"})])
    rsps.add(responses.GET, f"{API}/jobs/j1/results", body='"done"')
    job = make_job(client, program="echo")

    async def main() -> list[Any]:
        return [item async for item in job.interim_results_async()]

    assert asyncio.run(main()) == []
    assert job.status() is JobStatus.DONE


def test_retry_after_on_a_status_poll_is_honoured(
    ordered: responses.RequestsMock, fake_clock: FakeClock
) -> None:
    grant_reply(ordered, jwt(3600))
    running = {"id": "j1", "state": {"status": "Running"}}
    ordered.add(responses.GET, JOB_URL, json=running)
    ordered.add(responses.GET, JOB_URL, status=429, headers={"Retry-After": "3"}, json={})
    ordered.add(responses.GET, JOB_URL, json={"id": "j1", "state": {"status": "Completed"}})
    with PlatformClient(API_KEY, CRN_US) as made:
        start = fake_clock.now
        make_job(made).wait_for_final_state(timeout=30)
        assert fake_clock.now - start >= 0.5 + 3.0  # one poll interval, then the server's wait
        assert 3.0 in fake_clock.sleeps or any(s >= 3.0 for s in fake_clock.sleeps)


def test_the_completion_watcher_keeps_the_platform_pace(
    rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
) -> None:
    status = script_status(
        rsps, fake_clock, [(0, {"status": "Queued"}), (4, {"status": "Completed"})]
    )
    rsps.add(responses.GET, f"{API}/jobs/j1/results", body='"done"')
    job = make_job(client, program="echo")
    assert job.to_future().result(timeout=30) == "done"
    gaps = [b - a for a, b in zip(status.times, status.times[1:], strict=False)]
    assert gaps and min(gaps) >= 0.5 - 1e-9


def test_status_callbacks_follow_the_polled_status(
    rsps: responses.RequestsMock, client: PlatformClient, fake_clock: FakeClock
) -> None:
    from tests.support.waiting import wait_until

    script_status(
        rsps,
        fake_clock,
        [(0, {"status": "Queued"}), (2, {"status": "Running"}), (4, {"status": "Completed"})],
    )
    seen: list[JobStatus] = []
    job = make_job(client, program="echo")
    job.add_status_callback(lambda job_id, status, position: seen.append(status))
    job.wait_for_final_state(timeout=30)
    wait_until(lambda: JobStatus.DONE in seen, timeout=10)
    # Two threads poll here (this wait and the watcher): a reply to an older poll may land
    # after a newer one, so only the first, a RUNNING and the last status are certain.
    assert seen[0] is JobStatus.QUEUED and JobStatus.RUNNING in seen
    assert seen[-1] is JobStatus.DONE and seen.count(JobStatus.DONE) == 1
