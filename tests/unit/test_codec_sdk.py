"""What the 0.11-era SDKs send through the codec (issue 19).

- ``qiskit.quantum_info`` operators and states in ``settings`` payloads are rebuilt through a
  built-in allow-list (the reference's ``Estimator`` sends its observables that way), also
  inside lists, and without importing the module a payload names;
- circuit ``metadata`` holding numpy values encodes (QPY gets ``RuntimeEncoder`` as its
  metadata serializer, as in the reference) and decodes back;
- a qiskit-terra ``Parameter`` (UUID only through ``__new__``) is rebuilt.

Skipped only when qiskit is not installed (the main venv has it through the qiskit extra).
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import uuid
import warnings
from typing import Any

import numpy as np
import pytest

qiskit = pytest.importorskip("qiskit")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.quantum_info import (  # noqa: E402
    Choi,
    DensityMatrix,
    Operator,
    Pauli,
    PauliList,
    SparsePauliOp,
    Statevector,
)

from runtime_job.codec import SettingsRegistry, decode_value, dumps, loads  # noqa: E402
from runtime_job.decoders import ResultDecoder  # noqa: E402


def _objects() -> list[Any]:
    return [
        SparsePauliOp(["XZ", "YY", "IZ"], [1.0, 2j, -0.5]),
        PauliList(["XZ", "-iYY"]),
        Pauli("-iXZ"),
        Statevector.from_label("+1"),
        DensityMatrix.from_label("0+"),
        Operator(Pauli("XY")),
        Choi(Operator(Pauli("X"))),
    ]


@pytest.mark.parametrize("obj", _objects(), ids=lambda o: type(o).__name__)
def test_quantum_info_objects_are_rebuilt(obj: Any) -> None:
    text = dumps({"observable": obj})
    assert json.loads(text)["observable"]["__type__"] == "settings"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not registered" warning
        out = loads(text)["observable"]
    assert type(out) is type(obj)
    assert out == obj


def test_observables_inside_lists_and_with_a_private_registry() -> None:
    observables = [SparsePauliOp("ZZ"), SparsePauliOp(["XX", "YY"], [0.5, -0.5])]
    text = dumps({"observables": observables, "nested": [[Pauli("X")]]})
    for registry in (None, SettingsRegistry()):
        out = loads(text, settings_registry=registry)
        assert out["observables"] == observables
        assert out["nested"] == [[Pauli("X")]]
    assert ResultDecoder.decode(text)["observables"] == observables
    assert decode_value(json.loads(text))["observables"] == observables


def test_the_reference_estimator_payload_is_rebuilt() -> None:
    """The exact form the reference (qiskit-terra 0.24) writes for a SparsePauliOp."""
    payload = {
        "__type__": "settings",
        "__module__": "qiskit.quantum_info.operators.symplectic.sparse_pauli_op",
        "__class__": "SparsePauliOp",
        "__value__": {
            "data": {
                "__type__": "settings",
                "__module__": "qiskit.quantum_info.operators.symplectic.pauli_list",
                "__class__": "PauliList",
                "__value__": {"data": ["ZI", "XX"]},
            },
            "coeffs": json.loads(dumps(np.array([1.0 + 0j, 0.25 + 0j]))),
        },
    }
    out = loads(json.dumps({"observables": [payload]}))["observables"][0]
    assert out == SparsePauliOp(["ZI", "XX"], [1.0, 0.25])


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("qiskit.quantum_info.operators.symplectic.clifford", "Clifford"),  # not on the list
        ("qiskit.quantum_info.operators.symplectic.pauli", "PauliList"),  # wrong module
        ("runtime_job_never_imported_module", "SparsePauliOp"),
        ("os", "system"),
    ],
)
def test_other_settings_payloads_stay_dicts_and_import_nothing(module: str, name: str) -> None:
    payload = {"__type__": "settings", "__module__": module, "__class__": name, "__value__": {}}
    with pytest.warns(UserWarning, match="not registered"):
        out = loads(json.dumps(payload))
    assert out == payload
    assert "runtime_job_never_imported_module" not in sys.modules


def test_circuit_metadata_with_numpy_values_round_trips() -> None:
    circuit = QuantumCircuit(1, name="with-numpy")
    circuit.metadata = {
        "angles": np.linspace(0.0, 1.0, 5),
        "count": np.int64(7),
        "scale": np.float32(0.5),
        "flag": np.bool_(True),
    }
    out = loads(dumps({"c": circuit}))["c"]
    np.testing.assert_array_equal(out.metadata["angles"], np.linspace(0.0, 1.0, 5))
    assert out.metadata["count"] == 7 and out.metadata["scale"] == 0.5
    assert out.metadata["flag"] is True


class _TerraParameter:
    """A stand-in for qiskit-terra 0.23/0.24's ``Parameter``: the UUID only via ``__new__``."""

    def __new__(cls, name: str, uuid: uuid.UUID | None = None) -> _TerraParameter:
        obj = super().__new__(cls)
        obj._uuid = uuid
        return obj

    def __init__(self, name: str) -> None:
        self.name = name


def test_a_terra_style_parameter_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["qiskit.circuit"], "Parameter", _TerraParameter)
    param_uuid = uuid.uuid4()
    name = "θ".encode()
    record = struct.pack("!H16s", len(name), param_uuid.bytes) + name
    text = json.dumps(
        {"__type__": "Parameter", "__value__": base64.standard_b64encode(record).decode()}
    )
    out = loads(text)
    assert isinstance(out, _TerraParameter)
    assert out.name == "θ" and out._uuid == param_uuid
