"""The V2 ``sampler`` and ``estimator`` programs through the platform routes, checked value
for value against qiskit's reference primitives run in-process on the same pubs."""

from __future__ import annotations

import base64
import io
import json
import zlib
from typing import Any

import numpy as np
import pytest
import requests

from runtime_job import codec

from .conftest import TOKENS, Platform

qiskit = pytest.importorskip("qiskit")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit import Parameter  # noqa: E402
from qiskit.primitives import StatevectorEstimator, StatevectorSampler  # noqa: E402


def _array(tag: dict[str, Any]) -> Any:
    assert tag["__type__"] == "ndarray"
    return np.load(io.BytesIO(zlib.decompress(base64.b64decode(tag["__value__"]))))


def _params(pubs: list[Any], **options: Any) -> Any:
    """V2 params as the official client sends them (tagged circuits and arrays)."""
    return json.loads(
        codec.dumps({"pubs": pubs, "options": options, "version": 2, "support_qiskit": True})
    )


def _bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def _rotation() -> tuple[QuantumCircuit, Parameter]:
    theta = Parameter("theta")
    circuit = QuantumCircuit(1, 1)
    circuit.ry(theta, 0)
    circuit.measure(0, 0)
    return circuit, theta


def _run(platform: Platform, program: str, params: Any) -> Any:
    job_id = platform.submit(program, params)
    job = platform.wait_final(job_id)
    results = platform.get(f"/jobs/{job_id}/results")
    assert job["state"]["status"] == "Completed", results.text
    return results.json()


def test_sampler_v2_matches_statevector_sampler_bit_for_bit(platform: Platform) -> None:
    rotation, _ = _rotation()
    values = np.array([[0.1], [1.2], [2.9]])
    pubs = [[_bell(), np.zeros((0,)), 300], [rotation, values, 200]]
    result = _run(platform, "sampler", _params(pubs, simulator={"seed_simulator": 42}))

    expected = StatevectorSampler(seed=42).run([(_bell(), None, 300), (rotation, values, 200)])
    reference = expected.result()
    assert result["__type__"] == "PrimitiveResult"
    body = result["__value__"]
    assert body["metadata"]["version"] == 2
    spans = body["metadata"]["execution"]["execution_spans"]
    assert spans["__type__"] == "ExecutionSpans"
    span = spans["__value__"]["spans"][0]
    assert span["__type__"] == "DoubleSliceSpan"
    assert span["__value__"]["data_slices"] == {
        "0": [[1, 300], 0, 1, 0, 300],
        "1": [[3, 200], 0, 3, 0, 200],
    }
    assert len(body["pub_results"]) == 2
    for pub_result, ref in zip(body["pub_results"], reference, strict=True):
        assert pub_result["__type__"] == "SamplerPubResult"
        data = pub_result["__value__"]["data"]
        assert data["__type__"] == "DataBin"
        assert data["__value__"]["shape"] == list(ref.data.shape)
        for name in data["__value__"]["field_names"]:
            bits = data["__value__"]["fields"][name]
            assert bits["__type__"] == "BitArray"
            expected_bits = getattr(ref.data, name)
            assert bits["__value__"]["num_bits"] == expected_bits.num_bits
            np.testing.assert_array_equal(_array(bits["__value__"]["array"]), expected_bits.array)
        assert pub_result["__value__"]["metadata"]["shots"] == ref.metadata["shots"]


def test_estimator_v2_is_exact_by_default_and_seeded_with_a_precision(platform: Platform) -> None:
    theta = Parameter("theta")
    circuit = QuantumCircuit(2)
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    observables = [[{"ZZ": 1.0}], [{"XI": 0.5, "IZ": -1.0}]]
    values = np.array([[0.3], [1.1]])
    exact = _run(platform, "estimator", _params([[circuit, observables, values, None]]))
    reference = StatevectorEstimator().run([(circuit, observables, values)]).result()[0]
    pub = exact["__value__"]["pub_results"][0]
    assert pub["__type__"] == "PubResult"
    fields = pub["__value__"]["data"]["__value__"]["fields"]
    assert set(fields) == {"evs", "stds", "ensemble_standard_error"}
    np.testing.assert_allclose(_array(fields["evs"]), reference.data.evs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(_array(fields["stds"]), np.zeros((2, 2)))
    assert pub["__value__"]["metadata"]["target_precision"] == 0.0

    noisy = _run(
        platform,
        "estimator",
        _params([[circuit, observables, values, 0.05]], simulator={"seed_simulator": 7}),
    )
    seeded = StatevectorEstimator(seed=7).run([(circuit, observables, values, 0.05)]).result()[0]
    fields = noisy["__value__"]["pub_results"][0]["__value__"]["data"]["__value__"]["fields"]
    np.testing.assert_allclose(_array(fields["evs"]), seeded.data.evs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(_array(fields["stds"]), seeded.data.stds)
    assert not np.allclose(_array(fields["evs"]), reference.data.evs)  # the noise is there


def test_a_bad_pub_fails_the_job_with_a_traceback(platform: Platform) -> None:
    job_id = platform.submit("sampler", _params([[_bell(), np.zeros((0,)), -5]]))
    assert platform.wait_final(job_id)["state"]["status"] == "Failed"
    text = platform.get(f"/jobs/{job_id}/results").text
    assert "Traceback" in text and "shots must be a positive integer" in text


def test_the_2023_sampler_still_answers_2023_inputs(platform: Platform) -> None:
    response = requests.post(
        platform.url + "/jobs",
        json={
            "program_id": "sampler",
            "params": json.loads(
                codec.dumps({"circuits": [_bell()], "run_options": {"shots": None}})
            ),
        },
        headers={"X-Access-Token": TOKENS[0]},
        timeout=10,
    )
    job_id = response.json()["id"]
    assert platform.wait_final(job_id)["state"]["status"] == "Completed"
    result = platform.get(f"/jobs/{job_id}/results").json()
    assert result["quasi_dists"] == [{"0x0": pytest.approx(0.5), "0x3": pytest.approx(0.5)}]
