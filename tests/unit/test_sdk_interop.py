"""What the reference's primitives and SDK wrappers read from our objects (issue 19).

- ``Backend.configuration()`` allows attribute access (``.simulator``), as the reference's
  primitives read it, and still item access;
- ``JobStatus`` members equal qiskit's ``qiskit.providers.JobStatus`` members of the same
  name, without the core importing qiskit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from runtime_job.backend import Backend, BackendConfiguration
from runtime_job.status import JOB_FINAL_STATES, JobStatus

CONFIG = {
    "backend_name": "local_simulator",
    "simulator": True,
    "n_qubits": 5,
    "basis_gates": ["cx", "rz"],
    "gates": [{"name": "cx", "parameters": []}],
    "processor_type": {"family": "sim"},
    "items": "a key named like a dict method",
}


class _Api:
    def __init__(self) -> None:
        self.calls = 0

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        raise AssertionError("not used")

    def backend_configuration(self, backend_name: str) -> dict[str, Any]:
        self.calls += 1
        return json.loads(json.dumps(CONFIG))


class TestBackendConfiguration:
    def test_attribute_and_item_access(self) -> None:
        api = _Api()
        config = Backend("local_simulator", api).configuration()
        assert config.simulator is True and config["simulator"] is True
        assert config.n_qubits == 5 and config.basis_gates == ["cx", "rz"]
        assert config.processor_type.family == "sim"  # nested objects too
        assert config.gates[0].name == "cx"
        assert config["items"] == "a key named like a dict method"
        assert config.get("missing", 1) == 1

    def test_still_a_dict_equal_to_the_server_json(self) -> None:
        config = Backend("local_simulator", _Api()).configuration()
        assert isinstance(config, dict) and config == CONFIG
        assert json.loads(json.dumps(config)) == CONFIG
        plain = config.to_dict()
        assert type(plain) is dict and type(plain["processor_type"]) is dict
        assert plain == CONFIG

    def test_missing_attribute_is_an_attribute_error(self) -> None:
        config = Backend("local_simulator", _Api()).configuration()
        with pytest.raises(AttributeError, match="no attribute 'coupling_map'"):
            _ = config.coupling_map
        assert not hasattr(config, "open_pulse")
        assert "simulator" in dir(config)

    def test_fetched_once_and_placeholder_is_empty(self) -> None:
        api = _Api()
        backend = Backend("local_simulator", api)
        assert backend.configuration() is backend.configuration()
        assert api.calls == 1
        empty = Backend("retired").configuration()
        assert isinstance(empty, BackendConfiguration) and empty == {}

    def test_check_faulty_accepts_any_circuit(self) -> None:
        assert Backend("local_simulator", _Api()).check_faulty(object()) is None


class TestJobStatusAndQiskit:
    def test_members_equal_qiskits(self) -> None:
        pytest.importorskip("qiskit")
        from qiskit.providers import JobStatus as QiskitJobStatus

        for member in JobStatus:
            theirs = QiskitJobStatus[member.name]
            assert member == theirs
            assert theirs == member
            assert not member != theirs  # noqa: SIM202
            assert hash(member) == hash(theirs)
            assert theirs in {member} and member in {theirs}
        assert JobStatus.DONE != QiskitJobStatus.ERROR
        assert JobStatus.DONE in (QiskitJobStatus.DONE, QiskitJobStatus.CANCELLED)
        qiskit_final = (QiskitJobStatus.DONE, QiskitJobStatus.CANCELLED, QiskitJobStatus.ERROR)
        assert all(state in qiskit_final for state in JOB_FINAL_STATES)

    def test_other_values_are_not_equal(self) -> None:
        import enum

        class JobStatus2(enum.Enum):  # right member names, not qiskit's enum
            DONE = "job has successfully run"

        assert JobStatus.DONE != JobStatus2.DONE
        assert JobStatus.DONE != "DONE"
        assert JobStatus.DONE.value != JobStatus.DONE
        assert JobStatus.DONE == JobStatus.DONE and JobStatus.DONE != JobStatus.ERROR

    def test_the_core_does_not_import_qiskit(self) -> None:
        code = (
            "import sys; import runtime_job.status as s, runtime_job.backend, "
            "runtime_job.decoders; "
            "assert s.JobStatus.DONE == s.JobStatus.DONE; "
            "assert s.JobStatus.DONE != 'DONE'; "
            "print(sorted(m for m in sys.modules if m == 'qiskit' or m.startswith('qiskit.')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == "[]"


def test_without_qiskit_the_sdk_paths_degrade_to_dicts() -> None:
    """qiskit made unimportable: quantum_info payloads stay dicts (with the warning), the
    circuit-runner decoder returns the dict, and there are no program defaults."""
    code = """
import json, sys, warnings
sys.modules["qiskit"] = None
from runtime_job import codec
from runtime_job.decoders import DEFAULT_DECODERS, RunnerResult
payload = {"__type__": "settings", "__class__": "SparsePauliOp", "__value__": {"data": []},
           "__module__": "qiskit.quantum_info.operators.symplectic.sparse_pauli_op"}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = codec.loads(json.dumps(payload))
assert out == payload, out
assert any("not registered" in str(w.message) for w in caught)
assert RunnerResult.decode('{"results": []}') == {"results": []}
assert dict(DEFAULT_DECODERS) == {}
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
