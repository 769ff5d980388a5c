"""V2 pubs on the wire: what ``run("sampler" | "estimator", {"pubs": [...]})`` sends.

The platform's primitives take their pubs as JSON lists (``platform.md`` 5.3):

- a **sampler pub** is ``[circuit, parameter values, shots]``;
- an **estimator pub** is ``[circuit, observables, parameter values, precision]``;
- a circuit is a ``QuantumCircuit`` tag whose QPY version is at most
  :data:`~runtime_job.codec.PLATFORM_QPY_VERSION` (17);
- parameter values are an ``ndarray`` (shape ``(0,)`` when the circuit has none), the last
  axis following ``circuit.parameters``;
- an observable is a ``{"<pauli string>": coeff}`` dict, arrays of them nested lists.

:func:`encode_pubs` accepts what the V2 primitives accept: a bare circuit, a tuple
(``(circuit, values, shots)`` / ``(circuit, observables, values, precision)``), qiskit's
``SamplerPub``/``EstimatorPub``, and pubs already in wire form. Observables may be Pauli
strings, ``{pauli: coeff}`` dicts, qiskit's ``Pauli``/``SparsePauliOp``/``SparseObservable``
or ``ObservablesArray``, or nested lists of them; parameter values an array-like, or a dict
keyed by parameter (or name, or a tuple of them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from . import codec

V2_PROGRAMS: Final = frozenset({"sampler", "estimator"})
"""Programs whose ``pubs`` input :func:`prepare_inputs` encodes."""


def _is_circuit(value: Any) -> bool:
    if sys.modules.get("qiskit") is None:
        return False
    from qiskit.circuit import QuantumCircuit

    return isinstance(value, QuantumCircuit)


def _circuit(value: Any) -> Any:
    """A circuit as its tag, QPY capped at the platform's version (tags pass through)."""
    if isinstance(value, Mapping) and value.get("__type__") == "QuantumCircuit":
        return dict(value)
    if not _is_circuit(value):
        raise TypeError(f"A pub must start with a QuantumCircuit, not {type(value).__name__}")
    tagged: dict[str, Any] = json.loads(codec.dumps(value, qpy_version=codec.PLATFORM_QPY_VERSION))
    return tagged


def _parameter_names(circuit: Any) -> list[str]:
    return [parameter.name for parameter in getattr(circuit, "parameters", ())]


def _values(circuit: Any, values: Any) -> Any:
    """Parameter values as one float array whose last axis follows ``circuit.parameters``."""
    if isinstance(values, Mapping) and values.get("__type__") == "ndarray":
        return dict(values)
    if values is None:
        return np.zeros((0,), dtype=float)
    if hasattr(values, "as_array") and hasattr(values, "data"):  # qiskit's BindingsArray
        names = _parameter_names(circuit)
        return np.asarray(values.as_array(names or None), dtype=float)
    if isinstance(values, Mapping):
        columns: dict[str, Any] = {}
        for key, column in values.items():
            keys = key if isinstance(key, tuple) else (key,)
            array = np.asarray(column, dtype=float)
            if len(keys) == 1 and (array.ndim == 0 or array.shape[-1] != 1):
                array = array[..., np.newaxis]
            for index, name in enumerate(keys):
                columns[getattr(name, "name", name)] = array[..., index]
        names = _parameter_names(circuit)
        missing = [name for name in names if name not in columns]
        if missing:
            raise ValueError(f"No values given for the parameters {missing}")
        if not names:
            return np.zeros((0,), dtype=float)
        return np.stack(np.broadcast_arrays(*(columns[name] for name in names)), axis=-1)
    return np.asarray(values, dtype=float)


def _coefficient(value: Any) -> float:
    number = complex(value)
    if number.imag:
        raise ValueError(f"An observable's coefficient must be real, not {value!r}")
    return number.real


def encode_observables(observables: Any) -> Any:
    """Observables as ``{pauli: coeff}`` dicts, arrays of them as nested lists.

    Args:
        observables: A Pauli string, a ``{pauli: coeff}`` mapping, a qiskit ``Pauli``,
            ``SparsePauliOp``, ``SparseObservable`` or ``ObservablesArray``, or a (nested)
            sequence or array of these.

    Returns:
        The wire form.

    Raises:
        TypeError: Something is not an observable.
        ValueError: A coefficient is complex.
    """
    if isinstance(observables, str):
        return {observables: 1.0}
    if isinstance(observables, Mapping):
        return {str(key): _coefficient(value) for key, value in observables.items()}
    if isinstance(observables, np.ndarray):
        return [encode_observables(item) for item in observables.tolist()]
    if isinstance(observables, Sequence):
        return [encode_observables(item) for item in observables]
    name = type(observables).__name__
    if name == "ObservablesArray" and hasattr(observables, "tolist"):
        return encode_observables(observables.tolist())
    if name == "SparseObservable":
        from qiskit.quantum_info import SparsePauliOp

        observables = SparsePauliOp.from_sparse_observable(observables)
        name = "SparsePauliOp"
    if name == "SparsePauliOp":
        terms: dict[str, float] = {}
        for label, coeff in observables.to_list():
            terms[label] = terms.get(label, 0.0) + _coefficient(coeff)
        return terms
    if name == "Pauli":
        label = observables.to_label()
        phase = {"": 1.0, "-": -1.0}.get(label[: len(label) - observables.num_qubits])
        if phase is None:
            raise ValueError(f"An observable's coefficient must be real, not {label!r}")
        return {label[len(label) - observables.num_qubits :]: phase}
    raise TypeError(f"Not an observable: {name}")


def encode_sampler_pub(pub: Any, default_shots: int | None = None) -> list[Any]:
    """One sampler pub in wire form: ``[circuit, values, shots]``.

    Args:
        pub: A circuit, ``(circuit[, values[, shots]])`` or qiskit's ``SamplerPub``.
        default_shots: Shots for a pub that names none (left out when neither is given).

    Returns:
        The JSON-ready list (arrays still numpy, encoded by :func:`runtime_job.codec.dumps`).
    """
    if type(pub).__name__ == "SamplerPub":
        circuit, values, shots = pub.circuit, pub.parameter_values, pub.shots
    else:
        parts = list(pub) if isinstance(pub, list | tuple) else [pub]
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"A sampler pub has 1 to 3 items, not {len(parts)}")
        circuit = parts[0]
        values = parts[1] if len(parts) > 1 else None
        shots = parts[2] if len(parts) > 2 else None
    shots = default_shots if shots is None else shots
    out = [_circuit(circuit), _values(circuit, values)]
    if shots is not None:
        out.append(int(shots))
    return out


def encode_estimator_pub(pub: Any, default_precision: float | None = None) -> list[Any]:
    """One estimator pub in wire form: ``[circuit, observables, values, precision]``.

    Args:
        pub: ``(circuit, observables[, values[, precision]])`` or qiskit's ``EstimatorPub``.
        default_precision: Precision for a pub that names none (``None`` is sent as null).

    Returns:
        The JSON-ready list.
    """
    if type(pub).__name__ == "EstimatorPub":
        circuit, observables = pub.circuit, pub.observables
        values, precision = pub.parameter_values, pub.precision
    else:
        parts = list(pub) if isinstance(pub, list | tuple) else [pub]
        if not 2 <= len(parts) <= 4:
            raise ValueError(f"An estimator pub has 2 to 4 items, not {len(parts)}")
        circuit, observables = parts[0], parts[1]
        values = parts[2] if len(parts) > 2 else None
        precision = parts[3] if len(parts) > 3 else None
    precision = default_precision if precision is None else precision
    return [
        _circuit(circuit),
        encode_observables(observables),
        _values(circuit, values),
        None if precision is None else float(precision),
    ]


def encode_pubs(program_id: str, pubs: Sequence[Any], options: Mapping[str, Any]) -> list[Any]:
    """Every pub of a ``sampler`` or ``estimator`` run in wire form.

    Args:
        program_id: ``"sampler"`` or ``"estimator"``.
        pubs: The pubs, in any form the V2 primitives accept.
        options: The run's ``options`` input (``default_shots``, ``default_precision``).

    Returns:
        The wire pubs.
    """
    if program_id == "sampler":
        shots = options.get("default_shots")
        return [encode_sampler_pub(pub, shots) for pub in pubs]
    precision = options.get("default_precision")
    return [encode_estimator_pub(pub, precision) for pub in pubs]


def prepare_inputs(program_id: str, inputs: Any) -> Any:
    """``inputs`` with V2 pubs in wire form (anything else unchanged, never mutated).

    Only ``sampler`` and ``estimator`` inputs holding a ``pubs`` list are touched.
    """
    if program_id not in V2_PROGRAMS or not isinstance(inputs, Mapping):
        return inputs
    pubs = inputs.get("pubs")
    if not isinstance(pubs, list | tuple):
        return inputs
    options = inputs.get("options")
    prepared = dict(inputs)
    prepared["pubs"] = encode_pubs(
        program_id, pubs, options if isinstance(options, Mapping) else {}
    )
    return prepared


__all__ = [
    "V2_PROGRAMS",
    "encode_estimator_pub",
    "encode_observables",
    "encode_pubs",
    "encode_sampler_pub",
    "prepare_inputs",
]
