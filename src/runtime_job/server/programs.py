"""Programs: the built-in ones and the registry that maps program ids to code.

A program is a callable ``main(backend, user_messenger, **inputs)``:

- ``backend`` is a :class:`LocalBackend` (its ``name`` is ``local_simulator``);
- ``user_messenger.publish(obj, final=False)`` sends an interim result (encoded with the
  runtime codec); ``final=True`` sets the final result instead;
- the return value is the final result (it wins over a ``publish(..., final=True)`` unless it
  is ``None``); an exception fails the job, its traceback becoming the job's result text;
- whatever it prints (stdout and stderr) becomes the job's logs.

Programs run in worker processes, never in the server. Register your own by import path or,
for an embedded server, as a callable defined at module level of an importable module (it is
pickled by reference, and workers get the server's ``sys.path``)::

    registry = ProgramRegistry({"my-program": "my_package.my_module:main"})
    registry.register("other", some_module_level_function)
"""

from __future__ import annotations

import importlib.util
import pickle
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PROGRAM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a program id may look like."""
_IMPORT_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

BACKEND_NAME = "local_simulator"
"""The one backend of a local server."""

ProgramLike = Callable[..., Any] | str
"""A program: a module-level callable, or its import path ``"package.module:function"``."""


class UserMessenger(Protocol):
    """What a program gets to publish results."""

    def publish(self, message: Any, encoder: Any = None, final: bool = False) -> None:
        """Publish an interim result, or the final result when ``final`` is true."""
        ...


@dataclass(frozen=True)
class LocalBackend:
    """The backend handed to programs.

    Attributes:
        name: The backend name.
        configuration: The backend configuration (as served by the API).
    """

    name: str = BACKEND_NAME
    configuration: dict[str, Any] = field(default_factory=dict)


# -- built-in programs ---------------------------------------------------------------------


def hello_world(backend: LocalBackend, user_messenger: UserMessenger, iterations: int = 3) -> str:
    """Publish ``{"iteration": i}`` for ``i`` in ``1..iterations``; return ``"Hello, World!"``.

    Each iteration is also printed, so the job has logs to show.

    Args:
        backend: The backend.
        user_messenger: Where interim results go.
        iterations: How many interim results to publish.

    Returns:
        ``"Hello, World!"``.
    """
    for i in range(1, int(iterations) + 1):
        print(f"iteration {i} on {backend.name}", flush=True)
        user_messenger.publish({"iteration": i})
    return "Hello, World!"


def stream(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    count: int = 5,
    interval: float = 0.1,
    size: int = 0,
) -> dict[str, int]:
    """Publish ``{"index": i, "data": [0.0] * size}`` for ``i`` in ``0..count-1``.

    Args:
        backend: The backend.
        user_messenger: Where interim results go.
        count: How many interim results.
        interval: Seconds between two of them.
        size: Length of each ``data`` list.

    Returns:
        ``{"count": count}``.
    """
    count = int(count)
    data = [0.0] * int(size)
    start = time.monotonic()
    for i in range(count):
        if i:
            delay = start + i * float(interval) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        user_messenger.publish({"index": i, "data": data})
    return {"count": count}


def echo(backend: LocalBackend, user_messenger: UserMessenger, **inputs: Any) -> dict[str, Any]:
    """Return the inputs unchanged.

    Args:
        backend: The backend.
        user_messenger: Unused.
        **inputs: Anything.

    Returns:
        The inputs.
    """
    return inputs


def fail(backend: LocalBackend, user_messenger: UserMessenger, message: str = "boom") -> None:
    """Raise ``RuntimeError(message)``, so the job fails with a traceback.

    Args:
        backend: The backend.
        user_messenger: Unused.
        message: The error message.

    Raises:
        RuntimeError: Always.
    """
    raise RuntimeError(message)


def sleep(
    backend: LocalBackend, user_messenger: UserMessenger, seconds: float = 1.0
) -> dict[str, float]:
    """Sleep ``seconds``.

    Args:
        backend: The backend.
        user_messenger: Unused.
        seconds: How long to sleep.

    Returns:
        ``{"slept": seconds}``.
    """
    time.sleep(float(seconds))
    return {"slept": seconds}


def _as_list(value: Any) -> list[Any]:
    """A list, a tuple or an array of at least one dimension as a list; else ``[value]``."""
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0) >= 1:
        return list(value)
    return [value]


def _bind(circuits: list[Any], parameter_values: Any) -> list[Any]:
    """Bind each circuit to its values, in the order of ``circuit.parameters``.

    That is the order the reference's primitives (and qiskit's) use for a list of values.
    """
    values = [] if parameter_values is None else _as_list(parameter_values)
    if not values:
        return circuits
    if len(values) != len(circuits):
        raise ValueError(
            f"{len(values)} lists of parameter values were given for {len(circuits)} circuits"
        )
    bound = []
    for circuit, vals in zip(circuits, values, strict=True):
        vals = [float(v) for v in _as_list(vals)] if vals is not None else []
        if len(vals) != circuit.num_parameters:
            raise ValueError(
                f"{len(vals)} parameter values were given for a circuit with "
                f"{circuit.num_parameters} parameters"
            )
        bound.append(circuit.assign_parameters(vals) if vals else circuit)
    return bound


def _select(items: list[Any], indices: Any) -> list[Any]:
    return items if indices is None else [items[int(i)] for i in _as_list(indices)]


def _shots(value: Any) -> int | None:
    """``None`` (exact) or a positive number of shots."""
    if value is None:
        return None
    shots = int(value)
    if shots <= 0:
        raise ValueError(f"shots must be a positive integer or None, not {value!r}")
    return shots


def _rng(seed: Any) -> Any:
    import numpy as np

    return np.random.default_rng(None if seed is None else int(seed))


def _measured_qubits(circuit: Any) -> list[tuple[int, int]]:
    """``(clbit, qubit)`` of every measurement, by classical bit (the last one per bit wins)."""
    mapping: dict[int, int] = {}
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            clbit = circuit.find_bit(instruction.clbits[0]).index
            mapping[clbit] = circuit.find_bit(instruction.qubits[0]).index
    return sorted(mapping.items())


def _final_state(circuit: Any) -> Any:
    from qiskit.quantum_info import Statevector

    return Statevector(circuit.remove_final_measurements(inplace=False))


def _probabilities(circuit: Any) -> tuple[Any, list[tuple[int, int]]]:
    """The exact outcome distribution over the measured qubits, in classical-bit order.

    Returns ``({bit string: probability}, measured)``; without measurements, all qubits.
    As qiskit's reference ``Sampler``: ``probabilities_dict(qargs, decimals=16)``.
    """
    measured = _measured_qubits(circuit)
    qargs = [qubit for _, qubit in measured] or list(range(circuit.num_qubits))
    return _final_state(circuit).probabilities_dict(qargs=qargs, decimals=16), measured


def _header_metadata(circuit: Any) -> dict[str, Any]:
    metadata = getattr(circuit, "metadata", None)
    return dict(metadata) if isinstance(metadata, dict) else {}


def sampler(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    circuits: Any = None,
    parameter_values: Any = None,
    circuit_indices: Any = None,
    run_options: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Quasi-distributions of circuits, as the hosted ``sampler`` program returned them.

    The inputs are those the reference's ``Sampler`` sends (``circuits``, ``parameters``,
    ``circuit_indices``, ``parameter_values``, ``run_options``, ``transpilation_settings``,
    ``resilience_settings``); the settings are accepted and ignored (noiseless statevector
    simulation). With ``run_options["shots"]`` the counts are drawn as qiskit's reference
    ``Sampler`` draws them (one multinomial draw per circuit, seeded by
    ``run_options["seed_simulator"]``); with ``shots=None`` the distribution is exact.

    Args:
        backend: The backend.
        user_messenger: Unused.
        circuits: A circuit or a list of circuits.
        parameter_values: One list of parameter values per selected circuit.
        circuit_indices: Which circuits to run (default: all, in order).
        run_options: ``shots`` (default 1024; ``None`` for exact) and ``seed_simulator``.
        **_: Other inputs, ignored.

    Returns:
        ``{"quasi_dists": [{"0x3": p, ...}], "metadata": [{"header_metadata": {...},
        "shots": n}]}``: keys as hexadecimal text (what the reference's decoder and
        ``QuasiDistribution`` accept), ``shots`` left out in exact mode (never ``null``).
    """
    options = dict(run_options or {})
    shots = _shots(options.get("shots", 1024))
    rng = _rng(options.get("seed_simulator"))
    circs = _bind(_select(_as_list(circuits), circuit_indices), parameter_values)
    quasi_dists: list[dict[str, float]] = []
    metadata: list[dict[str, Any]] = []
    for circ in circs:
        probabilities = _probabilities(circ)[0]
        if shots is not None:
            counts = rng.multinomial(shots, list(probabilities.values()))
            probabilities = {
                key: int(count) / shots
                for key, count in zip(probabilities, counts, strict=True)
                if count > 0
            }
        quasi_dists.append({hex(int(key, 2)): float(p) for key, p in probabilities.items()})
        meta: dict[str, Any] = {"header_metadata": _header_metadata(circ)}
        if shots is not None:
            meta["shots"] = shots
        metadata.append(meta)
    return {"quasi_dists": quasi_dists, "metadata": metadata}


def estimator(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    circuits: Any = None,
    observables: Any = None,
    parameter_values: Any = None,
    circuit_indices: Any = None,
    observable_indices: Any = None,
    run_options: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Expectation values, as the hosted ``estimator`` program returned them.

    The inputs are those the reference's ``Estimator`` sends. Observables arrive as
    ``SparsePauliOp`` (rebuilt from their ``settings`` payload), ``Pauli``, ``PauliList``
    or Pauli strings. Exact with ``shots=None``; with shots, each value is drawn as qiskit's
    reference ``Estimator`` draws it (normal, standard deviation ``sqrt(variance / shots)``,
    seeded by ``run_options["seed_simulator"]``).

    Args:
        backend: The backend.
        user_messenger: Unused.
        circuits: A circuit or a list of circuits.
        observables: An observable or a list of them.
        parameter_values: One list of parameter values per expectation value.
        circuit_indices: Which circuit each expectation value uses.
        observable_indices: Which observable each expectation value uses.
        run_options: ``shots`` (default 1024; ``None`` for exact) and ``seed_simulator``.
        **_: Other inputs, ignored.

    Returns:
        ``{"values": [float], "metadata": [{"variance": v, "shots": n}]}`` (``{}`` per value
        in exact mode).
    """
    options = dict(run_options or {})
    shots = _shots(options.get("shots", 1024))
    rng = _rng(options.get("seed_simulator"))
    circs = _select(_as_list(circuits), circuit_indices)
    obs = _select([_observable(o) for o in _as_list(observables)], observable_indices)
    if len(obs) == 1 and len(circs) > 1:
        obs = obs * len(circs)
    if len(obs) != len(circs):
        raise ValueError(f"{len(circs)} circuits were given with {len(obs)} observables")
    circs = _bind(circs, parameter_values)
    values: list[float] = []
    metadata: list[dict[str, Any]] = []
    for circ, observable in zip(circs, obs, strict=True):
        if circ.num_qubits != observable.num_qubits:
            raise ValueError(
                f"A circuit of {circ.num_qubits} qubits was given an observable of "
                f"{observable.num_qubits} qubits"
            )
        state = _final_state(circ)
        value = float(state.expectation_value(observable).real)
        if shots is None:
            values.append(value)
            metadata.append({})
            continue
        square = (observable @ observable).simplify(atol=0)
        variance = max(float(state.expectation_value(square).real) - value**2, 0.0)
        values.append(float(rng.normal(value, (variance / shots) ** 0.5)))
        metadata.append({"variance": variance, "shots": shots})
    return {"values": values, "metadata": metadata}


def _observable(value: Any) -> Any:
    """A ``SparsePauliOp`` from what an estimator may be sent as an observable."""
    from qiskit.quantum_info import SparsePauliOp

    if isinstance(value, SparsePauliOp):
        return value
    try:
        return SparsePauliOp(value)
    except Exception as err:
        raise ValueError(
            f"Cannot use {type(value).__name__} {value!r:.200} as an observable ({err})"
        ) from None


def circuit_runner(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    circuits: Any = None,
    shots: int = 1024,
    memory: bool = False,
    seed_simulator: int | None = None,
    measurement_error_mitigation: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Run circuits and return a qiskit ``Result`` as a dict, as the hosted ``circuit-runner``.

    The inputs are those the hosted program took: ``circuits``, ``shots``, ``memory``,
    ``seed_simulator``, ``measurement_error_mitigation``, and the transpilation settings
    (``initial_layout``, ``layout_method``, ``routing_method``, ``translation_method``,
    ``seed_transpiler``, ``optimization_level``, ``init_qubits``, ``rep_delay``,
    ``transpiler_options``, ``use_measure_esp``), which are accepted and have no effect on a
    noiseless simulation. The result is plain JSON (hexadecimal count keys), so the
    reference's ``RunnerResult`` (which reads it with ``json.loads``) and ours both decode it.
    With ``measurement_error_mitigation`` each experiment also carries
    ``quasiprobabilities`` and the header its ``final_measurement_mapping``.

    Args:
        backend: The backend.
        user_messenger: Unused.
        circuits: A circuit or a list of circuits.
        shots: Shots per circuit.
        memory: Whether to return each shot's outcome (``data.memory``).
        seed_simulator: Seed of the sampling.
        measurement_error_mitigation: Whether to add quasi-probabilities.
        **_: Other inputs, ignored.

    Returns:
        A ``qiskit.result.Result`` dict.
    """
    import uuid as uuid_module

    count = _shots(shots)
    if count is None:
        raise ValueError("circuit-runner needs a number of shots")
    rng = _rng(seed_simulator)
    results = [
        _run_experiment(circ, count, bool(memory), rng, bool(measurement_error_mitigation))
        for circ in _as_list(circuits)
    ]
    return {
        "backend_name": backend.name,
        "backend_version": "0.1.0",
        "qobj_id": str(uuid_module.uuid4()),
        "job_id": "",
        "success": True,
        "status": "COMPLETED",
        "header": {"backend_name": backend.name, "backend_version": "0.1.0"},
        "results": results,
    }


def _run_experiment(circuit: Any, shots: int, memory: bool, rng: Any, quasi: bool) -> Any:
    """One experiment of a ``Result`` dict: counts (and memory) keyed by classical register."""
    probabilities, measured = _probabilities(circuit)
    if not measured:
        raise ValueError(f"Circuit {circuit.name!r} has no measurements")
    outcomes = [int(key, 2) for key in probabilities]
    draws = rng.choice(len(outcomes), size=shots, p=list(probabilities.values()))
    # An outcome's bit i belongs to the i-th measured classical bit.
    values = []
    for outcome in outcomes:
        value = 0
        for position, (clbit, _) in enumerate(measured):
            if outcome >> position & 1:
                value |= 1 << clbit
        values.append(value)
    counts: dict[str, int] = {}
    shot_memory: list[str] = []
    for draw in draws:
        key = hex(values[int(draw)])
        counts[key] = counts.get(key, 0) + 1
        if memory:
            shot_memory.append(key)
    data: dict[str, Any] = {"counts": counts}
    if memory:
        data["memory"] = shot_memory
    header: dict[str, Any] = {
        "name": circuit.name,
        "metadata": _header_metadata(circuit),
        "memory_slots": circuit.num_clbits,
        "n_qubits": circuit.num_qubits,
        "creg_sizes": [[reg.name, reg.size] for reg in circuit.cregs],
        "qreg_sizes": [[reg.name, reg.size] for reg in circuit.qregs],
        "clbit_labels": [[reg.name, index] for reg in circuit.cregs for index in range(reg.size)],
        "qubit_labels": [[reg.name, index] for reg in circuit.qregs for index in range(reg.size)],
    }
    if quasi:
        data["quasiprobabilities"] = {key: n / shots for key, n in counts.items()}
        header["final_measurement_mapping"] = [qubit for _, qubit in measured]
    return {
        "shots": shots,
        "success": True,
        "status": "DONE",
        "meas_level": 2,
        "data": data,
        "header": header,
    }


_BUILTINS: dict[str, str] = {
    "hello-world": f"{__name__}:hello_world",
    "stream": f"{__name__}:stream",
    "echo": f"{__name__}:echo",
    "fail": f"{__name__}:fail",
    "sleep": f"{__name__}:sleep",
}
_QISKIT_BUILTINS: dict[str, str] = {
    # V2 inputs (pubs, version 2) run the V2 programs; 2023 inputs the functions above.
    "sampler": "runtime_job.server.v2_programs:sampler",
    "estimator": "runtime_job.server.v2_programs:estimator",
    "circuit-runner": f"{__name__}:circuit_runner",
}


def qiskit_available() -> bool:
    """Whether qiskit can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("qiskit") is not None
    except (ImportError, ValueError):
        return False


def builtin_programs() -> dict[str, str]:
    """The built-in programs (``sampler``, ``estimator`` and ``circuit-runner`` only when
    qiskit is installed)."""
    programs = dict(_BUILTINS)
    if qiskit_available():
        programs.update(_QISKIT_BUILTINS)
    return programs


def resolve_import_path(path: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"`` and return the callable it names.

    Raises:
        ValueError: The path is malformed or does not name a callable.
        ImportError: The module cannot be imported.
    """
    if not _IMPORT_PATH_RE.match(path):
        raise ValueError(f"Invalid program path {path!r}: expected 'package.module:function'.")
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"Program {path!r} is not callable.")
    return obj  # type: ignore[no-any-return]


class ProgramRegistry:
    """Program ids and the code they run.

    Args:
        programs: Extra programs, ``{id: callable or "package.module:function"}``; they may
            replace built-ins.
        builtins: Whether to include the built-in programs.

    Raises:
        ValueError: An id or a program is invalid.
    """

    def __init__(
        self, programs: Mapping[str, ProgramLike] | None = None, builtins: bool = True
    ) -> None:
        self._programs: dict[str, ProgramLike] = {}
        if builtins:
            self._programs.update(builtin_programs())
        for program_id, program in (programs or {}).items():
            self.register(program_id, program)

    def register(self, program_id: str, program: ProgramLike) -> None:
        """Add or replace a program.

        Args:
            program_id: The id clients use (``[A-Za-z0-9_-]{1,64}``).
            program: A module-level callable (picklable by reference) or an import path
                ``"package.module:function"``.

        Raises:
            ValueError: The id or the program is invalid.
        """
        if not isinstance(program_id, str) or not PROGRAM_ID_RE.match(program_id):
            raise ValueError(f"Invalid program id {program_id!r}: use [A-Za-z0-9_-]{{1,64}}.")
        if isinstance(program, str):
            if not _IMPORT_PATH_RE.match(program):
                raise ValueError(
                    f"Invalid program path {program!r}: expected 'package.module:function'."
                )
        elif callable(program):
            if getattr(program, "__module__", None) == "__main__":
                raise ValueError(
                    f"Program {program_id!r} is defined in __main__, which worker processes "
                    "cannot import; define it in an importable module."
                )
            try:
                pickle.dumps(program)
            except Exception as err:
                raise ValueError(
                    f"Program {program_id!r} cannot be sent to a worker process ({err}); "
                    "define it at module level or register it by import path."
                ) from None
        else:
            raise ValueError(f"Program {program_id!r} must be a callable or an import path.")
        self._programs[program_id] = program

    def get(self, program_id: str) -> ProgramLike | None:
        """The program registered under ``program_id``, or ``None``."""
        return self._programs.get(program_id)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._programs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._programs))

    def __len__(self) -> int:
        return len(self._programs)


__all__ = [
    "BACKEND_NAME",
    "PROGRAM_ID_RE",
    "LocalBackend",
    "ProgramLike",
    "ProgramRegistry",
    "UserMessenger",
    "builtin_programs",
    "circuit_runner",
    "echo",
    "estimator",
    "fail",
    "hello_world",
    "qiskit_available",
    "resolve_import_path",
    "sampler",
    "sleep",
    "stream",
]
