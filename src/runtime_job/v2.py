"""V2 primitive results (``platform.md`` section 7): qiskit's classes, or plain structures.

The platform's ``sampler`` and ``estimator`` return type-tagged trees
(``PrimitiveResult`` > ``SamplerPubResult``/``PubResult`` > ``DataBin`` > ``BitArray`` /
``ndarray``). :mod:`runtime_job.codec` rebuilds them with :class:`V2Builder`:

- **with qiskit** (the default when it is importable): ``qiskit.primitives``'
  ``PrimitiveResult``, ``SamplerPubResult``, ``PubResult``, ``DataBin``, ``BitArray``,
  ``BindingsArray`` and ``ObservablesArray``;
- **without qiskit** (or ``qiskit_results=False``), plain data:

  ==========================  ================================================================
  tag                         plain value
  ==========================  ================================================================
  ``PrimitiveResult``         ``{"pub_results": [...], "metadata": {...}}``
  ``SamplerPubResult``,       ``{"data": <DataBin>, "metadata": {...}}``
  ``PubResult``,
  ``EstimatorPubResult``
  ``DataBin``                 ``{field name: value}`` in the server's field order (each field's
                              leading dimensions are the pub shape)
  ``BitArray``                ``{"array": uint8 ndarray (*shape, shots, ceil(num_bits/8)),
                              "num_bits": int}``; :func:`bitarray_counts` gives bit-string
                              counts like ``BitArray.get_counts()``
  ``BindingsArray``           ``{"shape": tuple, "data": {(parameter names...): ndarray}}``
  ``ObservablesArray``        the value as sent (nested lists of ``{"pauli": coeff}`` dicts)
  ==========================  ================================================================

Execution spans are not qiskit classes (they belong to the platform's client), so they always
decode into :class:`ExecutionSpans` of :class:`ExecutionSpan`, with or without qiskit.
``NoiseLearnerResult``, ``_json`` and ``PauliLindbladMap`` payloads come back as their plain
``__value__``.

Example (without qiskit)::

    result = job.result()
    counts = bitarray_counts(result["pub_results"][0]["data"]["meas"])  # {"00": 510, "11": 514}
"""

from __future__ import annotations

import datetime
import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final, overload

import numpy as np

from .exceptions import ResultDecodingError

V2_TAGS: Final = frozenset(
    {
        "PrimitiveResult",
        "SamplerPubResult",
        "PubResult",
        "EstimatorPubResult",
        "DataBin",
        "BitArray",
        "BindingsArray",
        "ObservablesArray",
        "ExecutionSpan",
        "SliceSpan",
        "DoubleSliceSpan",
        "TwirledSliceSpan",
        "TwirledSliceSpanV2",
        "ExecutionSpans",
        "ExecutionSpanCollection",
        "NoiseLearnerResult",
        "_json",
        "PauliLindbladMap",
    }
)
"""The V2 type tags the codec hands to :class:`V2Builder`."""

_SPAN_TAGS: Final = frozenset(
    {"ExecutionSpan", "SliceSpan", "DoubleSliceSpan", "TwirledSliceSpan", "TwirledSliceSpanV2"}
)
_EXTRAPOLATORS: Final = re.compile(
    r"(linear|exponential|double_exponential|fallback|polynomial_degree_\d+)\Z"
)


def is_extrapolator_name(value: object) -> bool:
    """Whether ``value`` is one of the extrapolator names an ``ndarray`` tag may carry as is."""
    return isinstance(value, str) and _EXTRAPOLATORS.match(value) is not None


# ------------------------------------------------------------------------------ spans


@dataclass(frozen=True)
class ExecutionSpan:
    """When a slice of the data of some pubs was taken on the device.

    Attributes:
        kind: The tag it came as (``SliceSpan``, ``DoubleSliceSpan``, ``TwirledSliceSpan``,
            ``TwirledSliceSpanV2`` or ``ExecutionSpan``).
        start: When the span started.
        stop: When it stopped.
        data_slices: Pub index -> the slice description as sent, lists turned into tuples
            (for ``DoubleSliceSpan``: ``(shape, start1, stop1, start2, stop2)``).
    """

    kind: str
    start: datetime.datetime
    stop: datetime.datetime
    data_slices: Mapping[int, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds from ``start`` to ``stop``."""
        return (self.stop - self.start).total_seconds()

    @property
    def pub_idxs(self) -> list[int]:
        """The indices of the pubs this span holds data of, ascending."""
        return sorted(self.data_slices)

    def contains_pub(self, pub_idx: int | Sequence[int]) -> bool:
        """Whether this span holds data of ``pub_idx`` (or of any of several)."""
        wanted = [pub_idx] if isinstance(pub_idx, int) else list(pub_idx)
        return any(index in self.data_slices for index in wanted)


class ExecutionSpans(Sequence[ExecutionSpan]):
    """The execution spans of a result, in the order sent.

    Args:
        spans: The spans.
    """

    def __init__(self, spans: Sequence[ExecutionSpan]) -> None:
        self._spans = tuple(spans)

    @overload
    def __getitem__(self, index: int) -> ExecutionSpan: ...

    @overload
    def __getitem__(self, index: slice) -> ExecutionSpans: ...

    def __getitem__(self, index: int | slice) -> ExecutionSpan | ExecutionSpans:
        if isinstance(index, slice):
            return ExecutionSpans(self._spans[index])
        return self._spans[index]

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[ExecutionSpan]:
        return iter(self._spans)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExecutionSpans):
            return self._spans == other._spans
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def start(self) -> datetime.datetime:
        """The earliest start (``ValueError`` when there are no spans)."""
        return min(span.start for span in self._spans)

    @property
    def stop(self) -> datetime.datetime:
        """The latest stop (``ValueError`` when there are no spans)."""
        return max(span.stop for span in self._spans)

    @property
    def duration(self) -> float:
        """Seconds from the earliest start to the latest stop."""
        return (self.stop - self.start).total_seconds()

    def filter_by_pub(self, pub_idx: int | Sequence[int]) -> ExecutionSpans:
        """The spans holding data of ``pub_idx`` (or of any of several)."""
        return ExecutionSpans([span for span in self._spans if span.contains_pub(pub_idx)])

    def __repr__(self) -> str:
        return f"ExecutionSpans({list(self._spans)!r})"


# ------------------------------------------------------------------------------ counts


def bitarray_counts(bits: Any, loc: int | tuple[int, ...] | None = None) -> dict[str, int]:
    """Bit-string counts of a decoded ``BitArray``, plain or qiskit's.

    Like ``BitArray.get_counts(loc)``: the outcome of each shot as a string of ``num_bits``
    bits (the highest bit first, so ``0b11`` is ``"11"``), counted over every shot (of every
    pub element, or only the element at ``loc``).

    Args:
        bits: A plain ``{"array": ..., "num_bits": ...}`` dict or a qiskit ``BitArray``.
        loc: An index into the pub shape, or ``None`` for all of it.

    Returns:
        Outcome -> number of shots, sorted by outcome.

    Raises:
        TypeError: ``bits`` is not a BitArray in either form.
    """
    if isinstance(bits, Mapping):
        array, num_bits = bits.get("array"), bits.get("num_bits")
    else:
        array, num_bits = getattr(bits, "array", None), getattr(bits, "num_bits", None)
    if array is None or not isinstance(num_bits, int | np.integer):
        raise TypeError(f"Not a BitArray: {type(bits).__name__}")
    packed = np.asarray(array, dtype=np.uint8)
    if loc is not None:
        packed = packed[loc]
    width = packed.shape[-1] if packed.ndim else 0
    rows = packed.reshape(-1, width)
    if width == 0:
        return {"": rows.shape[0]} if rows.shape[0] else {}
    mask = (1 << int(num_bits)) - 1
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    out: dict[str, int] = {}
    for row, count in zip(unique, counts, strict=True):
        key = format(int.from_bytes(row.tobytes(), "big") & mask, f"0{int(num_bits)}b")
        out[key] = out.get(key, 0) + int(count)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------ the builder


def qiskit_containers() -> ModuleType | None:
    """``qiskit.primitives.containers``, or ``None`` when qiskit cannot be imported."""
    try:
        return importlib.import_module("qiskit.primitives.containers")
    except ImportError:
        return None


class V2Builder:
    """Rebuilds V2 payloads, given each tag's ``__value__`` with its inner tags decoded.

    Args:
        qiskit_results: ``True``: qiskit's classes (``ResultDecodingError`` without qiskit);
            ``False``: plain structures; ``None``: qiskit's classes when qiskit imports.
    """

    def __init__(self, qiskit_results: bool | None = None) -> None:
        containers = None if qiskit_results is False else qiskit_containers()
        if qiskit_results and containers is None:
            raise ResultDecodingError(
                "qiskit_results=True needs qiskit: pip install 'runtime-job[qiskit]'"
            )
        self._qiskit = containers

    @property
    def uses_qiskit(self) -> bool:
        """Whether results are rebuilt into qiskit's classes."""
        return self._qiskit is not None

    def build(self, tag: str, value: Any) -> Any:
        """The value of one tagged object (its children already decoded)."""
        if tag in _SPAN_TAGS:
            return _span(tag, value)
        handler = self._handlers().get(tag)
        if handler is None:
            return value
        try:
            return handler(value)
        except ResultDecodingError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise ResultDecodingError(f"Invalid {tag} payload ({err})") from err

    def _handlers(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "PrimitiveResult": self._primitive_result,
            "SamplerPubResult": self._sampler_pub_result,
            "PubResult": self._pub_result,
            "EstimatorPubResult": self._pub_result,
            "DataBin": self._data_bin,
            "BitArray": self._bit_array,
            "BindingsArray": self._bindings_array,
            "ObservablesArray": self._observables_array,
            "ExecutionSpans": _spans,
            "ExecutionSpanCollection": _spans,
        }

    def _primitive_result(self, value: Any) -> Any:
        if self._qiskit is None:
            return value
        return self._qiskit.PrimitiveResult(value["pub_results"], value.get("metadata"))

    def _sampler_pub_result(self, value: Any) -> Any:
        if self._qiskit is None:
            return value
        return self._qiskit.SamplerPubResult(value["data"], value.get("metadata"))

    def _pub_result(self, value: Any) -> Any:
        if self._qiskit is None:
            return value
        return self._qiskit.PubResult(value["data"], value.get("metadata"))

    def _data_bin(self, value: Any) -> Any:
        if not isinstance(value, Mapping) or not isinstance(value.get("fields"), Mapping):
            raise ResultDecodingError("Invalid DataBin payload: no 'fields' object")
        fields = value["fields"]
        names = value.get("field_names") or list(fields)
        ordered = {name: fields[name] for name in names}
        if self._qiskit is None:
            return ordered
        return self._qiskit.DataBin(shape=tuple(value.get("shape") or ()), **ordered)

    def _bit_array(self, value: Any) -> Any:
        array = np.asarray(value["array"], dtype=np.uint8)
        num_bits = int(value["num_bits"])
        if self._qiskit is None:
            return {"array": array, "num_bits": num_bits}
        return self._qiskit.BitArray(array, num_bits)

    def _bindings_array(self, value: Any) -> Any:
        shape = tuple(value.get("shape") or ())
        data = {
            tuple(json.loads(key)): np.asarray(array)
            for key, array in (value.get("data") or {}).items()
        }
        if self._qiskit is None:
            return {"shape": shape, "data": data}
        return self._qiskit.BindingsArray(data=data or None, shape=shape)

    def _observables_array(self, value: Any) -> Any:
        if self._qiskit is None:
            return value
        return self._qiskit.ObservablesArray(value)


def _as_datetime(value: Any, what: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ResultDecodingError(f"Invalid {what} in an execution span: {value!r}")


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _span(tag: str, value: Any) -> ExecutionSpan:
    if not isinstance(value, Mapping):
        raise ResultDecodingError(f"Invalid {tag} payload: not an object")
    slices = value.get("data_slices") or {}
    try:
        data_slices = {int(key): _tuples(item) for key, item in slices.items()}
    except (AttributeError, ValueError) as err:
        raise ResultDecodingError(f"Invalid data_slices in a {tag} payload") from err
    return ExecutionSpan(
        kind=tag,
        start=_as_datetime(value.get("start"), "start"),
        stop=_as_datetime(value.get("stop"), "stop"),
        data_slices=data_slices,
    )


def _spans(value: Any) -> ExecutionSpans:
    spans = value.get("spans") if isinstance(value, Mapping) else value
    if not isinstance(spans, list) or not all(isinstance(s, ExecutionSpan) for s in spans):
        raise ResultDecodingError("Invalid ExecutionSpans payload: 'spans' is not a list of spans")
    return ExecutionSpans(spans)


__all__ = [
    "V2_TAGS",
    "ExecutionSpan",
    "ExecutionSpans",
    "V2Builder",
    "bitarray_counts",
    "is_extrapolator_name",
    "qiskit_containers",
]
