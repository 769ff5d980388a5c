"""The built-in ``sampler`` and ``estimator`` programs: V2 (pubs) and 2023 inputs alike.

Today's primitives (SamplerV2, EstimatorV2) send ``{"pubs": [...], "options": {...},
"version": 2, "support_qiskit": true}`` (``shared/spec/platform.md`` section 5.3). The
programs here dispatch on those inputs: ``version == 2`` (or ``pubs`` without the 2023
``circuits``) runs the V2 program, anything else the 2023 one of :mod:`.programs`, so the
2023 routes and clients keep working unchanged and the same program ids serve both.

The V2 programs run qiskit's own reference primitives, :class:`~qiskit.primitives.
StatevectorSampler` and :class:`~qiskit.primitives.StatevectorEstimator`, on the decoded pubs,
so their values are those of the same primitives run in-process (bit for bit with the same
seed). Results are encoded as section 7 of the spec: a ``PrimitiveResult`` of
``SamplerPubResult`` / ``PubResult`` with ``DataBin`` fields (``BitArray`` per classical
register; ``evs``, ``stds``, ``ensemble_standard_error``), and the sampler's execution spans.

Options read (the rest are accepted and have no effect on a noiseless simulation):

- ``default_shots`` (sampler: shots of pubs that name none, default 4096 as on the service;
  estimator: precision ``1/sqrt(shots)`` of pubs without a precision);
- ``default_precision`` (estimator: precision of pubs without one; default 0, exact, as
  ``StatevectorEstimator``);
- ``simulator.seed_simulator`` (the primitives' ``seed``).
"""

from __future__ import annotations

import base64
import io
import json
import math
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .programs import LocalBackend, UserMessenger
from .programs import estimator as estimator_2023
from .programs import sampler as sampler_2023

DEFAULT_SHOTS = 4096
"""Shots of a sampler pub when neither the pub nor ``default_shots`` names any."""


def is_v2(inputs: Mapping[str, Any]) -> bool:
    """Whether a program's inputs are in the V2 (pubs) format."""
    return inputs.get("version") == 2 or ("pubs" in inputs and "circuits" not in inputs)


def sampler(backend: LocalBackend, user_messenger: UserMessenger, **inputs: Any) -> Any:
    """``sampler``: V2 inputs run :func:`sampler_v2`, 2023 inputs the 2023 sampler."""
    if is_v2(inputs):
        return sampler_v2(backend, user_messenger, **inputs)
    return sampler_2023(backend, user_messenger, **inputs)


def estimator(backend: LocalBackend, user_messenger: UserMessenger, **inputs: Any) -> Any:
    """``estimator``: V2 inputs run :func:`estimator_v2`, 2023 inputs the 2023 estimator."""
    if is_v2(inputs):
        return estimator_v2(backend, user_messenger, **inputs)
    return estimator_2023(backend, user_messenger, **inputs)


# -- encoding (section 7) ---------------------------------------------------------------------


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {"__type__": name, "__value__": value}


def encode_ndarray(array: Any) -> dict[str, Any]:
    """An ``ndarray`` tag: base64 of the zlib-compressed ``.npy`` bytes (no pickles)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return _tag("ndarray", base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii"))


def _datetime(moment: datetime) -> dict[str, Any]:
    return _tag("datetime", moment.isoformat())


def _plain(value: Any) -> Any:
    """Metadata as JSON: numpy scalars and arrays become numbers and ndarray tags."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return encode_ndarray(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _data_bin(data: Any) -> dict[str, Any]:
    from qiskit.primitives import BitArray

    fields: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, BitArray):
            fields[name] = _tag(
                "BitArray", {"array": encode_ndarray(value.array), "num_bits": value.num_bits}
            )
        else:
            fields[name] = encode_ndarray(value)
    return _tag(
        "DataBin", {"field_names": list(fields), "shape": list(data.shape), "fields": fields}
    )


def _primitive_result(pub_results: list[Any], metadata: dict[str, Any]) -> dict[str, Any]:
    return _tag("PrimitiveResult", {"pub_results": pub_results, "metadata": metadata})


def _publish(user_messenger: UserMessenger, result: dict[str, Any]) -> None:
    """Set the final result to the tagged tree as it stands (already encoded)."""
    user_messenger.publish(result, encoder=json.JSONEncoder, final=True)


# -- the V2 programs ------------------------------------------------------------------------


def _options(options: Any) -> dict[str, Any]:
    return dict(options) if isinstance(options, Mapping) else {}


def _seed(options: Mapping[str, Any]) -> int | None:
    simulator = options.get("simulator")
    seed = simulator.get("seed_simulator") if isinstance(simulator, Mapping) else None
    return None if seed is None else int(seed)


def _positive_shots(value: Any, where: str) -> int:
    shots = int(value)
    if shots <= 0:
        raise ValueError(f"{where}: shots must be a positive integer, not {value!r}")
    return shots


def _pub_list(pubs: Any) -> list[Any]:
    if not isinstance(pubs, list | tuple) or not pubs:
        raise ValueError("'pubs' must be a non-empty list of pubs")
    return list(pubs)


def _parameter_values(value: Any) -> Any:
    """Parameter values as sent (an array of shape ``(..., n)``; ``(0,)`` for none)."""
    import numpy as np

    return None if value is None else np.asarray(value, dtype=float)


def sampler_v2(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    pubs: Any = None,
    options: Any = None,
    **_: Any,
) -> None:
    """SamplerV2 on :class:`~qiskit.primitives.StatevectorSampler`.

    Each pub is ``[circuit, parameter values, shots]`` (shots may be ``null``). Publishes the
    encoded ``PrimitiveResult`` as the final result.
    """
    from qiskit.primitives import StatevectorSampler
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    opts = _options(options)
    default = opts.get("default_shots")
    default_shots = DEFAULT_SHOTS if default is None else _positive_shots(default, "options")
    coerced = []
    for index, pub in enumerate(_pub_list(pubs)):
        parts = list(pub) if isinstance(pub, list | tuple) else [pub]
        circuit = parts[0]
        values = _parameter_values(parts[1]) if len(parts) > 1 else None
        shots = parts[2] if len(parts) > 2 else None
        shots = default_shots if shots is None else _positive_shots(shots, f"pub {index}")
        coerced.append(SamplerPub.coerce((circuit, values, shots)))
    start = datetime.now(UTC)
    result = StatevectorSampler(default_shots=default_shots, seed=_seed(opts)).run(coerced)
    primitive = result.result()
    stop = datetime.now(UTC)
    pub_results = []
    slices: dict[str, Any] = {}
    for index, (pub, pub_result) in enumerate(zip(coerced, primitive, strict=True)):
        pub_results.append(
            _tag(
                "SamplerPubResult",
                {"data": _data_bin(pub_result.data), "metadata": _plain(pub_result.metadata)},
            )
        )
        size = int(math.prod(pub.shape))
        slices[str(index)] = [[size, pub.shots], 0, size, 0, pub.shots]
    span = _tag(
        "DoubleSliceSpan",
        {"start": _datetime(start), "stop": _datetime(stop), "data_slices": slices},
    )
    metadata = _plain(primitive.metadata)
    metadata["execution"] = {"execution_spans": _tag("ExecutionSpans", {"spans": [span]})}
    metadata["version"] = 2
    _publish(user_messenger, _primitive_result(pub_results, metadata))


def estimator_v2(
    backend: LocalBackend,
    user_messenger: UserMessenger,
    pubs: Any = None,
    options: Any = None,
    **_: Any,
) -> None:
    """EstimatorV2 on :class:`~qiskit.primitives.StatevectorEstimator`.

    Each pub is ``[circuit, observables, parameter values, precision]`` (precision may be
    ``null``). A precision of 0 is exact; a positive one adds qiskit's Gaussian noise of that
    standard deviation, as the reference estimator does.
    """
    from qiskit.primitives import StatevectorEstimator
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    opts = _options(options)
    precision_default = 0.0
    if opts.get("default_precision") is not None:
        precision_default = float(opts["default_precision"])
    elif opts.get("default_shots") is not None:
        precision_default = 1 / math.sqrt(_positive_shots(opts["default_shots"], "options"))
    coerced = []
    for pub in _pub_list(pubs):
        parts = list(pub) if isinstance(pub, list | tuple) else [pub]
        if len(parts) < 2:
            raise ValueError("an estimator pub needs a circuit and observables")
        values = _parameter_values(parts[2]) if len(parts) > 2 else None
        precision = parts[3] if len(parts) > 3 else None
        precision = precision_default if precision is None else float(precision)
        coerced.append(EstimatorPub.coerce((parts[0], parts[1], values, precision)))
    estimator_primitive = StatevectorEstimator(
        default_precision=precision_default, seed=_seed(opts)
    )
    primitive = estimator_primitive.run(coerced).result()
    pub_results = []
    for pub, pub_result in zip(coerced, primitive, strict=True):
        data = pub_result.data
        evs, stds = data.evs, data.stds
        fields = {
            "evs": encode_ndarray(evs),
            "stds": encode_ndarray(stds),
            "ensemble_standard_error": encode_ndarray(stds),
        }
        metadata = _plain(pub_result.metadata)
        shots = None if pub.precision in (None, 0) else math.ceil(1 / pub.precision**2)
        metadata.setdefault("target_precision", pub.precision)
        metadata["shots"] = shots
        pub_results.append(
            _tag(
                "PubResult",
                {
                    "data": _tag(
                        "DataBin",
                        {"field_names": list(fields), "shape": list(data.shape), "fields": fields},
                    ),
                    "metadata": metadata,
                },
            )
        )
    metadata = {
        "dynamical_decoupling": {"enable": False},
        "twirling": {"enable_gates": False, "enable_measure": False},
        "resilience": {},
        "version": 2,
    }
    _publish(user_messenger, _primitive_result(pub_results, metadata))


__all__ = [
    "DEFAULT_SHOTS",
    "encode_ndarray",
    "estimator",
    "estimator_v2",
    "is_v2",
    "sampler",
    "sampler_v2",
]
