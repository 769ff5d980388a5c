"""Result decoders: how a job turns the text of a result into Python values.

A decoder is a class, passed around as a type, whose classmethod ``decode(raw)`` returns the
decoded value. :class:`ResultDecoder` parses the runtime codec's JSON and, unlike the
reference, refuses a payload that is not JSON with :class:`ResultDecodingError` (the job adds
its id); :class:`LenientResultDecoder` keeps the reference's habit of returning such a
payload unchanged. Program-specific decoders subclass one of them.

Example::

    from runtime_job.decoders import ResultDecoder, resolve_decoders

    class Doubled(ResultDecoder):
        @classmethod
        def decode(cls, raw):
            return 2 * super().decode(raw)

    interim, final = resolve_decoders([ResultDecoder, Doubled], program_id="my-program")
    assert final.decode("21") == 42
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import numpy as np

from runtime_job import codec
from runtime_job.codec import DEFAULT_MAX_DECOMPRESSED_SIZE, SettingsRegistry
from runtime_job.exceptions import ResultDecodingError

logger = logging.getLogger(__name__)

_EXCERPT_CHARS = 200


def _excerpt(raw: str | bytes | bytearray) -> str:
    """The start of a payload, as text, for error messages."""
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw[: _EXCERPT_CHARS * 4]).decode("utf-8", "replace")
    else:
        text = raw
    if len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + "..."
    return text


class ResultDecoder:
    """Decode a result with the runtime JSON codec; refuse anything that is not JSON.

    Subclasses override :meth:`decode`, usually calling ``super().decode(raw)`` first, and may
    change the class attributes below to tune the codec.

    Attributes:
        max_decompressed_size: Cap on all bytes one ``decode`` may decompress (2 GiB).
        settings_registry: The allow-list for ``settings`` payloads; ``None`` means the
            process-wide one (see :func:`runtime_job.codec.register_settings_class`).
        qiskit_results: V2 primitive results as qiskit's classes (``True``), plain data
            (``False``), or qiskit's classes when qiskit imports (``None``, the default); see
            :mod:`runtime_job.v2`.
    """

    max_decompressed_size: ClassVar[int] = DEFAULT_MAX_DECOMPRESSED_SIZE
    settings_registry: ClassVar[SettingsRegistry | None] = None
    qiskit_results: ClassVar[bool | None] = None

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode the text of a result.

        Args:
            raw: The payload, as text or UTF-8 bytes.

        Returns:
            The decoded value.

        Raises:
            ResultDecodingError: ``raw`` is not JSON, or a tagged value in it is malformed or
                refused. ``excerpt`` holds the start of the payload; the job fills in
                ``job_id``.
            TypeError: ``raw`` is neither text nor bytes.
        """
        try:
            return cls._loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultDecodingError(
                f"The result is not valid JSON ({_reason(err)})", excerpt=_excerpt(raw)
            ) from err
        except ResultDecodingError as err:
            if not err.excerpt:
                err.excerpt = _excerpt(raw)
            raise

    @classmethod
    def _loads(cls, raw: str | bytes) -> Any:
        """Parse ``raw`` with the codec, using this class's settings."""
        if not isinstance(raw, (str, bytes, bytearray)):
            raise TypeError(f"{cls.__name__}.decode expects str or bytes, not {type(raw).__name__}")
        return codec.loads(
            raw,
            max_decompressed_size=cls.max_decompressed_size,
            settings_registry=cls.settings_registry,
            qiskit_results=cls.qiskit_results,
        )


def _reason(err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno} column {err.colno}"
    return str(err)


class LenientResultDecoder(ResultDecoder):
    """The reference's behaviour: a payload that is not JSON is returned unchanged.

    Choose it explicitly (``result(decoder=LenientResultDecoder)``, or as a job's decoder)
    when a program publishes plain text. Malformed tagged values still raise.
    """

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode the text of a result, or return it as is when it is not JSON.

        Args:
            raw: The payload, as text or UTF-8 bytes.

        Returns:
            The decoded value, or ``raw`` itself (same type) when it is not JSON.

        Raises:
            ResultDecodingError: A tagged value in the JSON is malformed or refused.
            TypeError: ``raw`` is neither text nor bytes.
        """
        try:
            return cls._loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw
        except ResultDecodingError as err:
            if not err.excerpt:
                err.excerpt = _excerpt(raw)
            raise


def _primitive_result_classes(*names: str) -> tuple[Any, ...] | None:
    """The qiskit V1 primitive result classes, or ``None`` when this qiskit lacks them."""
    try:
        primitives = importlib.import_module("qiskit.primitives")
        result_module = importlib.import_module("qiskit.result")
    except ImportError:
        return None
    found = []
    for name in names:
        cls = getattr(primitives, name, None) or getattr(result_module, name, None)
        if cls is None:
            return None
        found.append(cls)
    return tuple(found)


def _is_v2_result(data: Any) -> bool:
    """Whether ``data`` is a decoded V2 ``PrimitiveResult`` (qiskit's, or its plain dict).

    The platform's ``sampler`` and ``estimator`` return V2 results (``runtime_job.v2``); the
    V1 decoders pass them through unchanged.
    """
    if isinstance(data, dict):
        return "pub_results" in data
    return type(data).__name__ == "PrimitiveResult"


class SamplerResultDecoder(ResultDecoder):
    """Final results of the ``sampler`` program, as qiskit's V1 ``SamplerResult``.

    Each quasi-distribution becomes a ``QuasiDistribution`` with ``shots`` from its metadata
    (infinite when absent) and ``stddev_upper_bound = sqrt(overhead / shots)``, where
    ``overhead`` is the metadata's ``readout_mitigation_overhead`` (default 1.0). When qiskit
    lacks these classes the decoded dict is returned unchanged.
    """

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode a sampler result.

        Args:
            raw: The payload.

        Returns:
            A ``SamplerResult``, or the decoded dict without qiskit's V1 classes.

        Raises:
            ResultDecodingError: The payload is not JSON or lacks ``quasi_dists`` and
                ``metadata``.
        """
        data = super().decode(raw)
        if _is_v2_result(data):
            return data
        classes = _primitive_result_classes("SamplerResult", "QuasiDistribution")
        if classes is None:
            logger.debug("qiskit's SamplerResult is not available; returning the plain dict")
            return data
        sampler_result, quasi_distribution = classes
        try:
            quasi_dists = []
            for quasi, meta in zip(data["quasi_dists"], data["metadata"], strict=True):
                shots = meta.get("shots", math.inf)
                overhead = meta.get("readout_mitigation_overhead", 1.0)
                quasi_dists.append(
                    quasi_distribution(
                        quasi, shots=shots, stddev_upper_bound=math.sqrt(overhead / shots)
                    )
                )
            return sampler_result(quasi_dists=quasi_dists, metadata=data["metadata"])
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
            raise ResultDecodingError(
                f"The result is not a sampler result ({type(err).__name__}: {err})",
                excerpt=_excerpt(raw),
            ) from err


class EstimatorResultDecoder(ResultDecoder):
    """Final results of the ``estimator`` program, as qiskit's V1 ``EstimatorResult``.

    When qiskit lacks that class the decoded dict is returned unchanged.
    """

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode an estimator result.

        Args:
            raw: The payload.

        Returns:
            An ``EstimatorResult`` (``values`` as a numpy array), or the decoded dict without
            qiskit's V1 classes.

        Raises:
            ResultDecodingError: The payload is not JSON or lacks ``values`` and ``metadata``.
        """
        data = super().decode(raw)
        if _is_v2_result(data):
            return data
        classes = _primitive_result_classes("EstimatorResult")
        if classes is None:
            logger.debug("qiskit's EstimatorResult is not available; returning the plain dict")
            return data
        (estimator_result,) = classes
        try:
            return estimator_result(values=np.asarray(data["values"]), metadata=data["metadata"])
        except (KeyError, TypeError, ValueError) as err:
            raise ResultDecodingError(
                f"The result is not an estimator result ({type(err).__name__}: {err})",
                excerpt=_excerpt(raw),
            ) from err


@functools.lru_cache(maxsize=1)
def _runner_result_class() -> Any:
    """qiskit's ``Result`` with ``get_quasiprobabilities``, or ``None`` without qiskit."""
    try:
        result_module = importlib.import_module("qiskit.result")
    except ImportError:
        return None
    base, quasi_distribution = result_module.Result, result_module.QuasiDistribution
    qiskit_error = importlib.import_module("qiskit.exceptions").QiskitError

    def get_quasiprobabilities(self: Any, experiment: Any = None) -> Any:
        """The quasi-probabilities of one experiment (by index) or of all of them.

        Returns one ``QuasiDistribution`` when there is one, else a list; raises qiskit's
        ``QiskitError`` for an experiment without them (as the reference does).
        """
        keys = range(len(self.results)) if experiment is None else [experiment]
        found = []
        for key in keys:
            data = self.data(key)
            if "quasiprobabilities" not in data:
                raise qiskit_error(f"No quasi-probability distribution for experiment {key!r}")
            result = self.results[key]
            width = len(getattr(result.header, "final_measurement_mapping", []) or [])
            quasi = {
                format(int(hex_key, 16), "b").zfill(width): value
                for hex_key, value in data["quasiprobabilities"].items()
            }
            found.append(quasi_distribution(quasi, shots=result.shots))
        return found[0] if len(found) == 1 else found

    return type(
        "RunnerResult",
        (base,),
        {
            "__module__": __name__,
            "__doc__": "A qiskit Result of the circuit-runner program.",
            "get_quasiprobabilities": get_quasiprobabilities,
        },
    )


class RunnerResult(ResultDecoder):
    """Results of the ``circuit-runner`` program, as a qiskit ``Result``.

    The decoded value is an instance of a subclass of ``qiskit.result.Result`` that also has
    ``get_quasiprobabilities(experiment=None)``, as the reference's ``RunnerResult``. Unlike
    the reference (plain ``json``), the payload is read with the runtime codec. Without
    qiskit the decoded dict is returned unchanged.
    """

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode a circuit-runner result.

        Args:
            raw: The payload.

        Returns:
            A qiskit ``Result`` (with ``get_quasiprobabilities``), or the decoded dict
            without qiskit.

        Raises:
            ResultDecodingError: The payload is not JSON or not a ``Result`` dict.
        """
        data = super().decode(raw)
        result_class = _runner_result_class()
        if result_class is None:
            logger.debug("qiskit's Result is not available; returning the plain dict")
            return data
        if isinstance(data, result_class):
            return data
        try:
            return result_class.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ResultDecodingError(
                f"The result is not a circuit-runner result ({type(err).__name__}: {err})",
                excerpt=_excerpt(raw),
            ) from err


DecoderSpec: TypeAlias = "type[ResultDecoder] | tuple[type[ResultDecoder], type[ResultDecoder]]"
"""A decoder class, or an ``(interim, final)`` pair of them."""


def _default_decoders() -> Mapping[str, DecoderSpec]:
    if importlib.util.find_spec("qiskit") is None:
        return MappingProxyType({})
    return MappingProxyType(
        {
            "sampler": (ResultDecoder, SamplerResultDecoder),
            "estimator": (ResultDecoder, EstimatorResultDecoder),
            "circuit-runner": RunnerResult,
            "qasm3-runner": RunnerResult,
        }
    )


DEFAULT_DECODERS: Mapping[str, DecoderSpec] = _default_decoders()
"""Decoders per program id, used when a job is given none (read-only).

With qiskit installed: ``sampler`` and ``estimator`` map to ``(ResultDecoder, final)`` pairs,
so interim results stay plain and the final result becomes a ``SamplerResult`` or
``EstimatorResult``; ``circuit-runner`` and ``qasm3-runner`` map to :class:`RunnerResult`.
Without qiskit it is empty. qiskit is not imported to build it.
"""


def _has_decode_classmethod(candidate: type) -> bool:
    """Whether ``candidate`` defines ``decode`` as a classmethod or staticmethod."""
    try:
        attribute = inspect.getattr_static(candidate, "decode")
    except AttributeError:
        return False
    return isinstance(attribute, (classmethod, staticmethod))


@functools.lru_cache(maxsize=64)
def _adapter(foreign: Any) -> type[ResultDecoder]:
    """A :class:`ResultDecoder` that hands ``foreign.decode`` the text of a result.

    Foreign decoders (the reference's, or any class with a ``decode`` classmethod) were
    written for text: the payload is given to them as ``str``, never as bytes. Whatever they
    return or raise is passed on unchanged. ``__wrapped__`` is the foreign class.
    """

    def decode(cls: type[ResultDecoder], raw: str | bytes) -> Any:
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as err:
                raise ResultDecodingError(
                    f"The result is not UTF-8 text ({err})", excerpt=_excerpt(raw)
                ) from err
        return foreign.decode(raw)

    namespace = {
        "decode": classmethod(decode),
        "__wrapped__": foreign,
        "__doc__": f"{foreign.__module__}.{foreign.__qualname__}, accepted by duck type.",
        "__module__": foreign.__module__,
        "__qualname__": foreign.__qualname__,
    }
    return type(foreign.__name__, (ResultDecoder,), namespace)


def _check_decoder(candidate: object) -> type[ResultDecoder]:
    if isinstance(candidate, type):
        if issubclass(candidate, ResultDecoder):
            return candidate
        if _has_decode_classmethod(candidate):
            foreign: Any = candidate
            return _adapter(foreign)
    raise TypeError(
        f"A result decoder must be a ResultDecoder subclass or another class with a "
        f"decode classmethod (the class itself, not an instance), not {candidate!r}"
    )


def resolve_decoders(
    result_decoder: type[Any] | Sequence[type[Any]] | None,
    program_id: str | None,
) -> tuple[type[ResultDecoder], type[ResultDecoder]]:
    """Choose a job's interim and final decoders as the reference does.

    The explicit ``result_decoder`` wins; otherwise ``DEFAULT_DECODERS[program_id]``;
    otherwise :class:`ResultDecoder`. A single class serves both roles; a two-item sequence
    (list or tuple) is ``(interim, final)``.

    Decoders are accepted by duck type, as the reference's primitives need: a
    :class:`ResultDecoder` subclass is used as is; any other class with a ``decode``
    classmethod (the reference's ``SamplerResultDecoder``, ``RunnerResult``, ...) is wrapped
    in a :class:`ResultDecoder` that gives it the payload as text.

    Args:
        result_decoder: A decoder class, an ``(interim, final)`` pair, or ``None``.
        program_id: The job's program, for the default.

    Returns:
        ``(interim_decoder, final_decoder)``.

    Raises:
        ValueError: A sequence that does not hold exactly two decoders.
        TypeError: Something that is not a class with a ``decode`` classmethod.
    """
    if result_decoder is None:
        return _default_pair(program_id or "")
    return _pair(result_decoder)


@functools.lru_cache(maxsize=256)
def _default_pair(program_id: str) -> tuple[type[ResultDecoder], type[ResultDecoder]]:
    # Listing thousands of jobs builds as many jobs: their default is looked up once.
    return _pair(DEFAULT_DECODERS.get(program_id, ResultDecoder))


def _pair(spec: object) -> tuple[type[ResultDecoder], type[ResultDecoder]]:
    if isinstance(spec, type):
        decoder = _check_decoder(spec)
        return decoder, decoder
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        if len(spec) != 2:
            raise ValueError(
                "result_decoder must be a ResultDecoder subclass or an (interim, final) pair "
                f"of them; got a sequence of {len(spec)}"
            )
        return _check_decoder(spec[0]), _check_decoder(spec[1])
    return _check_decoder(spec), _check_decoder(spec)


__all__ = [
    "DEFAULT_DECODERS",
    "DecoderSpec",
    "EstimatorResultDecoder",
    "LenientResultDecoder",
    "ResultDecoder",
    "RunnerResult",
    "SamplerResultDecoder",
    "resolve_decoders",
]
