"""The later job members on the 2023 dialect (``local`` channel), against our server."""

from __future__ import annotations

import pytest

from runtime_job import JobStatus, RuntimeService
from runtime_job.exceptions import IBMInputValueError

BACKEND = "local_simulator"


def test_later_members_on_the_local_channel(service: RuntimeService) -> None:
    job = service.run("hello-world", inputs={"iterations": 1}, options={"backend": BACKEND})
    assert job.result(timeout=60) == "Hello, World!"
    assert not job.errored() and job.status() is JobStatus.DONE
    assert job.usage() >= 0 and job.usage(partial=True) >= 0
    assert job.usage_estimation == {}
    assert job.update_tags(["x", "y", "x"]) == ["x", "y"]
    assert service.job(job.job_id()).tags == ["x", "y"]
    with pytest.raises(IBMInputValueError):
        job.update_tags("not-a-list")
    assert job.queue_position() is None and job.queue_info() is None  # not queued
    assert job.private is False
    assert job.instance is None
    assert job.properties() is None or job.properties()["backend_name"] == BACKEND
    usage = service.usage()
    assert usage["usage_limit_reached"] is False and usage["usage_consumed_seconds"] >= 0


def test_errored(service: RuntimeService) -> None:
    job = service.run("fail", inputs={}, options={"backend": BACKEND})
    job.wait_for_final_state(timeout=60)
    assert job.errored()
