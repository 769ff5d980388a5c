"""Hostile and broken payloads: the codec must refuse them with a clear error, never crash."""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime_job import codec
from runtime_job.codec import loads
from runtime_job.exceptions import ResultDecodingError

BACKENDS = [pytest.param(True, id="accelerated"), pytest.param(False, id="stdlib")]
MIB = 1024 * 1024


@pytest.fixture(params=BACKENDS)
def accelerated(request: pytest.FixtureRequest) -> bool:
    value: bool = request.param
    return value


def npy_bytes(array: np.ndarray[Any, Any], allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def ndarray_doc(raw: bytes, compress: bool = True) -> str:
    data = zlib.compress(raw) if compress else raw
    return json.dumps({"__type__": "ndarray", "__value__": base64.b64encode(data).decode()})


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("runtime-job-decode")]


class TestSettingsNeverImport:
    @pytest.mark.parametrize(
        ("module", "cls", "value"),
        [
            ("os", "system", {"command": "echo pwned"}),
            ("subprocess", "Popen", {"args": ["echo", "pwned"]}),
            ("builtins", "eval", {"source": "1"}),
        ],
    )
    def test_stdlib_targets_give_plain_dicts(self, module: str, cls: str, value: Any) -> None:
        payload = {
            "__type__": "settings",
            "__module__": module,
            "__class__": cls,
            "__value__": value,
        }
        with pytest.warns(UserWarning, match="not registered"):
            out = loads(json.dumps({"x": payload}))
        assert out == {"x": payload}

    def test_named_module_is_not_imported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        marker = tmp_path / "imported"
        (tmp_path / "rj_sentinel_module.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nclass Boom:\n    def __init__(self, **kw):\n"
            "        raise SystemExit('instantiated')\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        payload = {
            "__type__": "settings",
            "__module__": "rj_sentinel_module",
            "__class__": "Boom",
            "__value__": {},
        }
        with pytest.warns(UserWarning):
            out = loads(json.dumps(payload))
        assert out == payload
        assert "rj_sentinel_module" not in sys.modules
        assert not marker.exists()

    def test_registered_name_from_another_module_is_refused(self) -> None:
        class Optimizer:
            settings: dict[str, Any] = {}

        registry = codec.SettingsRegistry([Optimizer])
        payload = {
            "__type__": "settings",
            "__module__": "evil",
            "__class__": "Optimizer",
            "__value__": {},
        }
        with pytest.warns(UserWarning):
            assert loads(json.dumps(payload), settings_registry=registry) == payload


class TestBrokenBinaryPayloads:
    def test_truncated_base64_bad_padding(self, accelerated: bool) -> None:
        value = json.loads(ndarray_doc(npy_bytes(np.arange(100.0))))["__value__"]
        doc = json.dumps({"__type__": "ndarray", "__value__": value[:-3]})
        with pytest.raises(ResultDecodingError, match="base64|[Tt]runcated"):
            loads(doc, accelerated=accelerated)

    def test_truncated_base64_on_a_quad_boundary(self, accelerated: bool) -> None:
        value = json.loads(ndarray_doc(npy_bytes(np.random.default_rng(0).random(2000))))
        text = value["__value__"]
        cut = text[: (len(text) // 2) // 4 * 4]
        doc = json.dumps({"__type__": "ndarray", "__value__": cut})
        with pytest.raises(ResultDecodingError, match="[Tt]runcated"):
            loads(doc, accelerated=accelerated)

    def test_zlib_stream_without_its_end(self, accelerated: bool) -> None:
        # Every data byte is there, but the stream's end (and checksum) is cut off.
        compressed = zlib.compress(npy_bytes(np.arange(1000.0)))[:-4]
        doc = json.dumps(
            {"__type__": "ndarray", "__value__": base64.b64encode(compressed).decode()}
        )
        with pytest.raises(ResultDecodingError, match="Truncated compressed data"):
            loads(doc, accelerated=accelerated)

    def test_invalid_base64(self, accelerated: bool) -> None:
        doc = json.dumps({"__type__": "ndarray", "__value__": "!!!!not base64 at all#"})
        with pytest.raises(ResultDecodingError):
            loads(doc, accelerated=accelerated)

    def test_non_ascii_base64(self, accelerated: bool) -> None:
        doc = json.dumps({"__type__": "ndarray", "__value__": "ééééé"})
        with pytest.raises(ResultDecodingError, match="base64"):
            loads(doc, accelerated=accelerated)

    def test_not_zlib(self, accelerated: bool) -> None:
        with pytest.raises(ResultDecodingError, match="[Cc]orrupt"):
            loads(ndarray_doc(b"definitely not zlib data", compress=False), accelerated=accelerated)

    def test_not_npy(self, accelerated: bool) -> None:
        with pytest.raises(ResultDecodingError, match="not .npy"):
            loads(ndarray_doc(b"PK\x03\x04 this is a zip, not npy"), accelerated=accelerated)

    def test_more_data_than_declared(self, accelerated: bool) -> None:
        raw = npy_header((2,)) + b"\x00" * 64
        with pytest.raises(ResultDecodingError, match="more data"):
            loads(ndarray_doc(raw), accelerated=accelerated)

    def test_less_data_than_declared(self, accelerated: bool) -> None:
        raw = npy_header((100,)) + b"\x00" * 64
        with pytest.raises(ResultDecodingError, match="Truncated ndarray"):
            loads(ndarray_doc(raw), accelerated=accelerated)

    def test_pickled_object_npy_is_refused(self, accelerated: bool) -> None:
        raw = npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        with pytest.raises(ResultDecodingError, match="Python objects"):
            loads(ndarray_doc(raw), accelerated=accelerated)

    def test_pickled_structured_npy_is_refused(self) -> None:
        raw = npy_bytes(np.zeros(2, dtype=[("o", "O")]), allow_pickle=True)
        with pytest.raises(ResultDecodingError, match="Python objects"):
            loads(ndarray_doc(raw))

    def test_malformed_npy_header(self) -> None:
        raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", 16) + b"{'descr': 5}   \n"
        with pytest.raises(ResultDecodingError, match="Invalid .npy header"):
            loads(ndarray_doc(raw))

    def test_unknown_npy_version(self) -> None:
        with pytest.raises(ResultDecodingError, match="version 9.0"):
            loads(ndarray_doc(b"\x93NUMPY\x09\x00" + b"\x00" * 32))

    def test_malformed_simple_tags(self) -> None:
        with pytest.raises(ResultDecodingError, match="complex"):
            loads('{"__type__": "complex", "__value__": "1+2j"}')
        with pytest.raises(ResultDecodingError, match="datetime"):
            loads('{"__type__": "datetime", "__value__": "yesterday"}')
        with pytest.raises(ResultDecodingError, match="set"):
            loads('{"__type__": "set", "__value__": [{"a": 1}]}')
        with pytest.raises(ResultDecodingError, match="shape"):
            loads('{"__type__": "ndarray", "__value__": [1], "__shape__": [3]}')


class TestDecompressionIsBounded:
    def test_zlib_bomb_in_an_array(self, accelerated: bool) -> None:
        raw = npy_bytes(np.zeros(8 * MIB // 8))  # 8 MiB of zeros compress to ~8 KiB
        doc = ndarray_doc(raw)
        assert len(doc) < 64 * 1024
        with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
            loads(doc, max_decompressed_size=MIB, accelerated=accelerated)
        assert loads(doc, max_decompressed_size=9 * MIB).shape == (MIB,)

    def test_declared_shape_is_checked_before_allocating(self) -> None:
        # 10**15 float64 would be 8 PB: refused from the header alone.
        doc = ndarray_doc(npy_header((10**15,)))
        with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
            loads(doc)

    def test_negative_shape_is_refused(self) -> None:
        with pytest.raises(ResultDecodingError, match="shape"):
            loads(ndarray_doc(npy_header((-5,))))

    def test_cap_covers_the_whole_document(self) -> None:
        one = json.loads(ndarray_doc(npy_bytes(np.zeros(60_000))))
        doc = json.dumps([one, one])  # 2 x 480 KB
        assert len(loads(doc, max_decompressed_size=1_000_000)) == 2
        with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
            loads(doc, max_decompressed_size=900_000)

    def test_zip_bomb_in_a_sparse_matrix(self) -> None:
        sparse = pytest.importorskip("scipy.sparse")
        buffer = io.BytesIO()
        sparse.save_npz(buffer, sparse.csr_matrix(np.ones((512, 512))))
        value = base64.b64encode(buffer.getvalue()).decode()
        doc = json.dumps({"__type__": "spmatrix", "__value__": value})
        with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
            loads(doc, max_decompressed_size=100_000)
        assert loads(doc).shape == (512, 512)

    def test_invalid_sparse_matrix(self) -> None:
        pytest.importorskip("scipy.sparse")
        with pytest.raises(ResultDecodingError, match="spmatrix"):
            loads(json.dumps({"__type__": "spmatrix", "__value__": "AAAA"}))


class TestNesting:
    @pytest.mark.parametrize("opener", ["[", '{"a":'])
    def test_deep_nesting_is_an_error_not_a_crash(self, accelerated: bool, opener: str) -> None:
        closer = "]" if opener == "[" else "}"
        text = opener * 100_000 + "1" + closer * 100_000
        with pytest.raises(ResultDecodingError, match="nested too deeply"):
            loads(text, accelerated=accelerated)
        with pytest.raises(ResultDecodingError, match="nested too deeply"):
            loads(text.encode(), accelerated=accelerated)

    def test_deep_nesting_of_a_small_plain_document(self) -> None:
        # Small documents without tags take a shorter path; it has the same limit.
        text = "[" * 20_000 + "1" + "]" * 20_000
        with pytest.raises(ResultDecodingError, match="nested too deeply"):
            loads(text)
        with pytest.raises(ResultDecodingError, match="nested too deeply"):
            loads(text.encode())

    def test_deep_nesting_in_decode_value(self) -> None:
        value: Any = 1
        for _ in range(100_000):
            value = [value]
        with pytest.raises(ResultDecodingError, match="nested too deeply"):
            codec.decode_value(value)

    def test_moderate_nesting_is_fine(self, accelerated: bool) -> None:
        text = "[" * 500 + "1" + "]" * 500
        value = loads(text, accelerated=accelerated)
        for _ in range(500):
            value = value[0]
        assert value == 1


class TestWorkerThreads:
    def test_worker_error_surfaces_and_threads_stop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 1024)
        monkeypatch.setattr(codec, "_B64_CHUNK_CHARS", 1024)
        good = json.loads(ndarray_doc(npy_bytes(np.random.default_rng(0).random(5000))))
        raw = npy_bytes(np.random.default_rng(1).random(5000))
        compressed = bytearray(zlib.compress(raw))
        compressed[2000:2100] = b"\xff" * 100  # corrupt the middle of the stream
        bad = {"__type__": "ndarray", "__value__": base64.b64encode(compressed).decode()}
        doc = json.dumps([good, bad, good])
        with pytest.raises(ResultDecodingError, match="[Cc]orrupt|more data|Truncated"):
            loads(doc, max_workers=2)
        assert decode_threads() == []

    def test_parse_error_after_an_array_stops_threads(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 1024)
        good = ndarray_doc(npy_bytes(np.random.default_rng(0).random(50_000)))
        with pytest.raises(json.JSONDecodeError):
            loads(f"[{good}, oops]", max_workers=2)
        assert decode_threads() == []

    def test_no_threads_left_after_success(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 1024)
        good = ndarray_doc(npy_bytes(np.random.default_rng(0).random(50_000)))
        assert len(loads(f"[{good}, {good}, {good}]", max_workers=2)) == 3
        assert decode_threads() == []


class TestInputTypes:
    def test_none_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="str or bytes"):
            loads(None)  # type: ignore[arg-type]

    def test_invalid_utf8_bytes(self, accelerated: bool) -> None:
        with pytest.raises(UnicodeDecodeError):
            loads(b'"\xff\xfe\xfa"', accelerated=accelerated)

    def test_not_json(self, accelerated: bool) -> None:
        with pytest.raises(json.JSONDecodeError):
            loads("Traceback (most recent call last): ...", accelerated=accelerated)


class TestOptionalPackagesMissing:
    @pytest.mark.parametrize(
        "tag", ["QuantumCircuit", "Instruction", "Parameter", "ParameterExpression", "Result"]
    )
    def test_qiskit_payload_without_qiskit(self, monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
        for name in ("qiskit", "qiskit.qpy", "qiskit.circuit", "qiskit.result"):
            monkeypatch.setitem(sys.modules, name, None)
        doc = json.dumps({"__type__": tag, "__value__": "AAAA"})
        with pytest.raises(ResultDecodingError, match=r"pip install 'runtime-job\[qiskit\]'"):
            loads(doc)

    def test_sparse_payload_without_scipy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "scipy.sparse", None)
        monkeypatch.setitem(sys.modules, "scipy", None)
        with pytest.raises(ResultDecodingError, match="scipy"):
            loads(json.dumps({"__type__": "spmatrix", "__value__": "AAAA"}))

    def test_noise_model_without_aer(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "qiskit_aer", None)
        monkeypatch.setitem(sys.modules, "qiskit_aer.noise", None)
        with pytest.warns(UserWarning, match="Qiskit Aer is needed"):
            out = loads('{"__type__": "NoiseModel", "__value__": {"errors": []}}')
        assert out == {"errors": []}


@pytest.mark.parametrize("as_bytes", [False, True])
def test_tags_spelled_with_unicode_escapes_are_still_tags(as_bytes: bool) -> None:
    text = (
        '{"\\u005f\\u005ftype\\u005f\\u005f": "complex", '
        '"\\u005f\\u005fvalue\\u005f\\u005f": [1, 2]}'
    )
    assert "__" not in text
    assert loads(text.encode() if as_bytes else text) == 1 + 2j
