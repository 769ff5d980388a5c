"""The server's primitives and what SDK wrappers reach for, through our service (issue 19).

- ``sampler`` and ``estimator`` results are what the reference's decoders and qiskit's
  result classes accept (hex keys, no ``shots: null``), with values equal to the exact ones
  (qiskit's ``StatevectorEstimator``, ``Statevector`` probabilities) and within shot noise
  with shots; observables travel as ``SparsePauliOp`` ``settings`` payloads;
- ``circuit-runner`` returns a qiskit ``Result`` dict, decoded by our ``RunnerResult``;
- ``job.status() == qiskit.providers.JobStatus.DONE``;
- ``service.active_account()`` builds a new service, ``service._account``, ``channel``,
  ``_api_client.close_session(id)`` and ``job.backend().name`` have the reference's shapes.

The reference's own primitives on this service run in ``make compat`` (qiskit-terra 0.24).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

qiskit = pytest.importorskip("qiskit")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit import ParameterVector  # noqa: E402
from qiskit.primitives import SamplerResult, StatevectorEstimator  # noqa: E402
from qiskit.providers import JobStatus as QiskitJobStatus  # noqa: E402
from qiskit.quantum_info import SparsePauliOp, Statevector  # noqa: E402
from qiskit.result import Result  # noqa: E402

from runtime_job import RuntimeService  # noqa: E402
from runtime_job.decoders import ResultDecoder  # noqa: E402
from runtime_job.server import LocalRuntimeServer  # noqa: E402
from tests.integration.helpers import ALICE  # noqa: E402

BACKEND = {"backend": "local_simulator"}


@pytest.fixture(scope="module")
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    with RuntimeService(channel="local", url=server.url, token=ALICE) as svc:
        yield svc


def ansatz() -> QuantumCircuit:
    theta = ParameterVector("t", 3)
    circuit = QuantumCircuit(3, name="ansatz", metadata={"kind": "ansatz"})
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


def exact_distribution(circuit: QuantumCircuit, values: list[float]) -> dict[int, float]:
    bound = circuit.assign_parameters(values) if values else circuit
    state = Statevector(bound.remove_final_measurements(inplace=False))
    return {int(k, 2): v for k, v in state.probabilities_dict(decimals=16).items()}


def test_sampler_exact_matches_the_statevector(service: RuntimeService) -> None:
    circuits = [measured(ansatz()), bell()]
    inputs = {
        "circuits": circuits,
        "circuit_indices": [0, 1, 0],
        "parameter_values": [VALUES[0], [], VALUES[1]],
        "run_options": {"shots": None},
    }
    job = service.run("sampler", inputs=inputs, options=BACKEND)
    result = job.result(timeout=60)
    assert job.status() == QiskitJobStatus.DONE
    assert isinstance(result, SamplerResult)
    expected = [
        exact_distribution(circuits[0], VALUES[0]),
        {0: 0.5, 3: 0.5},
        exact_distribution(circuits[0], VALUES[1]),
    ]
    for quasi, want in zip(result.quasi_dists, expected, strict=True):
        assert dict(quasi) == pytest.approx(want, abs=1e-12)
        assert quasi.shots == math.inf and quasi.stddev_upper_bound == 0.0
    raw = job.result(decoder=ResultDecoder)
    for dist in raw["quasi_dists"]:
        assert all(key.startswith("0x") and int(key, 16) >= 0 for key in dist)
    assert raw["metadata"][0] == {"header_metadata": {"kind": "ansatz"}}
    assert all("shots" not in meta for meta in raw["metadata"])


def test_sampler_with_shots_is_within_shot_noise(service: RuntimeService) -> None:
    shots = 4000
    inputs = {
        "circuits": [measured(ansatz())],
        "parameter_values": [VALUES[0]],
        "run_options": {"shots": shots, "seed_simulator": 11},
    }
    result = service.run("sampler", inputs=inputs, options=BACKEND).result(timeout=60)
    quasi = result.quasi_dists[0]
    assert quasi.shots == shots and result.metadata[0]["shots"] == shots
    assert sum(quasi.values()) == pytest.approx(1.0)
    for key, p in exact_distribution(inputs["circuits"][0], VALUES[0]).items():
        sigma = math.sqrt(p * (1 - p) / shots)
        assert abs(quasi.get(key, 0.0) - p) <= 5 * sigma + 1e-9


def observables() -> list[SparsePauliOp]:
    return [
        SparsePauliOp(["ZZI", "XIX", "IYY"], [1.0, -0.5, 0.25]),
        SparsePauliOp("ZII"),
    ]


def test_estimator_exact_matches_qiskits_reference_estimator(service: RuntimeService) -> None:
    circuit = ansatz()
    obs = observables()
    inputs = {
        "circuits": [circuit],
        "circuit_indices": [0, 0, 0],
        "observables": obs,
        "observable_indices": [0, 1, 0],
        "parameter_values": [VALUES[0], VALUES[0], VALUES[1]],
        "run_options": {"shots": None},
    }
    job = service.run("estimator", inputs=inputs, options=BACKEND)
    result = job.result(timeout=60)
    reference = StatevectorEstimator().run(
        [(circuit, obs[0], VALUES[0]), (circuit, obs[1], VALUES[0]), (circuit, obs[0], VALUES[1])]
    )
    expected = [float(pub.data.evs) for pub in reference.result()]
    np.testing.assert_allclose(result.values, expected, atol=1e-12)
    assert result.metadata == [{}, {}, {}]


def test_estimator_with_shots_is_within_shot_noise(service: RuntimeService) -> None:
    circuit, obs, shots = ansatz(), observables()[0], 4000
    inputs = {
        "circuits": [circuit],
        "observables": [obs],
        "parameter_values": [VALUES[1]],
        "run_options": {"shots": shots, "seed_simulator": 5},
    }
    result = service.run("estimator", inputs=inputs, options=BACKEND).result(timeout=60)
    state = Statevector(circuit.assign_parameters(VALUES[1]))
    exact = float(state.expectation_value(obs).real)
    variance = float(state.expectation_value(obs @ obs).real) - exact**2
    assert result.metadata[0]["shots"] == shots
    assert result.metadata[0]["variance"] == pytest.approx(variance, abs=1e-9)
    assert abs(result.values[0] - exact) <= 5 * math.sqrt(variance / shots) + 1e-9


def test_circuit_runner_returns_a_result(service: RuntimeService) -> None:
    inputs: dict[str, Any] = {
        "circuits": [bell(), measured(ansatz().assign_parameters(VALUES[0]))],
        "shots": 300,
        "memory": True,
        "seed_simulator": 3,
        "initial_layout": [0, 1],
        "optimization_level": 1,
        "measurement_error_mitigation": True,
    }
    job = service.run("circuit-runner", inputs=inputs, options=BACKEND)
    result = job.result(timeout=60)
    assert isinstance(result, Result) and result.success
    counts = result.get_counts(0)
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 300
    assert len(result.get_memory(0)) == 300
    assert sum(result.get_counts(1).values()) == 300
    quasi = result.get_quasiprobabilities(0)
    assert sum(quasi.values()) == pytest.approx(1.0) and set(quasi) <= {0, 3}
    assert job.backend().name == "local_simulator"
    raw = job.result(decoder=ResultDecoder)
    assert set(raw["results"][0]["data"]["counts"]) <= {"0x0", "0x3"}


def test_active_account_builds_a_new_service(
    service: RuntimeService, server: LocalRuntimeServer
) -> None:
    account = service.active_account()
    assert account == {"channel": "local", "token": ALICE, "url": server.url, "verify": True}
    assert service.channel == "local"
    assert service._account.channel == "local" and service._account.url == server.url
    assert service._account.instance is None
    assert ALICE not in repr(service._account)
    job = service.run("echo", inputs={"x": 1}, options=BACKEND, start_session=True)
    job.wait_for_final_state(timeout=60)
    with RuntimeService(**account) as again:
        assert again.job(job.job_id()).result(timeout=60) == {"x": 1}
        again._api_client.close_session(job.job_id())


def test_active_account_on_ibm_quantum_is_the_api_token_and_login_url(
    server: LocalRuntimeServer,
) -> None:
    login_url = server.url + "/api"
    instance = "local/default/main"
    with RuntimeService(
        channel="ibm_quantum", url=login_url, token=ALICE, instance=instance
    ) as service:
        account = service.active_account()
        assert account == {
            "channel": "ibm_quantum",
            "token": ALICE,  # not the access token of the login
            "url": login_url,  # not the runtime URL the login returned
            "instance": instance,
            "verify": True,
        }
        assert service._account.instance == instance
        assert service._account.to_saved_format() == account
        with RuntimeService(**account) as again:
            assert again.active_account() == account
            assert [b.name for b in again.backends()] == ["local_simulator"]


def test_parameter_values_as_an_array(service: RuntimeService) -> None:
    circuit = measured(ansatz())
    inputs = {
        "circuits": [circuit, circuit],
        "parameter_values": np.array(VALUES),
        "run_options": {"shots": None},
    }
    result = service.run("sampler", inputs=inputs, options=BACKEND).result(timeout=60)
    for quasi, values in zip(result.quasi_dists, VALUES, strict=True):
        assert dict(quasi) == pytest.approx(exact_distribution(circuit, values), abs=1e-12)
