"""The JSON codec of runtime results: ``RuntimeEncoder``, ``RuntimeDecoder``, ``dumps``, ``loads``.

Values JSON cannot express travel as tagged objects, ``{"__type__": TAG, "__value__": ...}``,
in the reference's format, so payloads written by either side decode on the other:

==================  ========================================================================
tag                 value
==================  ========================================================================
``datetime``        ISO 8601 text (a ``date`` comes back as a ``datetime``)
``complex``         ``[real, imag]``
``ndarray``         numeric arrays: base64 of zlib-compressed ``.npy`` bytes; object arrays:
                    a nested list (plus our ``__shape__`` hint)
``set``             a list
``to_json``         the text returned by ``obj.to_json()`` (never rebuilt into an object)
``settings``        ``obj.settings``; rebuilt only for classes on an explicit allow-list
``spmatrix``        base64 of ``scipy.sparse.save_npz`` bytes (needs scipy)
``QuantumCircuit``  base64 of zlib-compressed QPY (needs qiskit), likewise ``Instruction``
``Parameter``       base64 of the QPY parameter record; ``ParameterExpression``: see docs
``Result``          ``qiskit.result.Result.to_dict()``
==================  ========================================================================

``dumps`` and ``loads`` are the fast paths the library uses; ``RuntimeEncoder`` and
``RuntimeDecoder`` plug the same codec into the standard :mod:`json` module.

Example::

    import numpy as np
    from runtime_job.codec import dumps, loads

    text = dumps({"counts": {0: 12, 3: 4}, "values": np.arange(4.0), "when": {1, 2}})
    data = loads(text)
    assert data["counts"] == {0: 12, 3: 4}  # int keys survive the round trip

Decoding never imports a module named by the payload: ``settings`` payloads are rebuilt only
for classes registered with :func:`register_settings_class` (or a :class:`SettingsRegistry`
passed explicitly); anything else comes back as the plain dict with a ``UserWarning``.
Decompression is bounded (``max_decompressed_size``), ``.npy`` data is read with
``allow_pickle=False``, and malformed binary payloads raise
:class:`~runtime_job.exceptions.ResultDecodingError`.
"""

from __future__ import annotations

import binascii
import collections
import datetime
import importlib
import io
import json
import logging
import math
import os
import struct
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal, Protocol

import numpy as np

from runtime_job.exceptions import ResultDecodingError
from runtime_job.v2 import V2_TAGS, V2Builder, is_extrapolator_name

logger = logging.getLogger(__name__)

DEFAULT_MAX_DECOMPRESSED_SIZE: Final[int] = 2 * 1024**3
"""Default cap, in bytes, on everything one decode call may decompress (2 GiB)."""

QISKIT_EXTRA_HINT: Final[str] = "pip install 'runtime-job[qiskit]'"
"""How to install the optional qiskit support, quoted in error messages."""

_NPY_MAGIC: Final[bytes] = b"\x93NUMPY"
_QPY_MAGIC: Final[bytes] = b"QISKIT"
_NPY_MAX_HEADER: Final[int] = 10_000  # numpy's own default limit for np.load
_PARAMETER_RECORD: Final[struct.Struct] = struct.Struct("!H16s")
_IN_CHUNK: Final[int] = 4 * 1024 * 1024  # compressed bytes fed to zlib per call
_OUT_CHUNK: Final[int] = 16 * 1024 * 1024  # most bytes zlib may return per call
_HEAD_CHARS: Final[int] = 1024  # base64 characters decoded first to find the .npy header
_PARALLEL_MIN_CHARS: int = 256 * 1024  # base64 values at least this long inflate on a worker
_LIFT_MIN_CHARS: int = 64 * 1024  # string literals this long are lifted out before parsing
_LIFT_MIN_BYTES_PER_QUOTE: Final[int] = 4096  # lift only when quotes are this sparse
_B64_CHUNK_CHARS: Final[int] = 2 * 1024 * 1024  # base64 characters decoded per step
_SPLICE_MIN_CHARS: Final[int] = 4096  # base64 values at least this long skip JSON escaping
_MAX_WORKERS: Final[int] = 4


# ---------------------------------------------------------------------------------------------
# Compression and base64 back ends: the standard library, or optional accelerators.


class _Decompressor(Protocol):
    """The part of ``zlib.decompressobj()`` the codec uses."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: Any, max_length: int = ..., /) -> bytes: ...


class _Compressor(Protocol):
    """The part of ``zlib.compressobj()`` the codec uses."""

    def compress(self, data: Any, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class _Backend:
    """Where zlib and base64 come from for one encode or decode call."""

    name: str
    decompressobj: Callable[[], _Decompressor]
    compressobj: Callable[[], _Compressor]
    b64encode: Callable[[Any], bytes]
    b64decode_strict: Callable[[Any], bytes]


def _stdlib_b64decode_strict(data: Any) -> bytes:
    return binascii.a2b_base64(data, strict_mode=True)


def _stdlib_b64encode(data: Any) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def _zlib_compressobj() -> _Compressor:
    # Level 1: about as small as the default level on measurement data, several times faster.
    import zlib

    return zlib.compressobj(1)


def _zlib_decompressobj() -> _Decompressor:
    import zlib

    return zlib.decompressobj()


_STDLIB_BACKEND: Final = _Backend(
    name="stdlib",
    decompressobj=_zlib_decompressobj,
    compressobj=_zlib_compressobj,
    b64encode=_stdlib_b64encode,
    b64decode_strict=_stdlib_b64decode_strict,
)


def _optional_module(name: str) -> Any:
    """Import an optional package, or return ``None`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _load_fast_backend() -> _Backend:
    """Build the accelerated back end from whichever optional packages are installed."""
    decompressobj = _zlib_decompressobj
    compressobj = _zlib_compressobj
    b64encode = _stdlib_b64encode
    b64decode_strict = _stdlib_b64decode_strict
    parts = []
    isal_zlib = _optional_module("isal.isal_zlib")
    if isal_zlib is not None:

        def _isal_compressobj() -> _Compressor:
            compressor: _Compressor = isal_zlib.compressobj(1)
            return compressor

        decompressobj = isal_zlib.decompressobj
        compressobj = _isal_compressobj
        parts.append("isal")
    pybase64 = _optional_module("pybase64")
    if pybase64 is not None:

        def _pybase64_decode(data: Any) -> bytes:
            decoded: bytes = pybase64.b64decode(data, validate=True)
            return decoded

        b64encode = pybase64.b64encode
        b64decode_strict = _pybase64_decode
        parts.append("pybase64")
    return _Backend(
        name="+".join(parts) or "stdlib",
        decompressobj=decompressobj,
        compressobj=compressobj,
        b64encode=b64encode,
        b64decode_strict=b64decode_strict,
    )


_FAST_BACKEND: Final = _load_fast_backend()
logger.debug("codec accelerators: %s", _FAST_BACKEND.name)


def _backend(accelerated: bool) -> _Backend:
    return _FAST_BACKEND if accelerated else _STDLIB_BACKEND


def accelerators() -> tuple[str, ...]:
    """Name the optional accelerator packages the codec found.

    Returns:
        A tuple drawn from ``"isal"`` (zlib) and ``"pybase64"``; empty when the codec runs
        on the standard library alone.
    """
    name = _FAST_BACKEND.name
    return () if name == "stdlib" else tuple(name.split("+"))


# ---------------------------------------------------------------------------------------------
# The allow-list for ``settings`` payloads.


class SettingsRegistry:
    """The classes that ``settings`` payloads may be rebuilt into.

    A ``settings`` payload names a module and a class. The decoder rebuilds it only when that
    exact class was registered here; it never imports anything. Registration is thread-safe.

    Args:
        classes: Classes to register at once.

    Example::

        registry = SettingsRegistry([MyOptimizer])
        loads(text, settings_registry=registry)
    """

    def __init__(self, classes: Iterable[type] = ()) -> None:
        self._lock = threading.Lock()
        self._classes: dict[tuple[str, str], type] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type) -> type:
        """Allow ``settings`` payloads naming ``cls`` to be rebuilt as ``cls(**settings)``.

        Args:
            cls: The class; it is keyed by ``cls.__module__`` and ``cls.__name__``.

        Returns:
            ``cls`` itself, so the method also works as a class decorator.

        Raises:
            TypeError: ``cls`` is not a class.
        """
        if not isinstance(cls, type):
            raise TypeError(f"Only classes can be registered for settings payloads, not {cls!r}")
        with self._lock:
            self._classes[(cls.__module__, cls.__name__)] = cls
        return cls

    def unregister(self, cls: type) -> None:
        """Remove ``cls`` from the allow-list; unknown classes are ignored.

        Args:
            cls: A class registered before.
        """
        with self._lock:
            key = (cls.__module__, cls.__name__)
            if self._classes.get(key) is cls:
                del self._classes[key]

    def lookup(self, module: object, name: object) -> type | None:
        """Find the registered class for a payload's ``__module__`` and ``__class__``.

        Args:
            module: The payload's module name.
            name: The payload's class name.

        Returns:
            The class, or ``None`` when it is not on the allow-list.
        """
        if not isinstance(module, str) or not isinstance(name, str):
            return None
        with self._lock:
            return self._classes.get((module, name))

    def __contains__(self, cls: object) -> bool:
        if not isinstance(cls, type):
            return False
        return self.lookup(cls.__module__, cls.__name__) is cls

    def __len__(self) -> int:
        with self._lock:
            return len(self._classes)

    def __repr__(self) -> str:
        with self._lock:
            names = sorted(f"{module}.{name}" for module, name in self._classes)
        return f"SettingsRegistry([{', '.join(names)}])"


_DEFAULT_SETTINGS_REGISTRY: Final = SettingsRegistry()


_QUANTUM_INFO_SETTINGS: Final[dict[tuple[str, str], str]] = {
    (f"qiskit.quantum_info.{module}", name): name
    for module, name in (
        ("operators.symplectic.pauli", "Pauli"),
        ("operators.symplectic.pauli_list", "PauliList"),
        ("operators.symplectic.sparse_pauli_op", "SparsePauliOp"),
        ("operators.operator", "Operator"),
        ("operators.channel.choi", "Choi"),
        ("operators.channel.superop", "SuperOp"),
        ("operators.channel.kraus", "Kraus"),
        ("operators.channel.chi", "Chi"),
        ("operators.channel.ptm", "PTM"),
        ("operators.channel.stinespring", "Stinespring"),
        ("states.statevector", "Statevector"),
        ("states.densitymatrix", "DensityMatrix"),
    )
}
"""The ``qiskit.quantum_info`` classes every decoder rebuilds from ``settings`` payloads.

Keyed by the exact ``(__module__, __class__)`` a payload names (the same in qiskit-terra
0.23/0.24 and qiskit 1.x/2.x); the class is then taken from ``qiskit.quantum_info`` itself,
so the module a payload names is never imported.
"""


def _quantum_info_class(module: object, name: object) -> type | None:
    """The built-in allow-list's class for a payload, or ``None`` when it is not on it."""
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    attribute = _QUANTUM_INFO_SETTINGS.get((module, name))
    if attribute is None:
        return None
    quantum_info = _optional_module("qiskit.quantum_info")
    if quantum_info is None:
        return None
    cls = getattr(quantum_info, attribute, None)
    return cls if isinstance(cls, type) else None


def default_settings_registry() -> SettingsRegistry:
    """Return the process-wide allow-list used when no registry is passed.

    Returns:
        The default :class:`SettingsRegistry` (empty until classes are registered).
    """
    return _DEFAULT_SETTINGS_REGISTRY


def register_settings_class(cls: type) -> type:
    """Allow ``settings`` payloads naming ``cls`` to be rebuilt by every decoder.

    Args:
        cls: The class to allow; decoding calls ``cls(**settings)``.

    Returns:
        ``cls``, so this also works as a class decorator.
    """
    return _DEFAULT_SETTINGS_REGISTRY.register(cls)


def unregister_settings_class(cls: type) -> None:
    """Remove ``cls`` from the process-wide allow-list.

    Args:
        cls: A class registered with :func:`register_settings_class`.
    """
    _DEFAULT_SETTINGS_REGISTRY.unregister(cls)


# ---------------------------------------------------------------------------------------------
# Helpers shared by both directions.


def to_base64_string(data: str) -> str:
    """Encode text as base64 of its UTF-8 bytes, as the reference's helper does.

    Args:
        data: Any text.

    Returns:
        The base64 text.
    """
    return binascii.b2a_base64(data.encode("utf-8"), newline=False).decode("ascii")


def _import_optional(module: str, tag: str, hint: str) -> ModuleType:
    try:
        __import__(module)
    except ImportError as err:
        raise ResultDecodingError(
            f"Decoding a {tag!r} payload needs the optional package {module.split('.')[0]!r}: "
            f"{hint}"
        ) from err
    return sys.modules[module]


def _qiskit(module: str, tag: str) -> ModuleType:
    return _import_optional(module, tag, QISKIT_EXTRA_HINT)


def _is_int_key(key: object) -> bool:
    return isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_))


def _with_int_key_flags(obj: Any) -> Any:
    """Return ``obj`` with ``"__int_keys__": True`` added to every dict that has int keys.

    Containers are copied only where something changes; ``obj`` itself is never mutated.
    numpy integer keys become plain ints.
    """
    if isinstance(obj, dict):
        replaced: dict[Any, Any] = {}
        int_keys = False
        for key, value in obj.items():
            if isinstance(value, (dict, list, tuple)):
                new_value = _with_int_key_flags(value)
                if new_value is not value:
                    replaced[key] = new_value
            if not int_keys and _is_int_key(key):
                int_keys = True
        if not replaced and not int_keys:
            return obj
        result = {
            (int(key) if _is_int_key(key) else key): replaced.get(key, value)
            for key, value in obj.items()
        }
        if int_keys:
            result["__int_keys__"] = True
        return result
    if isinstance(obj, (list, tuple)):
        items: list[Any] | None = None
        for index, value in enumerate(obj):
            if isinstance(value, (dict, list, tuple)):
                new_value = _with_int_key_flags(value)
                if new_value is not value:
                    if items is None:
                        items = list(obj)
                    items[index] = new_value
        return obj if items is None else items
    return obj


def _int_key(key: str) -> int | str:
    """Turn a key written from an int back into that int; leave any other key alone."""
    try:
        number = int(key)
    except ValueError:
        return key
    return number if str(number) == key else key


def _restore_int_keys(obj: dict[str, Any]) -> dict[Any, Any]:
    return {_int_key(key): value for key, value in obj.items() if key != "__int_keys__"}


def _as_hashable(value: Any) -> Any:
    """Lists inside a decoded set were tuples before encoding: make them tuples again."""
    if isinstance(value, list):
        return tuple(_as_hashable(item) for item in value)
    return value


def _excerpt(data: str | bytes | memoryview, limit: int = 80) -> str:
    text = data if isinstance(data, str) else bytes(data[:limit]).decode("utf-8", "replace")
    return text[:limit] + ("..." if len(data) > limit else "")


# ---------------------------------------------------------------------------------------------
# Encoding.


class _DeflateSink:
    """A write-only file object that zlib-compresses what ``np.save`` writes into it."""

    def __init__(self, backend: _Backend) -> None:
        self._compressor = backend.compressobj()
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        out = self._compressor.compress(data)
        if out:
            self._parts.append(out)
        return len(memoryview(data))

    def flush(self) -> None:
        """Nothing to do: data is compressed as it is written (``np.save`` may call this)."""

    def finish(self) -> bytes:
        self._parts.append(self._compressor.flush())
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _b64_text(backend: _Backend, data: bytes) -> str:
    return backend.b64encode(data).decode("ascii")


def _deflate(backend: _Backend, data: bytes) -> bytes:
    sink = _DeflateSink(backend)
    sink.write(data)
    return sink.finish()


def _npy_b64(backend: _Backend, array: np.ndarray[Any, Any]) -> str:
    """Base64 of zlib of exactly the bytes ``np.save(array, allow_pickle=False)`` writes."""
    sink = _DeflateSink(backend)
    np.save(sink, array, allow_pickle=False)
    return _b64_text(backend, sink.finish())


PLATFORM_QPY_VERSION: Final[int] = 17
"""The highest QPY format version IBM Quantum Platform accepts (``platform.md`` 5.3)."""


def _qpy_bytes(program: Any, version: int | None = None) -> bytes:
    """QPY of ``program``; circuit ``metadata`` goes through :class:`RuntimeEncoder`.

    As in the reference, so metadata holding numpy values (or anything else the codec can
    encode) does not stop a circuit from being sent. ``version`` caps the QPY format version
    (the installed qiskit's current one when lower); ``None`` writes the current one.
    """
    qpy = importlib.import_module("qiskit.qpy")
    buffer = io.BytesIO()
    if version is None:
        qpy.dump(program, buffer, metadata_serializer=RuntimeEncoder)
    else:
        version = min(version, int(getattr(qpy, "QPY_VERSION", version)))
        qpy.dump(program, buffer, metadata_serializer=RuntimeEncoder, version=version)
    return buffer.getvalue()


def _wrap_value_in_circuit(value: Any) -> Any:
    """A one-qubit circuit holding ``value`` as the parameter of a placeholder instruction."""
    from qiskit.circuit import Instruction, QuantumCircuit

    circuit = QuantumCircuit(1)
    circuit.append(Instruction("runtime_job_value", 1, 0, [value]), [0])
    return circuit


def _parameter_uuid(parameter: Any) -> uuid.UUID:
    """A ``Parameter``'s UUID: public ``uuid`` since qiskit 1.0, ``_uuid`` in qiskit-terra."""
    value = getattr(parameter, "uuid", None)
    if value is None:
        value = parameter._uuid
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"Parameter {parameter!r} has no UUID")
    return value


def _make_parameter(parameter_class: Any, name: str, value: uuid.UUID) -> Any:
    """``Parameter(name, uuid=value)`` on qiskit 1.x/2.x and on qiskit-terra 0.23/0.24.

    qiskit-terra's ``Parameter`` takes the UUID only in ``__new__`` (as unpickling does), and
    its ``__init__`` refuses it.
    """
    try:
        return parameter_class(name, uuid=value)
    except TypeError:
        parameter = parameter_class.__new__(parameter_class, name, uuid=value)
        parameter.__init__(name)
        return parameter


def _encode_qiskit(encoder: RuntimeEncoder, obj: Any) -> dict[str, Any] | None:
    """Encode a qiskit object (only called when qiskit is already imported)."""
    from qiskit.circuit import Instruction, Parameter, ParameterExpression, QuantumCircuit

    backend = encoder._backend
    version = encoder._qpy_version
    if isinstance(obj, QuantumCircuit):
        value = _b64_text(backend, _deflate(backend, _qpy_bytes(obj, version)))
        return {"__type__": "QuantumCircuit", "__value__": value}
    if isinstance(obj, Parameter):
        name = obj.name.encode("utf-8")
        record = _PARAMETER_RECORD.pack(len(name), _parameter_uuid(obj).bytes) + name
        return {"__type__": "Parameter", "__value__": _b64_text(backend, record)}
    if isinstance(obj, ParameterExpression):
        value = _b64_text(backend, _qpy_bytes(_wrap_value_in_circuit(obj), version))
        return {"__type__": "ParameterExpression", "__value__": value}
    if isinstance(obj, Instruction):
        from qiskit.circuit import QuantumCircuit as Circuit

        circuit = Circuit(obj.num_qubits, obj.num_clbits)
        circuit.append(obj, list(range(obj.num_qubits)), list(range(obj.num_clbits)))
        value = _b64_text(backend, _deflate(backend, _qpy_bytes(circuit, version)))
        return {"__type__": "Instruction", "__value__": value}
    return None


class RuntimeEncoder(json.JSONEncoder):
    """A :class:`json.JSONEncoder` that writes the reference's ``__type__`` tags.

    Use it with the standard library (``json.dumps(obj, cls=RuntimeEncoder)``) or through the
    faster :func:`dumps`. Beyond the reference, numpy scalars encode as plain numbers
    (complex ones with the ``complex`` tag), ``frozenset`` encodes like ``set``, and every dict
    with int keys (not only inside ``settings``) carries ``"__int_keys__": true`` so
    :class:`RuntimeDecoder` restores the keys.

    Args:
        *args: Passed to :class:`json.JSONEncoder`.
        accelerated: Use the optional accelerator packages (``isal``) when installed.
        qpy_version: Cap on the QPY format version of circuits (``None``: the installed
            qiskit's current one; :data:`PLATFORM_QPY_VERSION` for IBM Quantum Platform).
        **kwargs: Passed to :class:`json.JSONEncoder`.
    """

    def __init__(
        self, *args: Any, accelerated: bool = True, qpy_version: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._backend = _backend(accelerated)
        self._qpy_version = qpy_version

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        """Encode ``o`` piece by piece, after flagging dicts that have int keys.

        Args:
            o: The object to encode.
            _one_shot: As for :meth:`json.JSONEncoder.iterencode`.

        Returns:
            An iterator (or list) of string chunks.
        """
        return super().iterencode(_with_int_key_flags(o), _one_shot)

    def _blob(self, value: str) -> str:
        """Hook for :func:`dumps`: store a long base64 value out of band."""
        return value

    def default(self, o: Any) -> Any:
        """Turn an object JSON cannot express into a tagged dict (first matching rule wins).

        Args:
            o: The object the base encoder could not serialise.

        Returns:
            A JSON-serialisable replacement.

        Raises:
            TypeError: No rule matches ``o``.
        """
        if isinstance(o, datetime.date):
            return {"__type__": "datetime", "__value__": o.isoformat()}
        if isinstance(o, (complex, np.complexfloating)):
            return {"__type__": "complex", "__value__": [o.real, o.imag]}
        if isinstance(o, np.generic):
            if isinstance(o, np.bool_):
                return bool(o)
            if isinstance(o, np.integer):
                return int(o)
            if isinstance(o, np.floating):
                return float(o)
        if isinstance(o, np.ndarray):
            if o.dtype.kind == "O":
                return {
                    "__type__": "ndarray",
                    "__value__": _with_int_key_flags(o.tolist()),
                    "__shape__": list(o.shape),
                }
            return {"__type__": "ndarray", "__value__": self._blob(_npy_b64(self._backend, o))}
        if isinstance(o, (set, frozenset)):
            return {"__type__": "set", "__value__": _with_int_key_flags(list(o))}
        qiskit_loaded = sys.modules.get("qiskit") is not None
        if qiskit_loaded:
            from qiskit.result import Result

            if isinstance(o, Result):
                return {"__type__": "Result", "__value__": _with_int_key_flags(o.to_dict())}
        if hasattr(o, "to_json"):
            return {"__type__": "to_json", "__value__": o.to_json()}
        if qiskit_loaded:
            tagged = _encode_qiskit(self, o)
            if tagged is not None:
                return tagged
            from qiskit.circuit.parametertable import ParameterView

            if isinstance(o, ParameterView):
                return list(o)
        aer_noise = sys.modules.get("qiskit_aer.noise")
        if aer_noise is not None and isinstance(o, aer_noise.NoiseModel):
            return {"__type__": "NoiseModel", "__value__": _with_int_key_flags(o.to_dict())}
        if hasattr(o, "settings"):
            return {
                "__type__": "settings",
                "__module__": type(o).__module__,
                "__class__": type(o).__name__,
                "__value__": _with_int_key_flags(o.settings),
            }
        if callable(o):
            warnings.warn(
                f"Callable {o} is not JSON serializable and will be set to None.",
                UserWarning,
                stacklevel=2,
            )
            return None
        if sys.modules.get("scipy.sparse") is not None:
            import scipy.sparse

            if scipy.sparse.issparse(o):
                buffer = io.BytesIO()
                scipy.sparse.save_npz(buffer, o)
                return {
                    "__type__": "spmatrix",
                    "__value__": _b64_text(self._backend, buffer.getvalue()),
                }
        return super().default(o)


class _SplicingEncoder(RuntimeEncoder):
    """The encoder behind :func:`dumps`: long base64 values bypass JSON escaping.

    Each long value is replaced by a unique placeholder while the document is encoded, and the
    values are put back in one final join, which saves two copies of every large array.
    """

    def __init__(self, accelerated: bool, qpy_version: int | None = None) -> None:
        super().__init__(accelerated=accelerated, qpy_version=qpy_version, ensure_ascii=True)
        self._nonce = uuid.uuid4().hex
        self._blobs: list[tuple[str, str]] = []

    def _blob(self, value: str) -> str:
        if len(value) < _SPLICE_MIN_CHARS:
            return value
        token = f"@runtime-job-blob-{self._nonce}-{len(self._blobs)}@"
        self._blobs.append((token, value))
        return token

    def splice(self, text: str) -> str:
        if not self._blobs:
            return text
        parts: list[str] = []
        position = 0
        for token, value in self._blobs:
            found = text.find(token, position)
            if found < 0:  # pragma: no cover - tokens are written in the order they are made
                text = text.replace(token, value)
                continue
            parts.append(text[position:found])
            parts.append(value)
            position = found + len(token)
        parts.append(text[position:])
        self._blobs.clear()
        return "".join(parts)


def dumps(obj: Any, *, accelerated: bool = True, qpy_version: int | None = None) -> str:
    """Serialise ``obj`` to JSON text with the runtime type tags (the library's fast path).

    Args:
        obj: Anything :class:`RuntimeEncoder` can encode.
        accelerated: Use the optional accelerator packages when installed.
        qpy_version: Cap on the QPY format version of circuits (``None``: current).

    Returns:
        The JSON text.

    Raises:
        TypeError: Some value cannot be encoded.
        ValueError: A value cannot be written (for example an array of Python objects inside
            a structured dtype).
    """
    encoder = _SplicingEncoder(accelerated, qpy_version)
    return encoder.splice(encoder.encode(obj))


# ---------------------------------------------------------------------------------------------
# Decoding.


@dataclass(frozen=True)
class _NpyHeader:
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _Budget:
    """How many more bytes one decode call may decompress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._remaining = limit
        self._lock = threading.Lock()

    def reserve(self, size: int, what: str) -> None:
        with self._lock:
            if size > self._remaining:
                raise ResultDecodingError(
                    f"Refusing to decompress {what}: it would exceed the limit of "
                    f"{self.limit} decompressed bytes per result (max_decompressed_size)"
                )
            self._remaining -= size


def _b64decode(backend: _Backend, text: str | bytes | memoryview, what: str) -> bytes:
    """Decode base64 like the reference (stray characters ignored), fast when well formed."""
    if not isinstance(text, str | bytes | bytearray | memoryview):
        raise ResultDecodingError(
            f"Invalid {what} payload: expected base64 text, not {type(text).__name__}"
        )
    try:
        return backend.b64decode_strict(text)
    except (binascii.Error, ValueError):
        pass
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError) as err:
        raise ResultDecodingError(
            f"Invalid base64 in {what} payload ({err})", excerpt=_excerpt(text[:100])
        ) from err


def _slices(data: bytes) -> Iterator[memoryview]:
    """``data`` cut into zero-copy slices of ``_IN_CHUNK`` bytes."""
    view = memoryview(data)
    for start in range(0, len(view), _IN_CHUNK):
        yield view[start : start + _IN_CHUNK]


def _then_empty(chunks: Iterable[Any]) -> Iterator[Any]:
    yield from chunks
    yield b""


def _inflate_chunks(backend: _Backend, chunks: Iterable[Any], what: str) -> Iterator[bytes]:
    """Yield the decompressed pieces of one zlib stream fed as ``chunks``.

    Each piece is at most ``_OUT_CHUNK`` bytes, so memory stays bounded whatever the
    compression ratio; callers count the pieces against their budget.
    """
    decompressor = backend.decompressobj()
    try:
        for chunk in _then_empty(chunks):
            pending: Any = chunk
            while True:
                piece = decompressor.decompress(pending, _OUT_CHUNK)
                if piece:
                    yield piece
                if decompressor.eof:
                    return
                pending = decompressor.unconsumed_tail
                # A full piece may leave output buffered inside zlib: ask again even when
                # all input was taken (the empty chunk at the end drains the last of it).
                if not pending and len(piece) < _OUT_CHUNK:
                    break
    except ResultDecodingError:
        raise
    except Exception as err:  # zlib.error, isal's IsalError: both mean corrupt data
        raise ResultDecodingError(f"Corrupt compressed data in {what} payload ({err})") from err
    raise ResultDecodingError(f"Truncated compressed data in {what} payload")


def _inflate(backend: _Backend, data: bytes, budget: _Budget, what: str) -> bytes:
    parts = []
    for piece in _inflate_chunks(backend, _slices(data), what):
        budget.reserve(len(piece), f"the {what} payload")
        parts.append(piece)
    return b"".join(parts)


def _parse_npy_header(head: bytes) -> _NpyHeader | None:
    """Parse a ``.npy`` header from the first decompressed bytes; ``None`` if more are needed.

    Raises:
        ResultDecodingError: The bytes are not a ``.npy`` header, or one we refuse.
    """
    if len(head) < 8:
        return None
    if head[:6] != _NPY_MAGIC:
        raise ResultDecodingError("The ndarray payload is not .npy data (bad magic string)")
    major, minor = head[6], head[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise ResultDecodingError(f"Unsupported .npy format version {major}.{minor}")
    size_format = "<H" if major == 1 else "<I"
    size_end = 8 + struct.calcsize(size_format)
    if len(head) < size_end:
        return None
    (header_len,) = struct.unpack(size_format, head[8:size_end])
    if header_len > _NPY_MAX_HEADER:
        raise ResultDecodingError(f"The .npy header is too long ({header_len} bytes)")
    if len(head) < size_end + header_len:
        return None
    if major == 3:
        raise _NpyFallback
    stream = io.BytesIO(head[: size_end + header_len])
    np.lib.format.read_magic(stream)
    reader = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    try:
        shape, fortran_order, dtype = reader(stream, max_header_size=_NPY_MAX_HEADER)
    except ValueError as err:
        raise ResultDecodingError(f"Invalid .npy header in ndarray payload ({err})") from err
    if any(size < 0 for size in shape):
        raise ResultDecodingError(f"Invalid .npy header in ndarray payload (shape {shape})")
    return _NpyHeader(dtype, tuple(shape), bool(fortran_order), size_end + header_len)


class _NpyFallback(Exception):
    """Internal: the header is valid but rare (format 3.0); let ``np.load`` read it."""


def _refuse_objects(dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise ResultDecodingError(
            "Refusing to load an ndarray payload of Python objects: reading it would need "
            "pickle (allow_pickle=False)"
        )


class _NpyJob:
    """Decodes one base64 ``.npy`` payload: the header now, the data now or on a worker."""

    def __init__(self, backend: _Backend, text: str | _Blob, budget: _Budget) -> None:
        self._backend = backend
        self._text: str | _Blob = text
        header = self._read_header()
        _refuse_objects(header.dtype)
        budget.reserve(header.data_offset + header.nbytes, "an ndarray payload")
        self._header = header
        self._flat = np.empty(header.nbytes, dtype=np.uint8)
        if header.dtype.itemsize == 0:
            self.array: np.ndarray[Any, Any] = np.empty(header.shape, dtype=header.dtype)
        else:
            order: Literal["C", "F"] = "F" if header.fortran_order else "C"
            self.array = self._flat.view(header.dtype).reshape(header.shape, order=order)

    def _read_header(self) -> _NpyHeader:
        """Decode just enough of the payload to read the ``.npy`` header."""
        text = self._text
        chars = _HEAD_CHARS
        while True:
            try:
                compressed = self._backend.b64decode_strict(text[:chars])
            except (binascii.Error, ValueError):
                compressed = _b64decode(self._backend, text[0:], "ndarray")
                chars = len(text)
            decompressor = self._backend.decompressobj()
            try:
                head = decompressor.decompress(compressed, 16 + _NPY_MAX_HEADER)
            except Exception as err:
                raise ResultDecodingError(
                    f"Corrupt compressed data in ndarray payload ({err})",
                    excerpt=_excerpt(text[:100]),
                ) from err
            header = _parse_npy_header(head)
            if header is not None:
                return header
            if chars >= len(text) or len(head) >= 16 + _NPY_MAX_HEADER:
                raise ResultDecodingError(
                    "Truncated ndarray payload: no complete .npy header",
                    excerpt=_excerpt(text[:100]),
                )
            chars *= 4

    def compressed_chunks(self) -> Iterator[bytes]:
        """Decode the base64 text piece by piece (the strict fast path, else all at once)."""
        text, self._text = self._text, ""
        step = _B64_CHUNK_CHARS
        for start in range(0, len(text), step):
            try:
                chunk = self._backend.b64decode_strict(text[start : start + step])
            except (binascii.Error, ValueError):
                # Not canonical base64 (line breaks, say): decode the rest as the reference
                # does, skipping stray characters.
                yield _b64decode(self._backend, text[start:], "ndarray")
                return
            yield chunk

    def consume(self, chunks: Iterable[bytes]) -> None:
        """Decompress the compressed ``chunks`` into the array's memory.

        Raises:
            ResultDecodingError: The data is corrupt, truncated, or longer than declared.
        """
        header = self._header
        target = self._flat.data
        skip = header.data_offset
        position = 0
        for piece in _inflate_chunks(self._backend, chunks, "ndarray"):
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece = piece[skip:]
                skip = 0
            end = position + len(piece)
            if end > header.nbytes:
                raise ResultDecodingError(
                    "The ndarray payload holds more data than its .npy header declares"
                )
            target[position:end] = piece
            position = end
        if position != header.nbytes:
            raise ResultDecodingError(
                f"Truncated ndarray payload: {position} of {header.nbytes} data bytes"
            )

    def fill(self) -> None:
        """Decode and decompress the whole payload on this thread."""
        self.consume(self.compressed_chunks())


def _load_npy_fallback(
    backend: _Backend, text: str | _Blob, budget: _Budget
) -> np.ndarray[Any, Any]:
    raw = _inflate(backend, _b64decode(backend, text[0:], "ndarray"), budget, "ndarray")
    try:
        array: np.ndarray[Any, Any] = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as err:
        raise ResultDecodingError(f"Invalid .npy data in ndarray payload ({err})") from err
    return array


def _object_array(value: Any, shape: Any) -> np.ndarray[Any, Any]:
    """Rebuild an object array from its nested list, honouring our ``__shape__`` hint."""
    if shape is None:
        try:
            return np.array(value)
        except ValueError:  # ragged nesting: numpy >= 1.24 refuses to guess
            ragged = np.empty(len(value), dtype=object)
            for position, item in enumerate(value):
                ragged[position] = item
            return ragged
    try:
        dims = tuple(int(size) for size in shape)
        array = np.empty(dims, dtype=object)
        for index in np.ndindex(*dims):
            item = value
            for axis_index in index:
                item = item[axis_index]
            array[index] = item
    except (TypeError, ValueError, IndexError, KeyError) as err:
        raise ResultDecodingError(
            f"The object ndarray payload does not match its shape {shape!r}"
        ) from err
    return array


class _Blob:
    """A long string literal of the caller's document, left where it is.

    Slicing gives ``str`` pieces (for a text document) or zero-copy ``memoryview`` pieces
    (for bytes), which is all base64 decoding needs.
    """

    def __init__(self, source: str | memoryview, start: int, end: int) -> None:
        self._source = source
        self._start = start
        self._end = end

    def __len__(self) -> int:
        return self._end - self._start

    def __getitem__(self, index: slice) -> str | memoryview:
        start, stop, _ = index.indices(len(self))
        return self._source[self._start + start : self._start + stop]

    def text(self) -> str:
        """The literal's text (it holds no escapes)."""
        piece = self._source[self._start : self._end]
        return piece if isinstance(piece, str) else bytes(piece).decode("utf-8")


class _Blobs:
    """The literals lifted out of one document, keyed by their placeholders."""

    def __init__(self, prefix: str, blobs: list[_Blob]) -> None:
        self._prefix = prefix
        self._blobs: list[_Blob | None] = list(blobs)

    def take(self, value: object) -> _Blob | None:
        """The blob a placeholder stands for (each is handed out once), else ``None``."""
        if type(value) is not str or not value.startswith(self._prefix):
            return None
        index = int(value[len(self._prefix) :])
        blob, self._blobs[index] = self._blobs[index], None
        return blob


def _lift_blobs(text: str | bytes) -> tuple[str, _Blobs] | None:
    """Lift long ``"__value__": "..."`` string literals out of a JSON document.

    ``json.loads`` copies every string it reads, and for ``bytes`` it first copies the whole
    document to ``str``; for a result that is mostly base64 that is two needless copies of
    it. Here a lexer that tracks only quotes and backslashes (exact for JSON strings) finds
    the long literals that are values of a ``"__value__"`` key, and replaces each with a
    short placeholder; ``json.loads`` then parses only the small remainder. It runs only
    when quotes are sparse, so it costs a few microseconds per literal, and returns ``None``
    (parse normally) whenever in doubt.
    """
    size = len(text)
    if size < _LIFT_MIN_CHARS * 2:
        return None
    if isinstance(text, str):
        source: str | memoryview = text
        quote: Any = '"'
        backslash: Any = "\\"
        key: Any = '"__value__"'
    else:
        if json.detect_encoding(text) != "utf-8" or text[:3] == b"\xef\xbb\xbf":
            return None
        source = memoryview(text)
        quote, backslash, key = b'"', b"\\", b'"__value__"'
    if text.count(quote) * _LIFT_MIN_BYTES_PER_QUOTE > size:
        return None
    prefix = f"\x00runtime-job-{uuid.uuid4().hex}:"
    pieces: list[str] = []
    blobs: list[_Blob] = []
    copied = 0
    previous = (0, 0)  # span of the last string literal, quotes included
    position = 0
    while (start := text.find(quote, position)) >= 0:
        end = text.find(quote, start + 1)
        while end >= 0 and _escaped(text, end, backslash):
            end = text.find(quote, end + 1)
        if end < 0:
            return None  # unterminated string: let json report it
        if (
            end - start - 1 >= _LIFT_MIN_CHARS
            and text[previous[0] : previous[1]] == key
            and _is_colon(text[previous[1] : start])
            and text.find(backslash, start, end) < 0
        ):
            pieces.append(_as_text(text[copied:start]))
            pieces.append(json.dumps(f"{prefix}{len(blobs)}"))
            blobs.append(_Blob(source, start + 1, end))
            copied = end + 1
        previous = (start, end + 1)
        position = end + 1
    if not blobs:
        return None
    pieces.append(_as_text(text[copied:]))
    return "".join(pieces), _Blobs(prefix, blobs)


def _escaped(text: str | bytes, index: int, backslash: Any) -> bool:
    """Whether the character at ``index`` follows an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1 : index - count] == backslash:
        count += 1
    return count % 2 == 1


def _is_colon(gap: str | bytes) -> bool:
    return gap.strip() in (":", b":")


def _as_text(piece: str | bytes) -> str:
    return piece if isinstance(piece, str) else piece.decode("utf-8")


_V2_READS_DATA: Final = frozenset({"BitArray", "BindingsArray", "ObservablesArray"})


def _is_packed_bits(tag: str, value: Any) -> bool:
    """A ``BitArray`` whose array is already uint8 (kept as is, so its data is not read)."""
    array = value.get("array") if tag == "BitArray" and isinstance(value, dict) else None
    return isinstance(array, np.ndarray) and array.dtype == np.uint8


class _DecodeSession:
    """State of one decode call: its limits, allow-list and worker threads."""

    def __init__(
        self,
        *,
        max_decompressed_size: int,
        settings_registry: SettingsRegistry | None,
        accelerated: bool,
        max_workers: int | None,
        qiskit_results: bool | None = None,
    ) -> None:
        self.backend = _backend(accelerated)
        self._qiskit_results = qiskit_results
        self._v2: V2Builder | None = None
        self.budget = _Budget(max_decompressed_size)
        self.registry = settings_registry or _DEFAULT_SETTINGS_REGISTRY
        if max_workers is None:
            max_workers = min(_MAX_WORKERS, os.cpu_count() or 1)
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._blobs: _Blobs | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "datetime": self._datetime,
            "complex": self._complex,
            "ndarray": self._ndarray,
            "set": self._set,
            "to_json": self._to_json,
            "settings": self._settings,
            "spmatrix": self._spmatrix,
            "QuantumCircuit": self._circuit,
            "Instruction": self._instruction,
            "Parameter": self._parameter,
            "ParameterExpression": self._parameter_expression,
            "Result": self._result,
            "NoiseModel": self._noise_model,
        }
        for tag in V2_TAGS:
            self._handlers[tag] = self._v2_value

    # -- the json hook ------------------------------------------------------------------------

    def hook(self, obj: dict[str, Any]) -> Any:
        """Called by the JSON parser for every object, innermost first."""
        if self._blobs is not None and "__value__" in obj:
            self._restore_blob(obj)
        if "__type__" in obj:
            tag = obj["__type__"]
            if "__value__" in obj and isinstance(tag, str):
                handler = self._handlers.get(tag)
                if handler is not None:
                    return handler(obj)
        if "__int_keys__" in obj:
            return _restore_int_keys(obj)
        return obj

    def parse(self, text: str | bytes, json_options: dict[str, Any] | None = None) -> Any:
        """Parse a whole document, waiting for any array still being filled.

        :func:`json.loads` calls the tag hook as each object is parsed, so each array is
        decoded (and its base64 text freed) while the rest of the document is still read.
        """
        try:
            lifted = None if json_options else _lift_blobs(text)
            if lifted is None:
                result = json.loads(text, object_hook=self.hook, **(json_options or {}))
            else:
                skeleton, self._blobs = lifted
                try:
                    result = json.loads(skeleton, object_hook=self.hook)
                except json.JSONDecodeError:
                    # Report the error against the caller's document, not our skeleton.
                    self._blobs = None
                    result = json.loads(text, object_hook=self.hook)
            self._wait_all()
            return result
        except RecursionError as err:
            raise ResultDecodingError(
                "The payload is nested too deeply to decode", excerpt=_excerpt(text)
            ) from err
        finally:
            self.close()

    def _restore_blob(self, obj: dict[str, Any]) -> None:
        """Put a lifted ``__value__`` back: as a zero-copy view for arrays, else as text."""
        assert self._blobs is not None
        blob = self._blobs.take(obj["__value__"])
        if blob is not None:
            obj["__value__"] = blob if obj.get("__type__") == "ndarray" else blob.text()

    def rebuild(self, value: Any) -> Any:
        """Apply the tag rules to an already parsed JSON value (innermost first)."""
        try:
            return self._rebuild(value)
        except RecursionError as err:
            raise ResultDecodingError("The value is nested too deeply to decode") from err
        finally:
            self.close()

    def _rebuild(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.hook({key: self._rebuild(item) for key, item in value.items()})
        if isinstance(value, list):
            return [self._rebuild(item) for item in value]
        return value

    def close(self) -> None:
        """Stop the worker threads (waiting for running work, dropping queued work)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def _stream(self, job: _NpyJob) -> None:
        """Decode ``job`` on a worker thread while this one parses on.

        Each worker decodes its array's base64 a chunk at a time and inflates it straight
        into the array (zlib drops the GIL): at most ``max_workers`` arrays are in flight,
        and each holds one chunk beyond its array.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="runtime-job-decode"
            )
        while len(self._pending) >= self._max_workers:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(job.fill))

    def _wait_all(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    # -- tag handlers -------------------------------------------------------------------------

    def _datetime(self, obj: dict[str, Any]) -> Any:
        value = obj["__value__"]
        try:
            return datetime.datetime.fromisoformat(value)
        except (TypeError, ValueError) as err:
            raise ResultDecodingError(f"Invalid datetime value {value!r}") from err

    def _complex(self, obj: dict[str, Any]) -> Any:
        value = obj["__value__"]
        try:
            real, imag = value
            return complex(real, imag)
        except (TypeError, ValueError) as err:
            raise ResultDecodingError(f"Invalid complex value {value!r}") from err

    def _ndarray(self, obj: dict[str, Any]) -> Any:
        value = obj["__value__"]
        if is_extrapolator_name(value):
            return value
        if not isinstance(value, (str, _Blob)):
            return _object_array(value, obj.get("__shape__"))
        try:
            job = _NpyJob(self.backend, value, self.budget)
        except _NpyFallback:
            return _load_npy_fallback(self.backend, value, self.budget)
        if self._max_workers > 1 and len(value) >= _PARALLEL_MIN_CHARS:
            self._stream(job)
        else:
            job.fill()
        return job.array

    def _v2_value(self, obj: dict[str, Any]) -> Any:
        """A V2 primitive payload: qiskit's class or the plain structure (:mod:`runtime_job.v2`)."""
        if self._v2 is None:
            self._v2 = V2Builder(self._qiskit_results)
        tag, value = obj["__type__"], obj["__value__"]
        if tag in _V2_READS_DATA and not _is_packed_bits(tag, value):
            # Building these reads array data: let arrays still inflating on workers finish.
            self._wait_all()
        return self._v2.build(tag, value)

    def _set(self, obj: dict[str, Any]) -> Any:
        value = obj["__value__"]
        try:
            return set(value)
        except TypeError:
            try:
                return {_as_hashable(item) for item in value}
            except TypeError as err:
                raise ResultDecodingError("Invalid set value: unhashable items") from err

    def _to_json(self, obj: dict[str, Any]) -> Any:
        return obj["__value__"]

    def _settings(self, obj: dict[str, Any]) -> Any:
        module, name = obj.get("__module__"), obj.get("__class__")
        cls = self.registry.lookup(module, name) or _quantum_info_class(module, name)
        if cls is None:
            warnings.warn(
                f"Not rebuilding the settings payload of {module}.{name}: the class is not "
                "registered (see runtime_job.codec.register_settings_class); returning the "
                "plain dict",
                UserWarning,
                stacklevel=2,
            )
            return obj
        value = obj["__value__"]
        try:
            return cls(**value)
        except Exception as err:
            raise ResultDecodingError(
                f"Could not rebuild {module}.{name} from its settings: {err}"
            ) from err

    def _spmatrix(self, obj: dict[str, Any]) -> Any:
        import zipfile

        sparse = _import_optional("scipy.sparse", "spmatrix", "pip install scipy")
        raw = _b64decode(self.backend, obj["__value__"], "spmatrix")
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                declared = sum(info.file_size for info in archive.infolist())
            self.budget.reserve(declared, "the spmatrix payload")
            return sparse.load_npz(io.BytesIO(raw))
        except (zipfile.BadZipFile, ValueError, KeyError, OSError) as err:
            raise ResultDecodingError(f"Invalid spmatrix payload ({err})") from err

    def _load_qpy(self, raw: bytes, tag: str) -> Any:
        qpy = _qiskit("qiskit.qpy", tag)
        try:
            programs = qpy.load(io.BytesIO(raw), metadata_deserializer=self._metadata_decoder())
            return programs[0]
        except Exception as err:
            raise ResultDecodingError(f"Invalid QPY data in {tag} payload ({err})") from err

    def _metadata_decoder(self) -> type[json.JSONDecoder]:
        """A :class:`RuntimeDecoder` with this call's allow-list, for circuit metadata."""
        registry, limit = self.registry, self.budget.limit

        class _CircuitMetadataDecoder(RuntimeDecoder):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(
                    *args, max_decompressed_size=limit, settings_registry=registry, **kwargs
                )

        return _CircuitMetadataDecoder

    def _compressed_qpy(self, obj: dict[str, Any], tag: str) -> Any:
        _qiskit("qiskit.qpy", tag)
        compressed = _b64decode(self.backend, obj["__value__"], tag)
        return self._load_qpy(_inflate(self.backend, compressed, self.budget, tag), tag)

    def _circuit(self, obj: dict[str, Any]) -> Any:
        return self._compressed_qpy(obj, "QuantumCircuit")

    def _instruction(self, obj: dict[str, Any]) -> Any:
        circuit = self._compressed_qpy(obj, "Instruction")
        return circuit.data[0].operation

    def _parameter(self, obj: dict[str, Any]) -> Any:
        circuit_module = _qiskit("qiskit.circuit", "Parameter")
        raw = _b64decode(self.backend, obj["__value__"], "Parameter")
        if raw.startswith(_QPY_MAGIC):
            return self._load_qpy(raw, "Parameter").data[0].operation.params[0]
        size = _PARAMETER_RECORD.size
        if len(raw) < size:
            raise ResultDecodingError("Truncated Parameter payload")
        name_size, uuid_bytes = _PARAMETER_RECORD.unpack_from(raw)
        if len(raw) != size + name_size:
            raise ResultDecodingError("Parameter payload length does not match its name size")
        try:
            name = raw[size:].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ResultDecodingError("Parameter payload name is not UTF-8") from err
        return _make_parameter(circuit_module.Parameter, name, uuid.UUID(bytes=uuid_bytes))

    def _parameter_expression(self, obj: dict[str, Any]) -> Any:
        _qiskit("qiskit.circuit", "ParameterExpression")
        raw = _b64decode(self.backend, obj["__value__"], "ParameterExpression")
        if raw.startswith(_QPY_MAGIC):
            return self._load_qpy(raw, "ParameterExpression").data[0].operation.params[0]
        # A reference payload: the QPY (version 3 to 12) expression record, readable only
        # through qiskit's private reader.
        reader = getattr(
            _optional_module("qiskit.qpy.binary_io.value"), "_read_parameter_expression_v3", None
        )
        if reader is None:
            raise ResultDecodingError(
                "This qiskit version cannot read the reference's ParameterExpression records"
            )
        try:
            return reader(io.BytesIO(raw), vectors={}, use_symengine=False)
        except Exception as err:
            raise ResultDecodingError(f"Invalid ParameterExpression payload ({err})") from err

    def _result(self, obj: dict[str, Any]) -> Any:
        result_module = _qiskit("qiskit.result", "Result")
        try:
            return result_module.Result.from_dict(obj["__value__"])
        except Exception as err:
            raise ResultDecodingError(f"Invalid Result payload ({err})") from err

    def _noise_model(self, obj: dict[str, Any]) -> Any:
        value = obj["__value__"]
        aer_noise = _optional_module("qiskit_aer.noise")
        if aer_noise is None:
            warnings.warn("Qiskit Aer is needed to restore noise model.", UserWarning, stacklevel=2)
            return value
        return aer_noise.NoiseModel.from_dict(value)


class RuntimeDecoder(json.JSONDecoder):
    """A :class:`json.JSONDecoder` that rebuilds the values :class:`RuntimeEncoder` tags.

    ``json.loads(text, cls=RuntimeDecoder)`` works as with the reference. Unknown tags, and
    tagged dicts without ``__value__``, come back as plain dicts; ``settings`` payloads are
    rebuilt only for registered classes; dicts flagged ``"__int_keys__"`` get their int keys
    back.

    Args:
        *args: Passed to :class:`json.JSONDecoder`.
        max_decompressed_size: Cap on all bytes one ``decode`` call may decompress.
        settings_registry: The allow-list for ``settings`` payloads (default: the process-wide
            one, see :func:`register_settings_class`).
        accelerated: Use the optional accelerator packages when installed.
        qiskit_results: V2 primitive results as qiskit's classes (``True``), as plain data
            (``False``), or as qiskit's classes when qiskit imports (``None``); see
            :mod:`runtime_job.v2`.
        **kwargs: Passed to :class:`json.JSONDecoder` and used by :meth:`decode`
            (``object_hook`` is ours: one given here is ignored).
    """

    def __init__(
        self,
        *args: Any,
        max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
        settings_registry: SettingsRegistry | None = None,
        accelerated: bool = True,
        qiskit_results: bool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("object_hook", None)
        super().__init__(*args, object_hook=self.object_hook, **kwargs)
        self._json_options = {key: value for key, value in kwargs.items() if value is not None}
        self._options: dict[str, Any] = {
            "max_decompressed_size": max_decompressed_size,
            "settings_registry": settings_registry,
            "accelerated": accelerated,
            "qiskit_results": qiskit_results,
        }
        self._session = _DecodeSession(max_workers=1, **self._options)

    def object_hook(self, obj: dict[str, Any]) -> Any:
        """Rebuild one decoded JSON object (called by the parser, innermost first).

        Args:
            obj: A decoded JSON object.

        Returns:
            The rebuilt value, or ``obj`` itself when it carries no tag.

        Raises:
            ResultDecodingError: A tagged value is malformed or refused.
        """
        return self._session.hook(obj)

    def decode(self, s: str, _w: Any = None) -> Any:
        """Decode a whole JSON document.

        Args:
            s: The JSON text.
            _w: Unused; kept for :class:`json.JSONDecoder` compatibility.

        Returns:
            The decoded value.

        Raises:
            json.JSONDecodeError: ``s`` is not JSON.
            ResultDecodingError: A tagged value is malformed or refused, or the document is
                nested too deeply.
        """
        return _DecodeSession(max_workers=None, **self._options).parse(s, self._json_options)


def loads(
    text: str | bytes,
    *,
    max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    settings_registry: SettingsRegistry | None = None,
    accelerated: bool = True,
    max_workers: int | None = None,
    qiskit_results: bool | None = None,
) -> Any:
    """Parse JSON text and rebuild tagged values (the library's fast path).

    Large arrays are decompressed straight into their final memory, on up to
    ``max_workers`` threads that live only for this call.

    Args:
        text: The JSON document, as text or UTF-8 bytes.
        max_decompressed_size: Cap on all bytes this call may decompress; a payload that would
            exceed it raises before the memory is allocated.
        settings_registry: The allow-list for ``settings`` payloads (default: the process-wide
            one).
        accelerated: Use the optional accelerator packages (isal, pybase64) when
            installed.
        max_workers: Threads used to decompress large arrays (default: up to 4, one per
            CPU); ``1`` decodes everything on the calling thread.
        qiskit_results: V2 primitive results (``PrimitiveResult``, ``BitArray``, ...) as
            qiskit's classes (``True``), as plain data (``False``), or as qiskit's classes
            when qiskit imports (``None``); see :mod:`runtime_job.v2`.

    Returns:
        The decoded value.

    Raises:
        TypeError: ``text`` is neither text nor bytes.
        json.JSONDecodeError: ``text`` is not JSON.
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8 (or UTF-16/32) text.
        ResultDecodingError: A tagged value is malformed or refused, decompression would
            exceed the cap, or the document is nested too deeply.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(f"The JSON payload must be str or bytes, not {type(text).__name__}")
    if len(text) <= _PLAIN_MAX_CHARS and _is_plain(text):
        try:
            if isinstance(text, str) and text[:1] == "{":
                # The C scanner alone (json.loads adds three Python calls and two regex
                # matches); anything else, such as surrounding whitespace, goes to json.loads.
                try:
                    value, end = _scan_once(text, 0)
                except StopIteration:
                    pass
                else:
                    if end == len(text):
                        return value
            return json.loads(text)
        except RecursionError as err:
            raise ResultDecodingError(
                "The payload is nested too deeply to decode", excerpt=_excerpt(text)
            ) from err
    session = _DecodeSession(
        max_decompressed_size=max_decompressed_size,
        settings_registry=settings_registry,
        accelerated=accelerated,
        max_workers=max_workers,
        qiskit_results=qiskit_results,
    )
    return session.parse(text)


_PLAIN_MAX_CHARS = 64 * 1024
"""Documents up to this size are checked for tags before a decode session is set up."""
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The scanner ``json.loads`` uses (no hooks): parses one value at an index."""


def _is_plain(text: str | bytes | bytearray) -> bool:
    """Whether ``text`` cannot hold a tag.

    Every tag key has ``__`` (``__type__``, ``__value__``, ``__int_keys__``), or spells it
    with a ``\\u`` escape.
    """
    if isinstance(text, str):
        return "__" not in text and "\\u" not in text
    return b"__" not in text and b"\\u" not in text


def decode_value(
    value: Any,
    *,
    max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
    settings_registry: SettingsRegistry | None = None,
    accelerated: bool = True,
    qiskit_results: bool | None = None,
) -> Any:
    """Rebuild tagged values inside data that was already parsed from JSON.

    For payloads that arrive inside a larger JSON document (a job's ``params``, say), this
    applies the same rules as :func:`loads` without serialising the data again. The input is
    not modified.

    Args:
        value: Parsed JSON data (dicts, lists, strings, numbers, booleans, ``None``).
        max_decompressed_size: Cap on all bytes this call may decompress.
        settings_registry: The allow-list for ``settings`` payloads.
        accelerated: Use the optional accelerator packages when installed.
        qiskit_results: As for :func:`loads`.

    Returns:
        A new value with tagged dicts rebuilt.

    Raises:
        ResultDecodingError: A tagged value is malformed or refused.
    """
    session = _DecodeSession(
        max_decompressed_size=max_decompressed_size,
        settings_registry=settings_registry,
        accelerated=accelerated,
        max_workers=1,
        qiskit_results=qiskit_results,
    )
    return session.rebuild(value)


__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "PLATFORM_QPY_VERSION",
    "QISKIT_EXTRA_HINT",
    "RuntimeDecoder",
    "RuntimeEncoder",
    "SettingsRegistry",
    "accelerators",
    "decode_value",
    "default_settings_registry",
    "dumps",
    "loads",
    "register_settings_class",
    "to_base64_string",
    "unregister_settings_class",
]
