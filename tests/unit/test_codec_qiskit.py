"""qiskit payloads (QPY): skipped only when qiskit is not installed."""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
import zlib
from typing import Any

import numpy as np
import pytest

qiskit = pytest.importorskip("qiskit")

from qiskit import QuantumCircuit, qpy  # noqa: E402
from qiskit.circuit import Instruction, Parameter, ParameterVector  # noqa: E402
from qiskit.circuit.library import CXGate, HGate, Measure  # noqa: E402
from qiskit.result import Result  # noqa: E402

from runtime_job.codec import dumps, loads  # noqa: E402
from runtime_job.exceptions import ResultDecodingError  # noqa: E402

BACKENDS = [pytest.param(True, id="accelerated"), pytest.param(False, id="stdlib")]


def tagged(tag: str, raw: bytes) -> str:
    return json.dumps({"__type__": tag, "__value__": base64.standard_b64encode(raw).decode()})


def parameter_record(name: str, param_uuid: uuid.UUID) -> bytes:
    """The reference's Parameter record: ``!H16s`` (name length, UUID) then the UTF-8 name."""
    encoded = name.encode("utf-8")
    return struct.pack("!H16s", len(encoded), param_uuid.bytes) + encoded


def bell(theta: Any = 0.5) -> QuantumCircuit:
    circuit = QuantumCircuit(2, 2, name="bell", metadata={"shots": 10, "tag": "θ"})
    circuit.h(0)
    circuit.rz(theta, 1)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


@pytest.mark.parametrize("accelerated", BACKENDS)
def test_circuit_round_trip(accelerated: bool) -> None:
    theta = Parameter("θ")
    circuits = [bell(), bell(theta), bell(2 * theta + 1)]
    out = loads(dumps({"circuits": circuits}, accelerated=accelerated), accelerated=accelerated)
    for got, expected in zip(out["circuits"], circuits, strict=True):
        assert isinstance(got, QuantumCircuit)
        assert got == expected
        assert got.metadata == expected.metadata and got.name == "bell"


def test_circuit_payload_is_zlib_of_qpy() -> None:
    value = json.loads(dumps(bell()))
    assert value["__type__"] == "QuantumCircuit"
    raw = zlib.decompress(base64.b64decode(value["__value__"]))
    assert qpy.load(io.BytesIO(raw))[0] == bell()


def test_hand_written_circuit_payload() -> None:
    buffer = io.BytesIO()
    qpy.dump(bell(), buffer)
    text = tagged("QuantumCircuit", zlib.compress(buffer.getvalue()))
    assert loads(text) == bell()


def test_circuit_zlib_bomb_is_bounded() -> None:
    text = tagged("QuantumCircuit", zlib.compress(b"QISKIT" + b"\x00" * 4_000_000))
    with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
        loads(text, max_decompressed_size=1_000_000)


def test_truncated_circuit_stream() -> None:
    buffer = io.BytesIO()
    qpy.dump(bell(), buffer)
    with pytest.raises(ResultDecodingError, match="Truncated compressed data"):
        loads(tagged("QuantumCircuit", zlib.compress(buffer.getvalue())[:-4]))


def test_corrupt_qpy_is_a_decoding_error() -> None:
    with pytest.raises(ResultDecodingError, match="Invalid QPY"):
        loads(tagged("QuantumCircuit", zlib.compress(b"QISKIT-not-really")))


@pytest.mark.parametrize(
    "instruction",
    [HGate(), CXGate(), Measure(), Instruction("custom", 2, 1, [0.25])],
    ids=lambda i: i.name,
)
def test_instruction_round_trip(instruction: Instruction) -> None:
    out = loads(dumps(instruction))
    assert out.name == instruction.name
    assert out.num_qubits == instruction.num_qubits
    assert out.num_clbits == instruction.num_clbits  # the reference cannot wrap clbits
    assert list(out.params) == list(instruction.params)


def test_parameter_is_the_reference_record() -> None:
    theta = Parameter("θ_1")
    value = json.loads(dumps(theta))
    assert value["__type__"] == "Parameter"
    assert base64.b64decode(value["__value__"]) == parameter_record("θ_1", theta.uuid)
    out = loads(json.dumps(value))
    assert out == theta and out.uuid == theta.uuid and out.name == "θ_1"


def test_hand_written_parameter_record() -> None:
    param_uuid = uuid.uuid4()
    out = loads(tagged("Parameter", parameter_record("alpha", param_uuid)))
    assert isinstance(out, Parameter)
    assert out.name == "alpha" and out.uuid == param_uuid


def test_bad_parameter_records() -> None:
    with pytest.raises(ResultDecodingError, match="Truncated"):
        loads(tagged("Parameter", b"\x00\x05"))
    with pytest.raises(ResultDecodingError, match="length"):
        loads(tagged("Parameter", parameter_record("abc", uuid.uuid4())[:-1]))


def test_parameter_vector_element_becomes_a_parameter() -> None:
    vector = ParameterVector("v", 3)
    out = loads(dumps(vector[1]))
    assert out.name == "v[1]" and out.uuid == vector[1].uuid


@pytest.mark.parametrize("accelerated", BACKENDS)
def test_parameter_expression_round_trip(accelerated: bool) -> None:
    a, b = Parameter("a"), Parameter("β")
    vector = ParameterVector("v", 2)
    for expression in (2 * a + b, a * vector[1], (a + b).sin() - 3):
        out = loads(dumps(expression, accelerated=accelerated), accelerated=accelerated)
        assert out == expression
        assert {p.uuid for p in out.parameters} == {p.uuid for p in expression.parameters}


def test_bound_parameter_expression_decodes_to_a_number() -> None:
    a = Parameter("a")
    assert loads(dumps((a + 1).bind({a: 2}))) == 3


def test_reference_parameter_expression_record() -> None:
    """A QPY version-3 expression record (sympy text), as the reference writes it."""
    uuid_a, uuid_b = uuid.uuid4(), uuid.uuid4()
    expression = b"Add(Mul(Integer(2), Symbol('a')), Symbol('b'))"
    raw = struct.pack("!QQ", 2, len(expression)) + expression
    for name, param_uuid in (("a", uuid_a), ("b", uuid_b)):
        raw += struct.pack("!ccQ", b"p", b"p", 0) + parameter_record(name, param_uuid)
    out = loads(tagged("ParameterExpression", raw))
    a, b = Parameter("a", uuid=uuid_a), Parameter("b", uuid=uuid_b)
    assert out == 2 * a + b


def test_parameter_view_is_a_list() -> None:
    circuit = bell(Parameter("x"))
    out = loads(dumps(circuit.parameters))
    assert [p.name for p in out] == ["x"]


def test_result_round_trip() -> None:
    result = Result.from_dict(
        {
            "backend_name": "fake",
            "backend_version": "1.0",
            "qobj_id": "q",
            "job_id": "j",
            "success": True,
            "results": [
                {
                    "shots": 100,
                    "success": True,
                    "data": {"counts": {"0x0": 60, "0x3": 40}},
                    "header": {"name": "bell", "memory_slots": 2},
                }
            ],
        }
    )
    out = loads(dumps({"result": result, "values": np.arange(2.0)}))
    assert isinstance(out["result"], Result)
    assert out["result"].get_counts() == {"00": 60, "11": 40}


def test_invalid_result_payload() -> None:
    with pytest.raises(ResultDecodingError, match="Invalid Result"):
        loads('{"__type__": "Result", "__value__": {"nonsense": 1}}')
