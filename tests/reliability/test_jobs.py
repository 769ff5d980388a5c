"""Scenarios 13-15: callbacks that misbehave, cancel races, and responses of the wrong shape.

13. a callback that raises and one that blocks: the other jobs' streams are unaffected;
14. cancelling a job that has just finished reports the server's status;
15. unknown status strings and missing fields: clear errors, no crash, and the job works
    again once the server does.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from runtime_job import JobStatus, RuntimeService
from runtime_job.api.client import RuntimeClient
from runtime_job.exceptions import (
    ApiIBMProtocolError,
    IBMError,
    IBMRuntimeError,
    RuntimeInvalidStateError,
)
from runtime_job.server import LocalRuntimeServer

from .conftest import Collector, wait_until
from .faultproxy import FaultProxy, Lose, Rewrite

STATUS = {
    "COMPLETED": JobStatus.DONE,
    "CANCELLED": JobStatus.CANCELLED,
    "FAILED": JobStatus.ERROR,
}


def expected_frames(count: int) -> list[Any]:
    return [*({"index": i, "data": []} for i in range(count)), {"count": count}]


# -- 13. callbacks ---------------------------------------------------------------------------


def test_13_a_raising_and_a_blocking_callback_do_not_hold_up_other_jobs(
    server: LocalRuntimeServer,
    connect: Callable[..., RuntimeService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = connect(server.url)
    release = threading.Event()
    blocked_calls: list[Any] = []
    raised: list[int] = []

    def raising(job_id: str, value: Any) -> None:
        raised.append(1)
        raise ValueError("callback exploded")

    def blocking(job_id: str, value: Any) -> None:
        blocked_calls.append(value)
        release.wait(30)

    inputs = {"count": 20, "interval": 0.01}
    try:
        with caplog.at_level(logging.WARNING, logger="runtime_job"):
            bad = service.run("stream", inputs=inputs, callback=raising)
            stuck = service.run("stream", inputs=inputs, callback=blocking)
            others = [(Collector(), None) for _ in range(4)]
            jobs = [
                service.run("stream", inputs=inputs, callback=collector) for collector, _ in others
            ]
            for job, (collector, _) in zip(jobs, others, strict=True):
                assert job.result(timeout=30) == {"count": 20}
                job.wait_for_final_state(timeout=10)
                assert collector.seen == expected_frames(20)
            assert bad.result(timeout=30) == {"count": 20}
            bad.wait_for_final_state(timeout=10)
        assert len(raised) == 21  # every frame reached it, and each raise was survived
        messages = [r.getMessage() for r in caplog.records]
        assert sum(bad.job_id() in m and "callback exploded" in m for m in messages) == 21
        assert blocked_calls == [{"index": 0, "data": []}]  # still stuck on its first frame
        assert stuck.status() is JobStatus.DONE
    finally:
        release.set()
    assert wait_until(lambda: len(blocked_calls) == 21, timeout=10)
    assert blocked_calls == expected_frames(20)


def test_13_callback_errors_can_be_raised_from_result_without_touching_other_jobs(
    server: LocalRuntimeServer, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(server.url)

    def raising(job_id: str, value: Any) -> None:
        raise KeyError("strict callback")

    strict = service.run(
        "stream", inputs={"count": 5, "interval": 0.01}, callback=raising, callback_errors="raise"
    )
    fine = Collector()
    other = service.run("stream", inputs={"count": 5, "interval": 0.01}, callback=fine)
    with pytest.raises(IBMRuntimeError, match="strict callback") as caught:
        strict.result(timeout=30)
    assert isinstance(caught.value.__cause__, KeyError)
    assert other.result(timeout=30) == {"count": 5}
    other.wait_for_final_state(timeout=10)
    assert fine.seen == expected_frames(5)


# -- 14. cancel races ------------------------------------------------------------------------


def server_status(direct: RuntimeClient, job_id: str) -> str:
    return str(direct.job_get(job_id)["state"]["status"])


def test_14_cancelling_a_job_that_just_finished_reports_the_servers_status(
    server: LocalRuntimeServer, direct: RuntimeClient, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(server.url)
    job = service.run("sleep", inputs={"seconds": 0.2})
    assert job.status() in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert wait_until(lambda: server_status(direct, job.job_id()) == "COMPLETED")
    # The handle still believes the job is running when it asks to cancel it.
    with pytest.raises(RuntimeInvalidStateError, match="COMPLETED"):
        job.cancel()
    assert job.status() is JobStatus.DONE
    assert job.result() == {"slept": 0.2}


def test_14_cancel_races_always_end_in_the_servers_status(
    server: LocalRuntimeServer, direct: RuntimeClient, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(server.url)
    rng = random.Random(14)
    outcomes = set()
    for _ in range(16):
        job = service.run("sleep", inputs={"seconds": rng.uniform(0.0, 0.03)})
        job.status()
        time.sleep(rng.uniform(0.0, 0.04))
        try:
            job.cancel()
            outcomes.add("cancelled")
        except RuntimeInvalidStateError:
            outcomes.add("too late")
        truth = server_status(direct, job.job_id())
        assert truth in STATUS
        assert job.status() is STATUS[truth], (job.job_id(), truth)
    assert outcomes  # both branches are normally seen; either one must be consistent


def test_14_cancel_whose_answer_was_lost_reports_the_servers_status(
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    service = connect(proxy.url)
    job = service.run("sleep", inputs={"seconds": 10})
    assert job.status() in (JobStatus.QUEUED, JobStatus.RUNNING)
    proxy.add("POST", f"/jobs/{job.job_id()}/cancel", Lose(502), times=1)
    try:
        job.cancel()  # the retry finds the job already cancelled (409)
    except RuntimeInvalidStateError as err:
        assert "CANCELLED" in str(err)
    assert server_status(direct, job.job_id()) == "CANCELLED"
    assert job.status() is JobStatus.CANCELLED
    assert proxy.count("POST", f"/jobs/{job.job_id()}/cancel") == 2


# -- 15. unknown statuses, missing fields ------------------------------------------------------


def edit(change: Callable[[dict[str, Any]], Any]) -> Rewrite:
    def fn(status: int, body: bytes) -> tuple[int, bytes]:
        data = json.loads(body)
        change(data)
        return status, json.dumps(data).encode()

    return Rewrite(fn)


def set_state(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["state"] = value

    return change


def drop(*names: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        for name in names:
            data.pop(name, None)

    return change


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        pytest.param(
            set_state({"status": "EXPLODED"}),
            IBMError,
            ["Unknown status: EXPLODED"],
            id="unknown-status",
        ),
        pytest.param(set_state({"status": ""}), IBMError, ["Unknown status"], id="empty-status"),
        pytest.param(
            set_state({"reason": "x"}), IBMError, ["Unknown status: None"], id="no-status"
        ),
        pytest.param(drop("state"), IBMError, ["Unknown status: None"], id="no-state"),
        pytest.param(
            set_state("RUNNING"), ApiIBMProtocolError, ["field 'state'"], id="state-not-an-object"
        ),
        pytest.param(
            set_state({"status": 7}),
            ApiIBMProtocolError,
            ["state.status"],
            id="status-not-a-string",
        ),
        pytest.param(drop("id"), ApiIBMProtocolError, ["field 'id'"], id="no-id"),
    ],
)
def test_15_wrong_shapes_are_clear_errors_and_the_job_recovers(
    change: Callable[[dict[str, Any]], None],
    error: type[Exception],
    words: list[str],
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
) -> None:
    service = connect(proxy.url)
    job = service.run("echo", inputs={"z": 3})
    rule = proxy.add("GET", f"/jobs/{job.job_id()}", edit(change))
    for _ in range(2):  # asked twice: the same clear error, nothing cached
        with pytest.raises(error) as caught:
            job.status()
        assert type(caught.value) is error
        for word in words:
            assert word in str(caught.value)
        if error is ApiIBMProtocolError:
            assert job.job_id() in str(caught.value)
    with pytest.raises(error):
        job.result(timeout=5)
    assert rule.hits >= 3
    proxy.clear()
    assert job.result(timeout=30) == {"z": 3}
    assert job.status() is JobStatus.DONE


def test_15_missing_optional_fields_do_not_crash(
    proxy: FaultProxy, direct: RuntimeClient, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(proxy.url)
    job_id = str(direct.program_run("echo", None, {"w": 1}, None, None, None, None)["id"])
    assert wait_until(lambda: server_status(direct, job_id) == "COMPLETED")
    bare = drop(
        "backend",
        "program",
        "created",
        "tags",
        "session_id",
        "params",
        "status",
        "hub",
        "group",
        "project",
        "runtime",
        "cost",
    )
    proxy.add("GET", f"/jobs/{job_id}", edit(bare))
    proxy.add("GET", "/jobs", edit(lambda data: [bare(entry) for entry in data["jobs"]]))
    job = service.job(job_id)
    assert job.status() is JobStatus.DONE
    assert job.backend() is None
    assert job.creation_date is None
    assert job.program_id == ""
    assert job.result() == {"w": 1}
    assert all(j.job_id() for j in service.jobs(limit=3))


def test_15_listing_entries_of_the_wrong_shape_name_the_field(
    proxy: FaultProxy, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(proxy.url)
    service.run("echo", inputs={}).result(timeout=30)
    proxy.add("GET", "/jobs", edit(lambda data: data["jobs"][0].pop("id")))
    with pytest.raises(ApiIBMProtocolError, match="id"):
        service.jobs(limit=2)
    proxy.clear()
    proxy.add("GET", "/jobs", edit(lambda data: data.update(count="many")))
    with pytest.raises(ApiIBMProtocolError, match="count"):
        service.jobs(limit=2)
