"""Round trips through the runtime codec: every tag, on both back ends."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_job import codec
from runtime_job.codec import RuntimeDecoder, RuntimeEncoder, dumps, loads

BACKENDS = [pytest.param(True, id="accelerated"), pytest.param(False, id="stdlib")]


def roundtrip(value: Any, accelerated: bool, **kwargs: Any) -> Any:
    return loads(dumps(value, accelerated=accelerated), accelerated=accelerated, **kwargs)


def assert_same_array(got: Any, expected: np.ndarray[Any, Any]) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(params=BACKENDS)
def accelerated(request: pytest.FixtureRequest) -> bool:
    value: bool = request.param
    return value


class TestScalarsAndContainers:
    def test_json_natives_pass_through(self, accelerated: bool) -> None:
        value = {"a": [1, 2.5, None, True, "x"], "b": {"c": []}, "d": -0.0}
        assert roundtrip(value, accelerated) == value

    def test_datetime_and_date(self, accelerated: bool) -> None:
        aware = datetime.datetime(2023, 6, 12, 10, 30, 1, 123456, tzinfo=datetime.UTC)
        naive = datetime.datetime(2023, 6, 12, 10, 30)
        out = roundtrip(
            {"aware": aware, "naive": naive, "day": datetime.date(2023, 6, 12)}, accelerated
        )
        assert out["aware"] == aware and out["aware"].tzinfo is not None
        assert out["naive"] == naive
        # A date comes back as a datetime at midnight, as with the reference.
        assert out["day"] == datetime.datetime(2023, 6, 12)

    def test_datetime_with_trailing_z(self) -> None:
        text = '{"__type__": "datetime", "__value__": "2023-06-12T10:30:00Z"}'
        assert loads(text) == datetime.datetime(2023, 6, 12, 10, 30, tzinfo=datetime.UTC)

    @pytest.mark.parametrize(
        "value", [1 + 2j, complex(0, -1), complex(math.inf, 1), np.complex64(1 - 1j)]
    )
    def test_complex(self, accelerated: bool, value: complex) -> None:
        assert roundtrip([value], accelerated) == [complex(value)]

    def test_complex_with_nan_keeps_parts(self, accelerated: bool) -> None:
        out = roundtrip(complex(1.0, math.nan), accelerated)
        assert out.real == 1.0 and math.isnan(out.imag)

    def test_sets(self, accelerated: bool) -> None:
        value = {"s": {1, 2, 3}, "f": frozenset({"a"}), "t": {(1, 2), (3, (4, 5))}}
        out = roundtrip(value, accelerated)
        assert out == {"s": {1, 2, 3}, "f": {"a"}, "t": {(1, 2), (3, (4, 5))}}

    def test_numpy_scalars_are_plain_numbers(self, accelerated: bool) -> None:
        value = [np.int8(-3), np.uint64(2**63), np.float32(0.5), np.float16(2), np.bool_(True)]
        text = dumps(value, accelerated=accelerated)
        assert json.loads(text) == [-3, 2**63, 0.5, 2.0, True]
        assert "__type__" not in text

    def test_nan_and_inf_floats(self, accelerated: bool) -> None:
        out = roundtrip({"x": [math.nan, math.inf, -math.inf]}, accelerated)
        assert math.isnan(out["x"][0]) and out["x"][1:] == [math.inf, -math.inf]

    def test_non_ascii_strings(self, accelerated: bool) -> None:
        value = {"ключ": "θ ≈ π/2 🚀", "nul": "a\x00b", "quote": 'he said "hi"\\'}
        assert roundtrip(value, accelerated) == value

    def test_int_keys_everywhere(self, accelerated: bool) -> None:
        value = {
            "counts": {0: 10, 3: 5},
            "nested": [{1: {2: "x"}}],
            "mixed": {1: "int", "a": "str"},
            "tuple": ({7: 7},),
            np.int64(5): "numpy key",
        }
        out = roundtrip(value, accelerated)
        assert out == {
            "counts": {0: 10, 3: 5},
            "nested": [{1: {2: "x"}}],
            "mixed": {1: "int", "a": "str"},
            "tuple": [{7: 7}],
            5: "numpy key",
        }
        assert all(type(key) is int for key in out["counts"])

    def test_int_key_flag_is_written_and_input_untouched(self) -> None:
        inner = {1: "a"}
        value = {"x": inner}
        data = json.loads(dumps(value))
        assert data == {"x": {"1": "a", "__int_keys__": True}}
        assert value == {"x": {1: "a"}} and value["x"] is inner

    def test_string_keys_that_look_like_ints_stay_strings(self) -> None:
        assert loads('{"007": 1, "2": 2, "__int_keys__": true}') == {"007": 1, 2: 2}
        assert loads('{"2": 2}') == {"2": 2}

    def test_callable_becomes_none_with_warning(self, accelerated: bool) -> None:
        with pytest.warns(UserWarning, match="is not JSON serializable and will be set to None"):
            text = dumps({"f": len}, accelerated=accelerated)
        assert loads(text) == {"f": None}

    def test_to_json_objects_are_not_rebuilt(self, accelerated: bool) -> None:
        class Thing:
            def to_json(self) -> str:
                return '{"a": 1}'

        assert roundtrip(Thing(), accelerated) == '{"a": 1}'

    def test_unserialisable_raises_type_error(self) -> None:
        with pytest.raises(TypeError, match="not JSON serializable"):
            dumps(object())


class TestArrays:
    @pytest.mark.parametrize(
        "array",
        [
            np.arange(12, dtype=np.float64).reshape(3, 4),
            np.array(3.5),
            np.zeros((0,)),
            np.zeros((2, 0, 3), dtype=np.int16),
            np.arange(6, dtype=">i4"),
            np.arange(6, dtype=">f8").reshape(2, 3),
            np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
            np.array([1 + 2j], dtype=">c8"),
            np.array([np.nan, np.inf, -np.inf, -0.0]),
            np.array([True, False]),
            np.array(["ab", "θπ"]),
            np.array([b"xy", b"z"]),
            np.zeros(3, dtype=[("x", "<f4"), ("n", ">i2")]),
            np.arange(24, dtype=np.uint8).reshape(2, 3, 4).transpose(),
            np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            np.arange(20.0)[::3],
        ],
        ids=lambda a: f"{a.dtype.str}{a.shape}",
    )
    def test_numeric_arrays(self, accelerated: bool, array: np.ndarray[Any, Any]) -> None:
        out = roundtrip({"a": array}, accelerated)["a"]
        assert_same_array(out, array)
        assert out.flags.writeable

    def test_object_array_of_dicts_and_mixed_items(self, accelerated: bool) -> None:
        array = np.array([{"a": 1, 2: "b"}, None, "text", 1.5], dtype=object)
        out = roundtrip(array, accelerated)
        assert out.dtype == object and out.shape == (4,)
        assert out.tolist() == [{"a": 1, 2: "b"}, None, "text", 1.5]

    def test_object_array_keeps_shape_with_list_items(self, accelerated: bool) -> None:
        array = np.empty(2, dtype=object)
        array[0], array[1] = [1, 2], [3, 4]
        out = roundtrip(array, accelerated)
        assert out.shape == (2,) and out[0] == [1, 2] and out[1] == [3, 4]

    def test_object_array_2d_and_0d(self, accelerated: bool) -> None:
        two_d = np.array([[{"x": 1}, 2], [3, "four"]], dtype=object)
        zero_d = np.empty((), dtype=object)
        zero_d[()] = {"k": "v"}
        out = roundtrip([two_d, zero_d], accelerated)
        assert out[0].shape == (2, 2) and out[0].tolist() == two_d.tolist()
        assert out[1].shape == () and out[1][()] == {"k": "v"}

    def test_object_array_holding_arrays(self, accelerated: bool) -> None:
        array = np.empty(2, dtype=object)
        array[0], array[1] = np.arange(3.0), np.eye(2)
        out = roundtrip(array, accelerated)
        assert_same_array(out[0], np.arange(3.0))
        assert_same_array(out[1], np.eye(2))

    def test_reference_object_list_without_shape_hint(self) -> None:
        out = loads('{"__type__": "ndarray", "__value__": [[1], [2, 3]]}')
        assert out.dtype == object and out.shape == (2,) and out[1] == [2, 3]
        assert_same_array(loads('{"__type__": "ndarray", "__value__": [1, 2]}'), np.array([1, 2]))

    def test_large_arrays_on_worker_threads(
        self, accelerated: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 1024)
        monkeypatch.setattr(codec, "_B64_CHUNK_CHARS", 4096)
        rng = np.random.default_rng(1)
        arrays = {f"a{i}": rng.random(5000 + i) for i in range(7)}
        arrays["ints"] = np.arange(100_000, dtype=np.int64)
        text = dumps(arrays, accelerated=accelerated)
        out = loads(text, accelerated=accelerated, max_workers=2)
        for name, array in arrays.items():
            assert_same_array(out[name], array)

    def test_array_bigger_than_one_output_chunk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(codec, "_OUT_CHUNK", 1000)
        monkeypatch.setattr(codec, "_IN_CHUNK", 700)
        array = np.random.default_rng(2).random(10_000)
        assert_same_array(roundtrip(array, False), array)
        assert_same_array(roundtrip(array, True), array)

    def test_dumps_matches_plain_json_dumps(self) -> None:
        value = {"big": np.arange(10_000.0), "small": np.arange(3), "s": "x"}
        spliced = loads(dumps(value))
        plain = json.loads(json.dumps(value, cls=RuntimeEncoder), cls=RuntimeDecoder)
        assert_same_array(spliced["big"], plain["big"])
        assert_same_array(spliced["small"], plain["small"])


class TestJsonModuleIntegration:
    def test_cls_arguments(self) -> None:
        value = {"a": np.arange(3), "b": {1: 2}, "c": {3}}
        text = json.dumps(value, cls=RuntimeEncoder)
        out = json.loads(text, cls=RuntimeDecoder)
        assert_same_array(out["a"], np.arange(3))
        assert out["b"] == {1: 2} and out["c"] == {3}

    def test_decoder_options_are_honoured(self) -> None:
        out = json.loads('{"x": 1.5}', cls=RuntimeDecoder, parse_float=str)
        assert out == {"x": "1.5"}

    def test_object_hook_alone(self) -> None:
        decoder = RuntimeDecoder()
        assert decoder.object_hook({"__type__": "complex", "__value__": [1, 2]}) == 1 + 2j
        assert decoder.object_hook({"plain": 1}) == {"plain": 1}

    def test_json_dump_to_a_stream(self, tmp_path: Any) -> None:
        path = tmp_path / "out.json"
        with path.open("w") as handle:
            json.dump({"a": np.arange(4), 1: "one"}, handle, cls=RuntimeEncoder)
        out = loads(path.read_bytes())
        assert_same_array(out["a"], np.arange(4))
        assert out[1] == "one"

    def test_bytes_input(self) -> None:
        assert loads(dumps({"z": 1j}).encode()) == {"z": 1j}
        assert loads(bytearray(b"[1, 2]")) == [1, 2]

    def test_decode_value_on_parsed_data(self) -> None:
        parsed = json.loads(dumps({"a": np.arange(3), "k": {4: "x"}}))
        out = codec.decode_value(parsed)
        assert_same_array(out["a"], np.arange(3))
        assert out["k"] == {4: "x"}
        assert isinstance(parsed["a"], dict)  # input untouched

    def test_to_base64_string(self) -> None:
        assert codec.to_base64_string("θ") == "zrg="


class TestUnknownTags:
    def test_unknown_type_is_returned_unchanged(self, accelerated: bool) -> None:
        text = '{"__type__": "Martian", "__value__": {"x": 1}}'
        assert loads(text, accelerated=accelerated) == {
            "__type__": "Martian",
            "__value__": {"x": 1},
        }

    def test_type_without_value_is_a_plain_dict(self, accelerated: bool) -> None:
        for tag in ("ndarray", "datetime", "settings", "QuantumCircuit"):
            text = json.dumps({"__type__": tag, "other": 1})
            assert loads(text, accelerated=accelerated) == {"__type__": tag, "other": 1}

    def test_non_string_type_is_a_plain_dict(self) -> None:
        assert loads('{"__type__": [1], "__value__": 2}') == {"__type__": [1], "__value__": 2}


class TestSettings:
    def test_registered_class_is_rebuilt(self) -> None:
        class Optimizer:
            def __init__(self, maxiter: int, table: dict[int, str]) -> None:
                self.maxiter, self.table = maxiter, table

            @property
            def settings(self) -> dict[str, Any]:
                return {"maxiter": self.maxiter, "table": self.table}

        registry = codec.SettingsRegistry([Optimizer])
        out = loads(dumps(Optimizer(5, {1: "a"})), settings_registry=registry)
        assert isinstance(out, Optimizer)
        assert out.maxiter == 5 and out.table == {1: "a"}

    def test_unregistered_class_gives_plain_dict_and_warning(self) -> None:
        class Unlisted:
            settings = {"a": 1}

        with pytest.warns(UserWarning, match="not registered"):
            out = loads(dumps(Unlisted()), settings_registry=codec.SettingsRegistry())
        assert out["__type__"] == "settings" and out["__value__"] == {"a": 1}
        assert out["__class__"] == "Unlisted"

    def test_default_registry_and_helpers(self) -> None:
        class Listed:
            def __init__(self, x: int) -> None:
                self.x = x

            @property
            def settings(self) -> dict[str, int]:
                return {"x": self.x}

        registry = codec.default_settings_registry()
        assert Listed not in registry
        codec.register_settings_class(Listed)
        try:
            assert Listed in registry
            assert loads(dumps(Listed(3))).x == 3
        finally:
            codec.unregister_settings_class(Listed)
        assert Listed not in registry
        with pytest.warns(UserWarning):
            loads(dumps(Listed(3)))

    def test_registry_rejects_non_classes(self) -> None:
        with pytest.raises(TypeError, match="Only classes"):
            codec.SettingsRegistry().register(len)  # type: ignore[arg-type]

    def test_registry_repr_and_len(self) -> None:
        registry = codec.SettingsRegistry([int])
        assert len(registry) == 1 and "builtins.int" in repr(registry)

    def test_bad_settings_for_a_registered_class(self) -> None:
        class Strict:
            def __init__(self, x: int) -> None:
                self.x = x

        text = json.dumps(
            {
                "__type__": "settings",
                "__module__": Strict.__module__,
                "__class__": "Strict",
                "__value__": {"y": 1},
            }
        )
        with pytest.raises(codec.ResultDecodingError, match="Could not rebuild"):
            loads(text, settings_registry=codec.SettingsRegistry([Strict]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=5), children, max_size=5)
        | st.dictionaries(st.integers(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, accelerated=st.booleans())
def test_json_native_values_round_trip(value: Any, accelerated: bool) -> None:
    assert roundtrip(value, accelerated) == value


@settings(max_examples=60)
@given(
    data=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50),
    dtype=st.sampled_from(["<f8", ">f8", "<f4", "<c16", ">i8", "u1"]),
    accelerated=st.booleans(),
)
def test_arrays_round_trip(data: list[float], dtype: str, accelerated: bool) -> None:
    with np.errstate(invalid="ignore", over="ignore"):
        array = np.array(data, dtype=np.float64).astype(dtype)
    np.testing.assert_array_equal(roundtrip(array, accelerated), array)


@pytest.mark.parametrize("max_workers", [1, 2])
def test_text_and_bytes_input_decode_alike(
    accelerated: bool, max_workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 512)
    value = {
        "arrays": [np.arange(2000.0), np.eye(3, dtype=">f4")],
        "objects": np.array([{"a": {1: 2}}, [1, 2]], dtype=object),
        "tags": [1j, {1, 2}, datetime.datetime(2020, 1, 1)],
        "counts": {3: {4: 5}},
        "unknown": {"__type__": "Other", "__value__": 1},
        "nan": math.nan,
    }
    text = dumps(value, accelerated=accelerated)
    outputs = [
        loads(raw, accelerated=accelerated, max_workers=max_workers)
        for raw in (text, text.encode())
    ]
    for out in outputs:
        np.testing.assert_array_equal(out["arrays"][0], value["arrays"][0])
        assert out["arrays"][1].dtype == np.dtype(">f4")
        assert out["objects"][0] == {"a": {1: 2}} and out["objects"][1] == [1, 2]
        assert out["tags"] == value["tags"] and out["counts"] == {3: {4: 5}}
        assert out["unknown"] == {"__type__": "Other", "__value__": 1}
        assert math.isnan(out["nan"])


@pytest.mark.parametrize(
    "number", [2**64, -(2**63) - 1, 10**30, -(10**40), 2**127 - 1], ids=lambda n: f"{n:.0e}"
)
def test_integers_beyond_64_bits_stay_exact(accelerated: bool, number: int) -> None:
    # Some fast JSON parsers silently turn these into floats; a result must never change.
    value = {"outcomes": [number, number + 1], "key": {number: "x"}}
    text = dumps(value, accelerated=accelerated)
    for raw in (text, text.encode()):
        out = loads(raw, accelerated=accelerated)
        assert out == value
        assert all(type(item) is int for item in out["outcomes"])


@pytest.mark.parametrize(
    "text",
    [
        '{"slept": 0.3}',
        '{"a": [1, 2.5, "x", null, true], "b": {"c": NaN, "d": -Infinity}}',
        ' {"a": 1}',  # whitespace around the document
        '{"a": 1}\n',
        "[1, 2]",
        '"text"',
        "{}",
    ],
)
def test_plain_documents_parse_exactly_like_json(text: str) -> None:
    """The small-document shortcut (the scanner alone) gives what ``json.loads`` gives."""
    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ['{"a": 1} x', '{"a": 1}{"b": 2}', '{"a": ', "{", '{"a" 1}'])
def test_plain_documents_fail_exactly_like_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as plain:
        json.loads(text)
    assert (ours.value.msg, ours.value.pos) == (plain.value.msg, plain.value.pos)
