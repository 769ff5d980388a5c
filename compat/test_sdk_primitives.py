"""The reference's primitives (qiskit-ibm-runtime 0.11.2) against our server (issue 19).

Two legs, each scenario run on both:

- ``reference``: the unmodified ``QiskitRuntimeService`` with ``Session``, ``Sampler`` and
  ``Estimator``, as a 0.11-era user ran them;
- ``ours``: the same unmodified ``Session``/``Sampler``/``Estimator`` given *our* service
  (``Session(service=runtime_job.RuntimeService(...))``), as a wrapper that switches the
  import does, in the reference's environment (qiskit-terra 0.24.1, numpy<2).

Values are checked against qiskit's own reference primitives (``qiskit.primitives.Sampler``
and ``Estimator`` of qiskit-terra 0.24): equal in exact mode (``shots=None``), within five
standard deviations of the exact values with shots. The server simulates with the qiskit of
the main venv (1.x/2.x), so this also checks the codec across qiskit versions.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.primitives import Estimator as ReferenceEstimator
from qiskit.primitives import Sampler as ReferenceSampler
from qiskit.primitives import SamplerResult
from qiskit.providers.jobstatus import JobStatus
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import Result
from qiskit_ibm_runtime import Estimator, Options, Sampler, Session
from qiskit_ibm_runtime.utils.runner_result import RunnerResult as ReferenceRunnerResult

BACKEND = "local_simulator"
SHOTS = 4000
LEGS = ["reference", "ours"]


@pytest.fixture(params=LEGS)
def leg_service(request: pytest.FixtureRequest) -> Any:
    """The reference's service, or ours, logged in to the same server."""
    return request.getfixturevalue("service" if request.param == "reference" else "our_service")


# The callback given as ``Options.environment.callback``. The reference deep-copies its
# options, so it must survive ``deepcopy``: a plain function (copied by reference) recording
# into module-level state.
_CALLS: list[tuple[str, Any]] = []
_CALLS_LOCK = threading.Lock()


def record_callback(job_id: str, result: Any) -> None:
    with _CALLS_LOCK:
        _CALLS.append((job_id, result))


def calls_for(job_id: str) -> list[Any]:
    with _CALLS_LOCK:
        return [result for jid, result in _CALLS if jid == job_id]


def ansatz() -> QuantumCircuit:
    theta = ParameterVector("t", 3)
    circuit = QuantumCircuit(3, name="ansatz")
    circuit.h(0)
    circuit.ry(theta[0], 1)
    circuit.cx(0, 1)
    circuit.rz(theta[1], 2)
    circuit.crx(theta[2], 1, 2)
    circuit.h(2)
    return circuit


def measured(circuit: QuantumCircuit) -> QuantumCircuit:
    out = circuit.copy()
    out.measure_all()
    return out


def bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2, 2, name="bell")
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


VALUES = [[0.3, -1.2, 0.7], [2.0, 0.5, -0.4]]
OBSERVABLES = [
    SparsePauliOp(["ZZI", "XIX", "IYY"], [1.0, -0.5, 0.25]),
    SparsePauliOp("ZII"),
    SparsePauliOp(["XXX", "ZZZ"], [0.5j * -2j, 1.0]),
]


def options(shots: int | None, seed: int | None = None) -> Options:
    opts = Options()
    opts.execution.shots = shots
    opts.simulator.seed_simulator = seed
    opts.environment.callback = record_callback
    return opts


def sampler_inputs() -> tuple[list[QuantumCircuit], list[list[float]]]:
    circuit = measured(ansatz())
    return [circuit, bell(), circuit], [VALUES[0], [], VALUES[1]]


def estimator_inputs() -> tuple[list[QuantumCircuit], list[SparsePauliOp], list[list[float]]]:
    circuit = ansatz()
    return [circuit, circuit, circuit], OBSERVABLES, [VALUES[0], VALUES[0], VALUES[1]]


def exact_sampler() -> SamplerResult:
    circuits, values = sampler_inputs()
    return ReferenceSampler().run(circuits, values).result()


def exact_estimator() -> Any:
    circuits, observables, values = estimator_inputs()
    return ReferenceEstimator().run(circuits, observables, values).result()


def assert_within_shot_noise(quasi: dict[int, float], exact: dict[int, float]) -> None:
    for key in set(quasi) | set(exact):
        p = exact.get(key, 0.0)
        sigma = math.sqrt(p * (1 - p) / SHOTS)
        assert abs(quasi.get(key, 0.0) - p) <= 5 * sigma + 1e-9, (key, quasi, exact)


def test_session_with_sampler_and_estimator_exact(leg_service: Any) -> None:
    """Parametrised circuits, several circuits and observables, shots=None, callbacks, two
    jobs in one session, session.close(): values equal qiskit's reference primitives."""
    with Session(service=leg_service, backend=BACKEND, max_time=600) as session:
        sampler = Sampler(session=session, options=options(shots=None))
        estimator = Estimator(session=session, options=options(shots=None))
        circuits, values = sampler_inputs()
        sampler_job = sampler.run(circuits, values)
        est_circuits, observables, est_values = estimator_inputs()
        estimator_job = estimator.run(est_circuits, observables, est_values)

        sampled = sampler_job.result()
        estimated = estimator_job.result()
        assert session.session_id == sampler_job.job_id()
        assert estimator_job.session_id == sampler_job.job_id()
        assert sampler_job.status() == JobStatus.DONE
        assert estimator_job.status() == JobStatus.DONE
        session.close()

    expected = exact_sampler()
    assert isinstance(sampled, SamplerResult)
    assert len(sampled.quasi_dists) == len(expected.quasi_dists) == 3
    for quasi, want in zip(sampled.quasi_dists, expected.quasi_dists, strict=True):
        assert dict(quasi) == pytest.approx(dict(want), abs=1e-12)
        assert quasi.shots == math.inf
    np.testing.assert_allclose(estimated.values, exact_estimator().values, atol=1e-12)
    assert list(estimated.metadata) == [{}, {}, {}]

    # Each job's callback got its final result (the reference cannot tell it from an
    # interim one; ours decodes it as the final result).
    for job in (sampler_job, estimator_job):
        _wait_for(lambda job=job: bool(calls_for(job.job_id())), f"callback of {job.job_id()}")
    with pytest.raises(RuntimeError, match="The session is closed"):
        session.run("echo", inputs={})


def test_session_with_shots_is_within_shot_noise(leg_service: Any) -> None:
    with Session(service=leg_service, backend=BACKEND, max_time=600) as session:
        sampler = Sampler(session=session, options=options(shots=SHOTS, seed=7))
        estimator = Estimator(session=session, options=options(shots=SHOTS, seed=9))
        circuits, values = sampler_inputs()
        sampled = sampler.run(circuits, values).result()
        est_circuits, observables, est_values = estimator_inputs()
        estimated = estimator.run(est_circuits, observables, est_values).result()
        session.close()

    for quasi, exact in zip(sampled.quasi_dists, exact_sampler().quasi_dists, strict=True):
        assert quasi.shots == SHOTS
        assert quasi.stddev_upper_bound == pytest.approx(math.sqrt(1 / SHOTS))
        assert_within_shot_noise(dict(quasi), dict(exact))
    assert all(meta["shots"] == SHOTS for meta in sampled.metadata)

    shot_estimate = ReferenceEstimator().run(
        est_circuits, observables, est_values, shots=SHOTS, seed=1
    )
    variances = [meta["variance"] for meta in shot_estimate.result().metadata]
    for value, exact, variance, meta in zip(
        estimated.values, exact_estimator().values, variances, estimated.metadata, strict=True
    ):
        assert meta["shots"] == SHOTS
        assert meta["variance"] == pytest.approx(variance, abs=1e-9)
        assert abs(value - exact) <= 5 * math.sqrt(variance / SHOTS) + 1e-9


def test_pytket_style_retrieval(leg_service: Any) -> None:
    """``service.job(id).result().quasi_dists``, as pytket-qiskit read its results."""
    with Session(service=leg_service, backend=BACKEND, max_time=600) as session:
        circuits, values = sampler_inputs()
        job_id = (
            Sampler(session=session, options=options(shots=None)).run(circuits, values).job_id()
        )
        session.close()
    retrieved = leg_service.job(job_id)
    quasi_dists = retrieved.result().quasi_dists
    for quasi, want in zip(quasi_dists, exact_sampler().quasi_dists, strict=True):
        assert dict(quasi) == pytest.approx(dict(want), abs=1e-12)
    assert retrieved.status() == JobStatus.DONE


def test_circuit_runner(leg_service: Any) -> None:
    """The ``circuit-runner`` program: a qiskit Result, decoded by the reference's RunnerResult
    (its default decoder for that program) and, on our service, by ours."""
    inputs = {
        "circuits": [bell(), measured(ansatz().assign_parameters(VALUES[0]))],
        "shots": 500,
        "memory": True,
        "initial_layout": [0, 1],
        "seed_transpiler": 1,
        "optimization_level": 1,
        "measurement_error_mitigation": True,
    }
    job = leg_service.run("circuit-runner", inputs=inputs, options={"backend": BACKEND})
    result = job.result()
    assert isinstance(result, Result)
    if type(leg_service).__module__.startswith("qiskit_ibm_runtime"):
        assert isinstance(result, ReferenceRunnerResult)
    assert type(result).__name__ == "RunnerResult"
    counts = result.get_counts(0)
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 500
    assert len(result.get_memory(0)) == 500
    assert set(result.get_quasiprobabilities(0)) <= {0, 3}
    assert sum(result.get_counts(1).values()) == 500
    assert job.backend().name == BACKEND


def test_reference_runner_result_on_our_service(our_service: Any) -> None:
    """The reference's RunnerResult passed to our service as a decoder (duck type)."""
    inputs = {"circuits": [bell()], "shots": 100}
    job = our_service.run(
        "circuit-runner",
        inputs=inputs,
        options={"backend": BACKEND},
        result_decoder=ReferenceRunnerResult,
    )
    result = job.result()
    assert isinstance(result, ReferenceRunnerResult)
    assert sum(result.get_counts().values()) == 100


def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_numpy_circuit_metadata(leg_service: Any) -> None:
    """Circuit metadata holding numpy values travels (QPY's metadata serializer is the
    runtime encoder, on both sides) and comes back as the hosted service's header_metadata."""
    circuit = bell()
    # (np.int64 is left out: the reference cannot encode numpy integers, its oddity 35.)
    circuit.metadata = {"angles": np.array([0.1, 0.2]), "scale": np.float64(1.5)}
    with Session(service=leg_service, backend=BACKEND, max_time=600) as session:
        result = Sampler(session=session, options=options(shots=None)).run([circuit]).result()
        session.close()
    assert dict(result.quasi_dists[0]) == pytest.approx({0: 0.5, 3: 0.5}, abs=1e-12)
    header = result.metadata[0]["header_metadata"]
    np.testing.assert_array_equal(header["angles"], [0.1, 0.2])
    assert header["scale"] == 1.5


def test_our_codec_on_qiskit_terra(our_service: Any) -> None:
    """Our codec under qiskit-terra 0.24: parameters (``_uuid``, not ``uuid``), operators and
    states as ``settings`` payloads, through the server (qiskit 1.x/2.x) and back."""
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import Pauli, PauliList, Statevector

    theta = Parameter("θ")
    vector = ParameterVector("v", 2)
    inputs = {
        "theta": theta,
        "element": vector[1],
        "observables": [OBSERVABLES[0], PauliList(["XZ", "YY"]), Pauli("-iZ")],
        "state": Statevector.from_label("+0"),
    }
    out = our_service.run("echo", inputs=inputs, options={"backend": BACKEND}).result()
    assert out["theta"] == theta and out["theta"]._uuid == theta._uuid
    assert out["element"].name == "v[1]" and out["element"]._uuid == vector[1]._uuid
    assert out["observables"] == inputs["observables"]
    assert out["state"] == inputs["state"]
