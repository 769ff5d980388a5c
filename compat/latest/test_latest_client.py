"""The unmodified latest official client (qiskit-ibm-runtime 0.51, qiskit 2.x) against our
server's platform dialect: discovery, SamplerV2 and EstimatorV2 in job mode, in a Session and
in a Batch, the job calls (job, jobs, logs, metrics, usage, tags, cancel, delete), a failing
job and a job over its time limit. Every value is checked against qiskit's reference
primitives run here, in-process, on the same pubs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import Batch, EstimatorV2, SamplerV2, Session
from qiskit_ibm_runtime.exceptions import (
    IBMInputValueError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
)

SEED = 1234
RESULT_TIMEOUT = 60


def _isa(backend: Any, circuit: QuantumCircuit) -> QuantumCircuit:
    return generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)


def _bell(backend: Any) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return _isa(backend, circuit)


def _ansatz(backend: Any) -> tuple[QuantumCircuit, SparsePauliOp, np.ndarray]:
    theta = Parameter("theta")
    circuit = QuantumCircuit(2)
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    isa = _isa(backend, circuit)
    observable = SparsePauliOp.from_list([("ZZ", 1.0), ("XI", 0.5)]).apply_layout(isa.layout)
    return isa, observable, np.array([[0.2], [1.0], [2.5]])


def _check_sampler(result: Any, pubs: list[tuple[Any, ...]]) -> None:
    """Bit for bit what StatevectorSampler gives with the same seed and pubs."""
    reference = StatevectorSampler(seed=SEED).run(pubs).result()
    assert len(result) == len(reference)
    for got, expected in zip(result, reference, strict=True):
        assert got.data.meas.num_shots == expected.data.meas.num_shots
        np.testing.assert_array_equal(got.data.meas.array, expected.data.meas.array)
    spans = result.metadata["execution"]["execution_spans"]
    assert len(spans) == 1 and spans[0].size == sum(pub[2] for pub in pubs)


def _check_estimator(result: Any, pubs: list[tuple[Any, ...]], seed: int | None = None) -> None:
    """Exactly what StatevectorEstimator gives (same seed when there is a precision)."""
    reference = StatevectorEstimator(seed=seed).run(pubs).result()
    for got, expected in zip(result, reference, strict=True):
        np.testing.assert_allclose(got.data.evs, expected.data.evs, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got.data.stds, expected.data.stds)


# -- discovery --------------------------------------------------------------------------------


def test_discovery_finds_each_users_instances_and_refuses_others(platform: Any) -> None:
    alice, bob = platform.service(0), platform.service(1)
    mine = {i["crn"]: i for i in alice.instances()}
    theirs = {i["crn"] for i in bob.instances()}
    assert {i["plan"] for i in mine.values()} == {"open", "premium"}
    assert {i["pricing_type"] for i in mine.values()} == {"free", "paid"}
    assert not set(mine) & theirs
    assert {b.name for b in alice.backends()} == {"local_simulator", "local_device"}
    with pytest.raises(IBMInputValueError):
        platform.service(1, next(iter(mine)))


# -- job mode ---------------------------------------------------------------------------------


def test_sampler_v2_job_mode(service: Any, backend: Any) -> None:
    bell = _bell(backend)
    sampler = SamplerV2(mode=backend)
    sampler.options.simulator.seed_simulator = SEED
    plus = QuantumCircuit(2)
    plus.h([0, 1])
    plus.measure_all()
    plus = _isa(backend, plus)
    job = sampler.run([bell, plus], shots=500)
    result = job.result(timeout=RESULT_TIMEOUT)
    assert job.status() == "DONE" and job.session_id is None
    _check_sampler(result, [(bell, None, 500), (plus, None, 500)])
    counts = result[0].data.meas.get_counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 500


def test_estimator_v2_job_mode_exact_and_with_a_precision(service: Any, backend: Any) -> None:
    isa, observable, values = _ansatz(backend)
    exact = EstimatorV2(mode=backend).run([(isa, observable, values)])
    _check_estimator(exact.result(timeout=RESULT_TIMEOUT), [(isa, observable, values)])
    estimator = EstimatorV2(mode=backend)
    estimator.options.simulator.seed_simulator = SEED
    noisy = estimator.run([(isa, observable, values)], precision=0.02)
    result = noisy.result(timeout=RESULT_TIMEOUT)
    _check_estimator(result, [(isa, observable, values, 0.02)], seed=SEED)
    assert result[0].metadata["target_precision"] == 0.02


def test_the_simulator_backend_takes_circuits_as_written(service: Any) -> None:
    """``local_simulator`` says ``simulator: true``: no ISA check, and a Session opens none."""
    simulator = service.backend("local_simulator")
    circuit = QuantumCircuit(3)
    circuit.h(0)
    circuit.ccx(0, 1, 2)
    circuit.ry(0.4, 1)
    circuit.measure_all()
    with Session(backend=simulator) as session:
        assert session.session_id is None
        sampler = SamplerV2(mode=session)
        sampler.options.simulator.seed_simulator = SEED
        job = sampler.run([circuit], shots=256)
        _check_sampler(job.result(timeout=RESULT_TIMEOUT), [(circuit, None, 256)])
    assert job.backend().name == "local_simulator"


# -- sessions and batches ---------------------------------------------------------------------


def test_session_runs_both_primitives_then_closes(service: Any, backend: Any) -> None:
    bell = _bell(backend)
    isa, observable, values = _ansatz(backend)
    with Session(backend=backend, max_time=600) as session:
        assert session.session_id
        sampler = SamplerV2(mode=session)
        sampler.options.simulator.seed_simulator = SEED
        estimator = EstimatorV2(mode=session)
        sampled = sampler.run([bell], shots=200)
        estimated = estimator.run([(isa, observable, values)])
        _check_sampler(sampled.result(timeout=RESULT_TIMEOUT), [(bell, None, 200)])
        _check_estimator(estimated.result(timeout=RESULT_TIMEOUT), [(isa, observable, values)])
        assert sampled.session_id == estimated.session_id == session.session_id
        details = session.details()
        assert details["mode"] == "dedicated" and details["max_time"] == 600
        assert details["state"] == "inactive" and details["accepting_jobs"] is True
        listed = service.jobs(session_id=session.session_id, limit=10)
        assert {job.job_id() for job in listed} == {sampled.job_id(), estimated.job_id()}
    assert session.details()["state"] == "closed"
    assert session.status() == "Closed"


def test_batch_runs_jobs_and_cancelling_it_cancels_them(service: Any, backend: Any) -> None:
    bell = _bell(backend)
    isa, observable, _ = _ansatz(backend)
    long_values = np.linspace(0, 3, 200_000).reshape(-1, 1)
    with Batch(backend=backend) as batch:
        sampler = SamplerV2(mode=batch)
        sampler.options.simulator.seed_simulator = SEED
        quick = sampler.run([bell], shots=100)
        _check_sampler(quick.result(timeout=RESULT_TIMEOUT), [(bell, None, 100)])
        assert batch.details()["mode"] == "batch"
        slow = EstimatorV2(mode=batch).run([(isa, observable, long_values)])
        _wait_for(lambda: slow.status() == "RUNNING", "the long job runs")
        batch.cancel()
        _wait_for(lambda: slow.status() == "CANCELLED", "the batch's job is cancelled")
    assert quick.status() == "DONE"
    assert batch.details()["state"] == "closed"


# -- the job calls ------------------------------------------------------------------------------


def test_job_lookup_listing_logs_metrics_usage_and_tags(service: Any, backend: Any) -> None:
    bell = _bell(backend)
    sampler = SamplerV2(mode=backend)
    sampler.options.simulator.seed_simulator = SEED
    sampler.options.environment.job_tags = ["latest-leg"]
    job = sampler.run([bell], shots=64)
    job.result(timeout=RESULT_TIMEOUT)
    usage_before = service.usage()
    assert usage_before["usage_limit_reached"] is False
    assert usage_before["usage_consumed_seconds"] > 0

    found = service.job(job.job_id())
    assert found.job_id() == job.job_id() and found.status() == "DONE"
    assert found.tags == ["latest-leg"] and found.backend().name == "local_device"
    _check_sampler(found.result(), [(bell, None, 64)])
    assert found.inputs["pubs"][0][2] == 64
    assert found.usage_estimation["quantum_seconds"] > 0

    metrics = job.metrics()
    assert metrics["usage"]["status"] != "pending"
    assert job.usage() == metrics["usage"]["qpu_charge_time_seconds"]
    assert isinstance(job.logs(), str)

    assert sorted(job.update_tags(["x", "y"])) == ["x", "y"]
    assert [j.job_id() for j in service.jobs(job_tags=["x", "y"])] == [job.job_id()]
    assert service.jobs(job_tags=["latest-leg"]) == []
    listing = service.jobs(
        backend_name="local_device", program_id="sampler", pending=False, limit=50
    )
    assert job.job_id() in {j.job_id() for j in listing}
    oldest_first = service.jobs(limit=3, descending=False)
    assert len(oldest_first) == 3
    assert oldest_first[0].creation_date <= oldest_first[-1].creation_date
    assert service.jobs(created_after=job.creation_date, limit=100)

    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job(job.job_id())


def test_a_job_of_another_instance_is_found_through_the_multi_instance_lookup(
    platform: Any, service: Any, backend: Any
) -> None:
    premium = next(i["crn"] for i in service.instances() if i["plan"] == "premium")
    other = platform.service(0, premium)
    sampler = SamplerV2(mode=other.backend("local_device"))
    job = sampler.run([_bell(backend)], shots=16)
    job.result(timeout=RESULT_TIMEOUT)
    # Jobs are scoped per instance: the free-plan instance lists none of premium's jobs, yet
    # the client finds it by trying its other instances.
    assert job.job_id() not in {j.job_id() for j in service.jobs(limit=100)}
    assert platform.service().job(job.job_id()).job_id() == job.job_id()


def test_cancel_a_running_job(service: Any, backend: Any) -> None:
    isa, observable, _ = _ansatz(backend)
    long_values = np.linspace(0, 3, 200_000).reshape(-1, 1)
    job = EstimatorV2(mode=backend).run([(isa, observable, long_values)])
    _wait_for(lambda: job.status() == "RUNNING", "the long job runs")
    job.cancel()
    assert job.status() == "CANCELLED"
    assert service.job(job.job_id()).status() == "CANCELLED"


def test_a_failing_job(service: Any, backend: Any) -> None:
    sampler = SamplerV2(mode=backend)
    sampler.options.simulator.seed_simulator = -1  # the server's numpy refuses it
    job = sampler.run([_bell(backend)], shots=10)
    with pytest.raises(RuntimeJobFailureError, match="expected non-negative integer"):
        job.result(timeout=RESULT_TIMEOUT)
    assert job.status() == "ERROR"
    assert "Traceback" in (job.error_message() or "")


def test_a_job_over_its_time_limit(service: Any, backend: Any) -> None:
    isa, observable, _ = _ansatz(backend)
    estimator = EstimatorV2(mode=backend)
    estimator.options.max_execution_time = 1
    long_values = np.linspace(0, 3, 200_000).reshape(-1, 1)
    job = estimator.run([(isa, observable, long_values)])
    started = time.monotonic()
    with pytest.raises(RuntimeJobMaxTimeoutError, match="1305"):
        job.result(timeout=RESULT_TIMEOUT)
    assert time.monotonic() - started < 30
    assert job.status() == "ERROR"
    assert "ran longer than maximum execution time" in (job.error_message() or "")


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)
