"""Scenario 12: hostile payloads reach the client's decoder through the real server.

A program publishes them verbatim (plain JSON encoder), as its final result and as an interim
result on the stream. The client must refuse them: no module named by a ``settings`` payload
is imported, a zlib bomb is never inflated past the limits, a pickled ``.npy`` is never
unpickled. Arbitrary bytes never escape the decoder as anything but ``ResultDecodingError``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runtime_job import RuntimeService
from runtime_job.api.client import RuntimeClient
from runtime_job.decoders import ResultDecoder
from runtime_job.exceptions import ResultDecodingError
from tests.support import wait_until

from .conftest import Collector

SENTINEL = "tests.reliability._never_imported"
MIB = 1024 * 1024


def npy(array: np.ndarray[Any, Any], allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def ndarray_tag(raw: bytes) -> dict[str, str]:
    return {"__type__": "ndarray", "__value__": base64.b64encode(zlib.compress(raw)).decode()}


def header_only(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def bomb(declared: tuple[int, ...], zeros: int) -> dict[str, str]:
    """An ndarray payload whose header declares ``declared`` but whose zlib stream inflates
    to ``zeros`` bytes of data after the header (compressed about a thousand to one)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(header_only(declared))]
    chunk = bytes(MIB)
    for _ in range(zeros // MIB):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return {"__type__": "ndarray", "__value__": base64.b64encode(b"".join(parts)).decode()}


SETTINGS = {
    "__type__": "settings",
    "__module__": SENTINEL,
    "__class__": "Boom",
    "__value__": {"x": 1},
}
HOSTILE: dict[str, Any] = {
    "settings-import": SETTINGS,
    "settings-os-system": {
        "__type__": "settings",
        "__module__": "os",
        "__class__": "system",
        "__value__": {"command": "echo pwned"},
    },
    "pickled-npy": ndarray_tag(npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)),
    "pickled-structured-npy": ndarray_tag(
        npy(np.array([(1, None)], dtype=[("a", "i4"), ("b", "O")]), allow_pickle=True)
    ),
    "declared-3-GiB": ndarray_tag(header_only((3 * 1024**3 // 8,))),
    "inflates-past-its-header": bomb((16,), 32 * MIB),
}


def finish(direct: RuntimeClient, job_id: str) -> None:
    wait_until(
        lambda: direct.job_get(job_id)["state"]["status"] in ("COMPLETED", "FAILED", "CANCELLED"),
        30,
        what=f"job {job_id} to end",
    )


def raw_job(direct: RuntimeClient, document: Any, interim: Any = None) -> str:
    params = {"document": json.dumps(document), "interim": json.dumps(interim) if interim else ""}
    job_id = str(direct.program_run("raw-final", None, params, None, None, None, None)["id"])
    finish(direct, job_id)
    return job_id


@pytest.mark.parametrize("kind", [k for k in HOSTILE if k.startswith("settings")])
def test_12_settings_payloads_never_import_what_they_name(
    kind: str, direct: RuntimeClient, connect: Callable[..., RuntimeService], server: Any
) -> None:
    job_id = raw_job(direct, {"value": HOSTILE[kind]})
    job = connect(server.url).job(job_id)
    with pytest.warns(UserWarning, match="not registered"):
        value = job.result()
    assert value == {"value": HOSTILE[kind]}  # a plain dict, nothing rebuilt
    assert SENTINEL not in sys.modules


@pytest.mark.parametrize("kind", [k for k in HOSTILE if not k.startswith("settings")])
def test_12_hostile_arrays_are_refused_as_results(
    kind: str, direct: RuntimeClient, connect: Callable[..., RuntimeService], server: Any
) -> None:
    job_id = raw_job(direct, {"value": HOSTILE[kind]})
    job = connect(server.url).job(job_id)
    started = time.monotonic()
    with pytest.raises(ResultDecodingError) as caught:
        job.result()
    assert time.monotonic() - started < 5
    err = caught.value
    assert err.job_id == job_id
    assert "__type__" in err.excerpt
    assert any(word in str(err) for word in ("pickle", "limit", "more data", "Refusing"))


def test_12_a_per_decoder_limit_bounds_the_whole_document(
    direct: RuntimeClient, connect: Callable[..., RuntimeService], server: Any
) -> None:
    class Small(ResultDecoder):
        max_decompressed_size = 8 * MIB

    # Four honest 3 MiB arrays: each fits, together they do not.
    honest = ndarray_tag(npy(np.zeros(3 * MIB // 8)))
    job_id = raw_job(direct, [honest] * 4)
    job = connect(server.url).job(job_id)
    with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
        job.result(decoder=Small)
    decoded = job.result()  # the default limit (2 GiB) takes it
    assert [a.shape for a in decoded] == [(3 * MIB // 8,)] * 4


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"__type__": "QuantumCircuit", "__value__": None}, id="circuit-null"),
        pytest.param({"__type__": "Instruction", "__value__": {"a": 1}}, id="instruction-object"),
        pytest.param({"__type__": "Parameter", "__value__": [1, 2]}, id="parameter-list"),
    ],
)
def test_12_malformed_tagged_results_are_decoding_errors(
    document: Any, direct: RuntimeClient, connect: Callable[..., RuntimeService], server: Any
) -> None:
    job_id = raw_job(direct, document)
    job = connect(server.url).job(job_id)
    with pytest.raises(ResultDecodingError) as caught:
        job.result()
    assert caught.value.job_id == job_id


def test_12_hostile_interim_results_are_refused_and_the_stream_goes_on(
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = connect(server.url)
    seen = Collector()
    params = {
        "document": json.dumps({"ok": True}),
        "interim": json.dumps(HOSTILE["pickled-npy"]),
    }
    with caplog.at_level(logging.WARNING, logger="runtime_job"):
        job = service.run("raw-final", inputs=params, callback=seen)
        assert job.result(timeout=30) == {"ok": True}
        job.wait_for_final_state(timeout=10)
    assert seen.seen == [{"ok": True}]  # the hostile interim result never reached it
    refusals = [r for r in caplog.records if job.job_id() in r.getMessage()]
    assert refusals and "pickle" in str(refusals[0].exc_info[1] if refusals[0].exc_info else "")
    with pytest.raises(ResultDecodingError, match="pickle"):
        job.interim_results()


# -- the decoder never fails with anything but ResultDecodingError ----------------------------

_tags = st.sampled_from(
    [
        "ndarray",
        "settings",
        "complex",
        "set",
        "to_json",
        "Result",
        "QuantumCircuit",
        "Parameter",
        "ParameterExpression",
        "Instruction",
        "unknown",
        "Pauli",
    ]
)
_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.fixed_dictionaries({"__type__": _tags, "__value__": inner}),
        st.fixed_dictionaries(
            {
                "__type__": _tags,
                "__value__": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
            }
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values)
@example(value={"__type__": "QuantumCircuit", "__value__": None})
@example(value={"__type__": "Parameter", "__value__": [1, 2]})
@example(value={"__type__": "ndarray", "__value__": {"a": 1}})
@example(value={"__type__": "complex", "__value__": "x"})
def test_12_tagged_documents_decode_or_raise_a_decoding_error(value: Any) -> None:
    text = json.dumps(value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # unregistered settings classes
            ResultDecoder.decode(text)
    except ResultDecodingError:
        pass


@settings(max_examples=150, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_12_arbitrary_bytes_decode_or_raise_a_decoding_error(raw: bytes | str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ResultDecoder.decode(raw)
    except ResultDecodingError:
        pass
