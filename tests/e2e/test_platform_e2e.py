"""Our client on the platform dialect, end to end against our own server's ``/api/v1``.

The same service calls as on the ``local`` channel, with only ``channel`` changed (plus the
server's URL and the user's API key, which the local channel also takes): IAM, instance
discovery, submissions, polling, V2 results, the later job members, errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import JobStatus, RuntimeService
from runtime_job.api.platform_client import PlatformClient
from runtime_job.exceptions import (
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
)
from runtime_job.server import LocalRuntimeServer
from tests.support.waiting import wait_until

from .conftest import TOKEN

BACKEND = "local_simulator"


@pytest.fixture(params=["ibm_quantum_platform", "ibm_cloud"])
def platform(
    request: pytest.FixtureRequest, server: LocalRuntimeServer
) -> Iterator[RuntimeService]:
    with RuntimeService(channel=request.param, url=server.url, token=TOKEN) as svc:
        yield svc


def test_discovery_and_a_job_from_start_to_end(platform: RuntimeService) -> None:
    client = platform._api_client
    assert isinstance(client, PlatformClient)
    assert [item.plan for item in client.instances] == ["open", "premium"]  # free plan first
    got: list[tuple[str, Any]] = []
    job = platform.run(
        "hello-world",
        inputs={"iterations": 2},
        options={"backend": BACKEND, "job_tags": ["e2e"]},
        callback=lambda job_id, result: got.append((job_id, result)),
    )
    assert job.result(timeout=60) == "Hello, World!"
    assert job.status() is JobStatus.DONE and job.done() and not job.errored()
    wait_until(lambda: got, timeout=10)
    assert got == [(job.job_id(), "Hello, World!")]  # the final result, once
    assert job.interim_results() is None
    assert isinstance(job.logs(), str)
    assert "timestamps" in job.metrics()
    assert job.usage() >= 0
    assert job.instance == client.instance
    assert job.update_tags(["a", "b", "a"]) == ["a", "b"]
    again = platform.job(job.job_id())
    assert again.tags == ["a", "b"] and again.status() is JobStatus.DONE
    assert job.job_id() in [j.job_id() for j in platform.jobs(limit=5, job_tags=["a"])]
    assert platform.usage()["usage_consumed_seconds"] >= 0
    platform.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        platform.job(job.job_id())


def test_v2_sampler_and_estimator(platform: RuntimeService) -> None:
    pytest.importorskip("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.primitives import PrimitiveResult
    from qiskit.quantum_info import SparsePauliOp

    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    measured = bell.copy()
    measured.measure_all()
    sampler = platform.run(
        "sampler",
        inputs={"pubs": [(measured, None, 256)], "version": 2, "support_qiskit": True},
        options={"backend": BACKEND},
    )
    result = sampler.result(timeout=60)
    assert isinstance(result, PrimitiveResult)
    counts = result[0].data.meas.get_counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 256
    estimator = platform.run(
        "estimator",
        inputs={"pubs": [(bell, SparsePauliOp(["ZZ", "XX"]))], "version": 2},
        options={"backend": BACKEND},
    )
    evs = estimator.result(timeout=60)[0].data.evs
    assert evs == pytest.approx(2.0)


def test_max_execution_time_is_reason_code_1305(platform: RuntimeService) -> None:
    job = platform.run(
        "slow-stream",
        inputs={"count": 100, "interval": 0.2},
        options={"backend": BACKEND, "max_execution_time": 1},
    )
    with pytest.raises(RuntimeJobMaxTimeoutError, match="1305"):
        job.result(timeout=60)
    assert job.status() is JobStatus.ERROR
    assert "ran longer than maximum execution time" in (job.error_message() or "")


def test_cancel_and_unknown_program(platform: RuntimeService) -> None:
    job = platform.run(
        "slow-stream", inputs={"count": 100, "interval": 0.2}, options={"backend": BACKEND}
    )
    job.cancel()
    job.wait_for_final_state(timeout=30)
    assert job.status() is JobStatus.CANCELLED
    with pytest.raises(RuntimeProgramNotFound):
        platform.run("no-such-program", inputs={}, options={"backend": BACKEND})


def test_session_and_batch(platform: RuntimeService) -> None:
    from runtime_job.sessions import Batch, Session

    with Session(platform, backend=BACKEND, max_time="10m") as session:
        job = session.run("hello-world", inputs={"iterations": 1})
        assert job.session_id == session.session_id
        assert job.result(timeout=60) == "Hello, World!"
        assert session.details()["id"] == session.session_id
        assert session.status() != ""
    assert session._closed
    with pytest.raises(Exception, match="The session is closed"):
        session.run("hello-world", inputs={})
    batch = Batch(platform, backend=BACKEND)
    slow = batch.run("slow-stream", inputs={"count": 100, "interval": 0.2})
    batch.cancel()
    slow.wait_for_final_state(timeout=30)
    assert slow.status() is JobStatus.CANCELLED
    assert Batch.from_id(batch.session_id, platform).backend == BACKEND


def test_iam_token_is_renewed_before_our_server_would_refuse_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's IAM tokens last 3600 s: an hour later (on both clocks) the client
    fetches a new one first, so the request succeeds instead of meeting a 401."""
    from tests.support.clock import FakeClock
    from tests.support.server import local_server

    key = "platform-iam-e2e-token-0123456789"
    with local_server(tmp_path, tokens=[key], workers=1) as srv:
        auth = srv.authenticator
        real_now, offset = auth.now, [0.0]
        monkeypatch.setattr(auth, "now", lambda: real_now() + offset[0])
        clock = FakeClock().install(monkeypatch)
        with RuntimeService(channel="ibm_quantum_platform", url=srv.url, token=key) as svc:
            job = svc.run("hello-world", inputs={"iterations": 1}, options={"backend": BACKEND})
            assert job.result(timeout=600) == "Hello, World!"
            manager = svc._api_client._iam
            grants = manager.grants
            offset[0] += 3605.0  # the server's clock: the first token has expired
            clock.advance(3605.0)  # and as much time passed for the client
            assert svc.job(job.job_id()).status() is JobStatus.DONE  # no 401
            assert manager.grants == grants + 1
