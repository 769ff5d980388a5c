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
    return list(value) if isinstance(value, list | tuple) else [value]


def _bind(circuits: list[Any], parameter_values: Any) -> list[Any]:
    if not parameter_values:
        return circuits
    values = _as_list(parameter_values)
    return [
        circ.assign_parameters(list(vals)) if len(vals) else circ
        for circ, vals in zip(circuits, values, strict=False)
    ]


def sampler(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    circuits: Any = None,
    parameter_values: Any = None,
    circuit_indices: Any = None,
    run_options: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Sample circuits exactly (statevector) and return quasi-distributions (needs qiskit).

    Args:
        backend: The backend.
        user_messenger: Unused.
        circuits: A circuit or a list of circuits.
        parameter_values: One list of parameter values per circuit.
        circuit_indices: Which circuits to run (default: all, in order).
        run_options: ``{"shots": n}``; ``None`` shots gives exact probabilities.
        **_: Other options, ignored.

    Returns:
        ``{"quasi_dists": [{int: float}], "metadata": [{"shots": n}]}``.
    """
    from qiskit.quantum_info import Statevector

    circs = _as_list(circuits)
    if circuit_indices is not None:
        circs = [circs[int(i)] for i in _as_list(circuit_indices)]
    circs = _bind(circs, parameter_values)
    shots = (run_options or {}).get("shots", 1024)
    quasi_dists: list[dict[int, float]] = []
    metadata: list[dict[str, Any]] = []
    for circ in circs:
        measured = sorted(
            (circ.find_bit(inst.clbits[0]).index, circ.find_bit(inst.qubits[0]).index)
            for inst in circ.data
            if inst.operation.name == "measure"
        )
        qargs = [q for _, q in measured] or list(range(circ.num_qubits))
        state = Statevector(circ.remove_final_measurements(inplace=False))
        if shots:
            counts = state.sample_counts(int(shots), qargs=qargs)
            dist = {int(k, 2): v / int(shots) for k, v in counts.items()}
        else:
            probs = state.probabilities_dict(qargs=qargs)
            dist = {int(k, 2): float(v) for k, v in probs.items() if v > 1e-12}
        quasi_dists.append(dist)
        metadata.append({"shots": int(shots) if shots else None})
    return {"quasi_dists": quasi_dists, "metadata": metadata}


def estimator(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    circuits: Any = None,
    observables: Any = None,
    parameter_values: Any = None,
    circuit_indices: Any = None,
    observable_indices: Any = None,
    **_: Any,
) -> dict[str, Any]:
    """Exact expectation values of observables on circuits (needs qiskit).

    Args:
        backend: The backend.
        user_messenger: Unused.
        circuits: A circuit or a list of circuits.
        observables: An observable (Pauli string, ``SparsePauliOp``) or one per circuit.
        parameter_values: One list of parameter values per circuit.
        circuit_indices: Which circuits to run, one per expectation value.
        observable_indices: Which observables, one per expectation value.
        **_: Other options, ignored.

    Returns:
        ``{"values": [float], "metadata": [{}]}``.
    """
    from qiskit.quantum_info import SparsePauliOp, Statevector

    circs = _as_list(circuits)
    obs = [SparsePauliOp(o) if isinstance(o, str) else o for o in _as_list(observables)]
    if circuit_indices is not None:
        circs = [circs[int(i)] for i in _as_list(circuit_indices)]
    if observable_indices is not None:
        obs = [obs[int(i)] for i in _as_list(observable_indices)]
    if len(obs) == 1 and len(circs) > 1:
        obs = obs * len(circs)
    circs = _bind(circs, parameter_values)
    values = [
        float(Statevector(circ.remove_final_measurements(inplace=False)).expectation_value(o).real)
        for circ, o in zip(circs, obs, strict=True)
    ]
    return {"values": values, "metadata": [{} for _ in values]}


_BUILTINS: dict[str, str] = {
    "hello-world": f"{__name__}:hello_world",
    "stream": f"{__name__}:stream",
    "echo": f"{__name__}:echo",
    "fail": f"{__name__}:fail",
    "sleep": f"{__name__}:sleep",
}
_QISKIT_BUILTINS: dict[str, str] = {
    "sampler": f"{__name__}:sampler",
    "estimator": f"{__name__}:estimator",
}


def qiskit_available() -> bool:
    """Whether qiskit can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("qiskit") is not None
    except (ImportError, ValueError):
        return False


def builtin_programs() -> dict[str, str]:
    """The built-in programs (``sampler``/``estimator`` only when qiskit is installed)."""
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
