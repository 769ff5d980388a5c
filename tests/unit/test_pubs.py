"""V2 pubs in wire form (platform.md 5.3): circuits as QPY <= 17, values as ndarrays."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qiskit")

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives.containers import EstimatorPub, SamplerPub
from qiskit.quantum_info import Pauli, SparsePauliOp

from runtime_job.codec import PLATFORM_QPY_VERSION, dumps, loads
from runtime_job.pubs import encode_observables, prepare_inputs

THETA = Parameter("theta")
PHI = Parameter("phi")


def circuit() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.rx(THETA, 0)
    qc.ry(PHI, 1)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def wire(program: str, inputs: dict[str, Any]) -> Any:
    """What would be POSTed: the prepared inputs through the codec, parsed back as JSON."""
    return json.loads(dumps(prepare_inputs(program, inputs)))


def qpy_version(tagged: dict[str, Any]) -> int:
    raw = zlib.decompress(base64.b64decode(tagged["__value__"]))
    assert raw.startswith(b"QISKIT")
    return raw[6]


def test_sampler_pub_forms() -> None:
    qc = circuit()
    inputs = {
        "pubs": [(qc, [[0.1, 0.2], [0.3, 0.4]], 100), (qc, {PHI: [0.5], "theta": [0.6]}), qc],
        "options": {"default_shots": 64},
        "version": 2,
        "support_qiskit": True,
    }
    sent = wire("sampler", inputs)
    assert sent["version"] == 2 and sent["support_qiskit"] is True
    first, second, third = sent["pubs"]
    assert (
        first[0]["__type__"] == "QuantumCircuit" and qpy_version(first[0]) == PLATFORM_QPY_VERSION
    )
    assert first[1]["__type__"] == "ndarray" and first[2] == 100
    assert second[2] == 64 and third[2] == 64
    decoded = loads(dumps(prepare_inputs("sampler", inputs)))
    assert decoded["pubs"][0][0] == qc
    np.testing.assert_array_equal(decoded["pubs"][0][1], [[0.1, 0.2], [0.3, 0.4]])
    # the dict is laid out in circuit.parameters order (phi, theta)
    assert [p.name for p in qc.parameters] == ["phi", "theta"]
    np.testing.assert_array_equal(decoded["pubs"][1][1], [0.5, 0.6])  # pub shape ()
    assert decoded["pubs"][2][1].shape == (0,)


def test_qiskit_sampler_pub_and_no_shots() -> None:
    qc = circuit()
    pub = SamplerPub.coerce((qc, [0.1, 0.2], 10))
    sent = wire("sampler", {"pubs": [pub, (qc, [0.1, 0.2])]})
    assert sent["pubs"][0][2] == 10
    assert len(sent["pubs"][1]) == 2  # no shots anywhere: left to the server


def test_estimator_pub_forms() -> None:
    qc = circuit()
    qc.remove_final_measurements()
    inputs = {
        "pubs": [
            (qc, SparsePauliOp(["ZZ", "XI"], [1.0, -0.5]), [0.1, 0.2], 0.01),
            (qc, ["ZI", Pauli("-XX")], [[0.1, 0.2]]),
            EstimatorPub.coerce((qc, {"IZ": 2.0}, [0.0, 0.0])),
        ],
        "options": {"default_precision": 0.05},
    }
    first, second, third = wire("estimator", inputs)["pubs"]
    assert first[1] == {"ZZ": 1.0, "XI": -0.5} and first[3] == 0.01
    assert second[1] == [{"ZI": 1.0}, {"XX": -1.0}] and second[3] == 0.05
    assert third[1] == {"IZ": 2.0}


def test_observables_refused() -> None:
    with pytest.raises(ValueError, match="real"):
        encode_observables({"Z": 1j})
    with pytest.raises(TypeError, match="observable"):
        encode_observables(3)


def test_other_programs_and_inputs_untouched() -> None:
    inputs = {"circuits": [circuit()]}
    assert prepare_inputs("sampler", inputs) is inputs
    assert prepare_inputs("circuit-runner", {"pubs": [1]}) == {"pubs": [1]}
    with pytest.raises(TypeError, match="QuantumCircuit"):
        prepare_inputs("sampler", {"pubs": [("not a circuit",)]})


def test_already_encoded_pubs_pass_through() -> None:
    sent = wire("sampler", {"pubs": [(circuit(), [0.1, 0.2], 5)]})
    again = wire("sampler", sent)
    assert again == sent
