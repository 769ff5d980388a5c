"""Cross-compatibility with the reference's wire format.

Payloads here are written by hand the way the reference writes them (base64 of zlib of
``np.save`` bytes, and so on), and our encoder's output is read back with a small independent
implementation of the reference's decoder, using only the standard library and numpy.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import zlib
from typing import Any

import numpy as np
import pytest

from runtime_job.codec import dumps, loads
from runtime_job.decoders import ResultDecoder
from runtime_job.exceptions import ResultDecodingError

BACKENDS = [pytest.param(True, id="accelerated"), pytest.param(False, id="stdlib")]


def reference_npy(array: np.ndarray[Any, Any], level: int = -1) -> str:
    """An ndarray value exactly as the reference's encoder writes it."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.standard_b64encode(zlib.compress(buffer.getvalue(), level)).decode("utf-8")


def reference_hook(obj: dict[str, Any]) -> Any:
    """The reference decoder's rules for the tags used below (independent of our code)."""
    if "__type__" not in obj:
        return obj
    tag, value = obj["__type__"], obj["__value__"]
    if tag == "ndarray":
        if isinstance(value, list):
            return np.array(value)
        raw = zlib.decompress(base64.standard_b64decode(value))
        return np.load(io.BytesIO(raw), allow_pickle=False)
    if tag == "complex":
        return value[0] + 1j * value[1]
    if tag == "set":
        return set(value)
    if tag == "datetime":
        return datetime.datetime.fromisoformat(value)
    return obj


def reference_loads(text: str) -> Any:
    return json.loads(text, object_hook=reference_hook)


class TestReferencePayloadsDecode:
    @pytest.mark.parametrize("accelerated", BACKENDS)
    @pytest.mark.parametrize("level", [-1, 0, 1, 9])
    def test_ndarray(self, accelerated: bool, level: int) -> None:
        array = np.random.default_rng(0).normal(size=(50, 7))
        text = json.dumps({"x": {"__type__": "ndarray", "__value__": reference_npy(array, level)}})
        out = loads(text, accelerated=accelerated)["x"]
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)

    @pytest.mark.parametrize(
        "array",
        [
            np.array(7, dtype=np.int32),
            np.zeros((0, 2)),
            np.arange(4, dtype=">u2"),
            np.array([1j, -2 + 0.5j], dtype=np.complex64),
            np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            np.array(["unicode θ"]),
        ],
        ids=lambda a: f"{a.dtype.str}{a.shape}",
    )
    def test_ndarray_dtypes(self, array: np.ndarray[Any, Any]) -> None:
        text = json.dumps({"__type__": "ndarray", "__value__": reference_npy(array)})
        out = loads(text)
        assert out.dtype == array.dtype and out.shape == array.shape
        np.testing.assert_array_equal(out, array)

    def test_ndarray_in_the_npy_2_0_format(self) -> None:
        array = np.arange(6, dtype="<i8").reshape(2, 3)
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(
            buffer, np.lib.format.header_data_from_array_1_0(array)
        )
        buffer.write(array.tobytes())
        assert buffer.getvalue()[6] == 2  # format version 2.0
        value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
        out = loads(json.dumps({"__type__": "ndarray", "__value__": value}))
        np.testing.assert_array_equal(out, array)

    def test_npy_header_longer_than_numpy_accepts(self) -> None:
        # Very many fields need a 2.0 header over 64 KiB; np.load refuses headers over
        # 10000 bytes by default, and so do we.
        dtype = np.dtype([(f"field_{i:05d}", "<i2") for i in range(4000)])
        buffer = io.BytesIO()
        with pytest.warns(UserWarning, match="format 2.0"):
            np.save(buffer, np.zeros(2, dtype=dtype), allow_pickle=False)
        value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
        with pytest.raises(ResultDecodingError, match="header is too long"):
            loads(json.dumps({"__type__": "ndarray", "__value__": value}))

    def test_npy_3_0_format_is_read(self) -> None:
        # Format 3.0 (UTF-8 field names) takes the np.load fallback.
        array = np.zeros(3, dtype=[("θ", "<f8")])
        buffer = io.BytesIO()
        with pytest.warns(UserWarning, match="format 3.0"):
            np.save(buffer, array, allow_pickle=False)
        assert buffer.getvalue()[6] == 3
        value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
        out = loads(json.dumps({"__type__": "ndarray", "__value__": value}))
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)

    def test_ndarray_with_line_breaks_in_base64(self) -> None:
        array = np.arange(1000.0)
        value = base64.encodebytes(zlib.compress(_npy(array))).decode()  # MIME: has newlines
        out = loads(json.dumps({"__type__": "ndarray", "__value__": value}))
        np.testing.assert_array_equal(out, array)

    def test_reference_datetime_formats(self) -> None:
        for text, expected in [
            (
                "2023-06-12T10:30:00+00:00",
                datetime.datetime(2023, 6, 12, 10, 30, tzinfo=datetime.UTC),
            ),
            ("2023-06-12T10:30:00.123456", datetime.datetime(2023, 6, 12, 10, 30, 0, 123456)),
            ("2023-06-12", datetime.datetime(2023, 6, 12)),
            ("2023-06-12T10:30:00Z", datetime.datetime(2023, 6, 12, 10, 30, tzinfo=datetime.UTC)),
        ]:
            assert loads(json.dumps({"__type__": "datetime", "__value__": text})) == expected

    def test_reference_document(self) -> None:
        counts = base64.b64encode(zlib.compress(_npy(np.array([0.25, 0.75])))).decode()
        text = (
            '{"quasi_dists": [{"0": 0.5, "3": 0.5}], "values": {"__type__": "ndarray", '
            f'"__value__": "{counts}"}}, "z": {{"__type__": "complex", "__value__": [0.0, 1.0]}},'
            ' "s": {"__type__": "set", "__value__": ["a"]}, "obj": {"__type__": "ndarray", '
            '"__value__": [{"a": 1}, {"b": 2}]}, "circuit": {"__type__": "to_json", '
            '"__value__": "{\\"gates\\": 1}"}}'
        )
        out = ResultDecoder.decode(text)
        # Without the int-keys flag, keys stay strings, exactly as with the reference.
        assert out["quasi_dists"] == [{"0": 0.5, "3": 0.5}]
        np.testing.assert_array_equal(out["values"], [0.25, 0.75])
        assert out["z"] == 1j and out["s"] == {"a"} and out["circuit"] == '{"gates": 1}'
        assert out["obj"].dtype == object and out["obj"][1] == {"b": 2}

    def test_reference_settings_int_keys(self) -> None:
        text = json.dumps(
            {
                "__type__": "settings",
                "__module__": "somewhere",
                "__class__": "Thing",
                "__value__": {"table": {"1": "a", "__int_keys__": True}},
            }
        )
        with pytest.warns(UserWarning, match="not registered"):
            out = loads(text)
        assert out["__value__"] == {"table": {1: "a"}}

    def test_reference_spmatrix(self) -> None:
        sparse = pytest.importorskip("scipy.sparse")
        matrix = sparse.random(20, 30, density=0.1, format="csr", random_state=0)
        buffer = io.BytesIO()
        sparse.save_npz(buffer, matrix)
        value = base64.standard_b64encode(buffer.getvalue()).decode()
        out = loads(json.dumps({"__type__": "spmatrix", "__value__": value}))
        assert (out != matrix).nnz == 0


def _npy(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class TestOurPayloadsReadByTheReference:
    @pytest.mark.parametrize("accelerated", BACKENDS)
    def test_arrays(self, accelerated: bool) -> None:
        arrays = {
            "big": np.random.default_rng(3).random((300, 300)),
            "small": np.arange(5, dtype=">i2"),
            "zero_d": np.array(2.5),
            "empty": np.zeros((0, 4), dtype=np.complex128),
            "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        }
        out = reference_loads(dumps(arrays, accelerated=accelerated))
        for name, array in arrays.items():
            assert out[name].dtype == array.dtype and out[name].shape == array.shape
            np.testing.assert_array_equal(out[name], array)

    def test_npy_bytes_are_exactly_np_save_bytes(self) -> None:
        array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2]
        value = json.loads(dumps(array))["__value__"]
        assert zlib.decompress(base64.b64decode(value)) == _npy(array)

    def test_other_tags(self) -> None:
        when = datetime.datetime(2023, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        out = reference_loads(
            dumps({"z": 2 - 1j, "s": {1, 2}, "t": when, "o": np.array([{"a": 1}])})
        )
        assert out["z"] == 2 - 1j and out["s"] == {1, 2} and out["t"] == when
        assert out["o"].tolist() == [{"a": 1}]

    def test_int_key_flag_is_visible_to_the_reference(self) -> None:
        # The reference restores int keys only inside settings: elsewhere it sees the flag.
        assert reference_loads(dumps({1: "a"})) == {"1": "a", "__int_keys__": True}

    def test_text_is_plain_ascii_json(self) -> None:
        text = dumps({"θ": np.arange(3), "x": 1})
        assert text.isascii()
        json.loads(text)
