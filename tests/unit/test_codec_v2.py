"""V2 primitive results (platform.md section 7): qiskit's classes with qiskit, plain data without.

"Without qiskit" is simulated two ways: the codec's own switch (``qiskit_results=False``), and
qiskit made unimportable (``sys.modules``), which the default (``None``) must notice.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import sys
import zlib
from typing import Any

import numpy as np
import pytest

from runtime_job.codec import decode_value, dumps, loads
from runtime_job.exceptions import ResultDecodingError
from runtime_job.v2 import ExecutionSpan, ExecutionSpans, bitarray_counts


def nd(array: Any) -> dict[str, Any]:
    """An ``ndarray`` tag as the platform writes it: base64 of zlib of ``.npy`` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
    return {"__type__": "ndarray", "__value__": value}


def tag(name: str, value: Any) -> dict[str, Any]:
    return {"__type__": name, "__value__": value}


# 4 shots of 2 bits: 0b11, 0b00, 0b11, 0b01 (big-endian packed, one byte per shot)
SHOTS = np.array([[3], [0], [3], [1]], dtype=np.uint8)
START = "2026-03-01T12:00:27+00:00"
STOP = "2026-03-01T12:00:29.500000+00:00"


def sampler_result() -> dict[str, Any]:
    bits = tag("BitArray", {"array": nd(SHOTS), "num_bits": 2})
    data = tag("DataBin", {"field_names": ["meas"], "shape": [], "fields": {"meas": bits}})
    pub = tag("SamplerPubResult", {"data": data, "metadata": {"circuit_metadata": {}}})
    span = tag(
        "DoubleSliceSpan",
        {
            "start": tag("datetime", START),
            "stop": tag("datetime", STOP),
            "data_slices": {"0": [[1, 4], 0, 1, 0, 4]},
        },
    )
    spans = tag("ExecutionSpans", {"spans": [span]})
    return tag(
        "PrimitiveResult",
        {"pub_results": [pub], "metadata": {"execution": {"execution_spans": spans}, "version": 2}},
    )


def estimator_result() -> dict[str, Any]:
    fields = {
        "evs": nd(np.array([0.5, -0.25])),
        "stds": nd(np.array([0.01, 0.02])),
        "ensemble_standard_error": nd(np.array([0.011, 0.021])),
    }
    data = tag(
        "DataBin",
        {"field_names": ["evs", "stds", "ensemble_standard_error"], "shape": [2], "fields": fields},
    )
    pub = tag("PubResult", {"data": data, "metadata": {"target_precision": 0.01, "shots": 10000}})
    return tag("PrimitiveResult", {"pub_results": [pub], "metadata": {"version": 2}})


class TestPlain:
    """``qiskit_results=False``: dicts and numpy arrays, as docs/decoders.md documents."""

    def test_sampler_result(self) -> None:
        out = loads(json.dumps(sampler_result()), qiskit_results=False)
        assert set(out) == {"pub_results", "metadata"}
        pub = out["pub_results"][0]
        assert pub["metadata"] == {"circuit_metadata": {}}
        meas = pub["data"]["meas"]
        assert meas["num_bits"] == 2
        np.testing.assert_array_equal(meas["array"], SHOTS)
        assert meas["array"].dtype == np.uint8
        assert bitarray_counts(meas) == {"00": 1, "01": 1, "11": 2}

    def test_spans(self) -> None:
        out = loads(json.dumps(sampler_result()), qiskit_results=False)
        spans = out["metadata"]["execution"]["execution_spans"]
        assert isinstance(spans, ExecutionSpans) and len(spans) == 1
        span = spans[0]
        assert isinstance(span, ExecutionSpan) and span.kind == "DoubleSliceSpan"
        assert span.start == datetime.datetime(2026, 3, 1, 12, 0, 27, tzinfo=datetime.UTC)
        assert span.duration == 2.5 and spans.duration == 2.5
        assert span.data_slices == {0: ((1, 4), 0, 1, 0, 4)}
        assert span.pub_idxs == [0] and span.contains_pub(0) and not span.contains_pub(1)
        assert len(spans.filter_by_pub(1)) == 0 and spans.filter_by_pub([1, 0]) == spans

    def test_estimator_result(self) -> None:
        out = loads(json.dumps(estimator_result()), qiskit_results=False)
        data = out["pub_results"][0]["data"]
        assert list(data) == ["evs", "stds", "ensemble_standard_error"]
        np.testing.assert_array_equal(data["evs"], [0.5, -0.25])
        assert out["pub_results"][0]["metadata"]["shots"] == 10000

    def test_decode_value_is_the_same(self) -> None:
        out = decode_value(sampler_result(), qiskit_results=False)
        assert bitarray_counts(out["pub_results"][0]["data"]["meas"]) == {"00": 1, "01": 1, "11": 2}

    def test_bindings_array(self) -> None:
        value = {"shape": [2], "data": {'["a", "b"]': nd(np.array([[1.0, 2.0], [3.0, 4.0]]))}}
        out = loads(json.dumps(tag("BindingsArray", value)), qiskit_results=False)
        assert out["shape"] == (2,)
        np.testing.assert_array_equal(out["data"][("a", "b")], [[1.0, 2.0], [3.0, 4.0]])

    def test_unknown_and_pass_through_tags(self) -> None:
        doc = {
            "unknown": tag("NoSuchThing", {"x": 1}),
            "noise": tag("NoiseLearnerResult", {"data": [1]}),
            "json": tag("_json", {"a": 1}),
        }
        out = loads(json.dumps(doc), qiskit_results=False)
        assert out["unknown"] == tag("NoSuchThing", {"x": 1})
        assert out["noise"] == {"data": [1]} and out["json"] == {"a": 1}

    def test_ndarray_special_forms(self) -> None:
        doc = [
            tag("ndarray", "linear"),
            tag("ndarray", "polynomial_degree_3"),
            tag("ndarray", [1, 2]),
        ]
        out = loads(json.dumps(doc))
        assert out[0] == "linear" and out[1] == "polynomial_degree_3"
        np.testing.assert_array_equal(out[2], [1, 2])

    def test_pickled_ndarray_is_refused(self) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        value = base64.b64encode(zlib.compress(buffer.getvalue())).decode()
        with pytest.raises(ResultDecodingError, match="pickle"):
            loads(json.dumps(tag("BitArray", {"array": tag("ndarray", value), "num_bits": 1})))

    def test_malformed_payloads_raise(self) -> None:
        with pytest.raises(ResultDecodingError, match="DataBin"):
            loads(json.dumps(tag("DataBin", {"shape": []})), qiskit_results=False)
        with pytest.raises(ResultDecodingError, match="BitArray"):
            loads(json.dumps(tag("BitArray", {"array": nd(SHOTS)})), qiskit_results=False)
        with pytest.raises(ResultDecodingError, match="start"):
            loads(json.dumps(tag("SliceSpan", {"start": "never", "stop": STOP})))


class TestBitarrayCounts:
    def test_wide_registers_and_loc(self) -> None:
        # shape (2,) pub, 3 shots each, 10 bits: 2 bytes per shot, big-endian
        packed = np.zeros((2, 3, 2), dtype=np.uint8)
        packed[0, :, 1] = 1  # value 1
        packed[1, 0] = [0b11, 0xFF]  # value 1023
        bits = {"array": packed, "num_bits": 10}
        assert bitarray_counts(bits) == {"0000000000": 2, "0000000001": 3, "1111111111": 1}
        assert bitarray_counts(bits, loc=1) == {"0000000000": 2, "1111111111": 1}

    def test_extra_high_bits_are_masked(self) -> None:
        assert bitarray_counts({"array": np.array([[0xFF]], np.uint8), "num_bits": 3}) == {"111": 1}

    def test_not_a_bitarray(self) -> None:
        with pytest.raises(TypeError, match="BitArray"):
            bitarray_counts({"num_bits": 1})


class TestWithoutQiskit:
    def test_default_falls_back_to_plain_when_qiskit_is_missing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in [n for n in sys.modules if n == "qiskit" or n.startswith("qiskit.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "qiskit", None)
        out = loads(json.dumps(sampler_result()))
        assert isinstance(out, dict)
        assert bitarray_counts(out["pub_results"][0]["data"]["meas"]) == {"00": 1, "01": 1, "11": 2}

    def test_asking_for_qiskit_classes_without_qiskit_is_an_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "qiskit", None)
        monkeypatch.setitem(sys.modules, "qiskit.primitives", None)
        monkeypatch.setitem(sys.modules, "qiskit.primitives.containers", None)
        with pytest.raises(ResultDecodingError, match=r"runtime-job\[qiskit\]"):
            loads(json.dumps(sampler_result()), qiskit_results=True)

    def test_core_imports_and_decodes_in_a_process_without_qiskit(self) -> None:
        import subprocess

        code = (
            "import sys, json; sys.modules['qiskit'] = None\n"
            "from runtime_job.codec import loads\n"
            "from runtime_job.v2 import bitarray_counts\n"
            f"out = loads({json.dumps(json.dumps(sampler_result()))})\n"
            "print(json.dumps(bitarray_counts(out['pub_results'][0]['data']['meas'])))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"00": 1, "01": 1, "11": 2}


class TestWithQiskit:
    @pytest.fixture(autouse=True)
    def _qiskit(self) -> None:
        pytest.importorskip("qiskit")

    def test_sampler_result(self) -> None:
        from qiskit.primitives import BitArray, DataBin, PrimitiveResult, SamplerPubResult

        out = loads(json.dumps(sampler_result()))
        assert isinstance(out, PrimitiveResult)
        pub = out[0]
        assert isinstance(pub, SamplerPubResult) and isinstance(pub.data, DataBin)
        assert isinstance(pub.data.meas, BitArray)
        assert pub.data.meas.get_counts() == {"11": 2, "00": 1, "01": 1}
        assert bitarray_counts(pub.data.meas) == {"00": 1, "01": 1, "11": 2}
        assert pub.join_data().num_shots == 4
        assert isinstance(out.metadata["execution"]["execution_spans"], ExecutionSpans)

    def test_estimator_result(self) -> None:
        from qiskit.primitives import PubResult

        out = loads(json.dumps(estimator_result()))
        pub = out[0]
        assert type(pub) is PubResult and pub.data.shape == (2,)
        np.testing.assert_array_equal(pub.data.evs, [0.5, -0.25])
        assert pub.metadata["target_precision"] == 0.01

    def test_bindings_and_observables_arrays(self) -> None:
        from qiskit.primitives.containers import BindingsArray, ObservablesArray

        doc = {
            "b": tag("BindingsArray", {"shape": [2], "data": {'["a"]': nd([[1.0], [2.0]])}}),
            "o": tag("ObservablesArray", [{"ZZ": 1.0}, {"XI": 0.5}]),
        }
        out = loads(json.dumps(doc))
        assert isinstance(out["b"], BindingsArray) and out["b"].shape == (2,)
        assert isinstance(out["o"], ObservablesArray) and out["o"].shape == (2,)

    def test_switch_off_gives_plain_data_even_with_qiskit(self) -> None:
        out = loads(json.dumps(sampler_result()), qiskit_results=False)
        assert isinstance(out, dict)

    def test_large_bitarray_decoded_on_workers(self) -> None:
        shots = np.random.default_rng(1).integers(0, 256, size=(300_000, 2), dtype=np.uint8)
        doc = tag("BitArray", {"array": nd(shots), "num_bits": 16})
        out = loads(json.dumps(doc), max_workers=4)
        np.testing.assert_array_equal(out.array, shots)
        # a non-uint8 array is converted (read), after the workers are done
        doc = tag("BitArray", {"array": nd(shots.astype(np.int64)), "num_bits": 16})
        np.testing.assert_array_equal(loads(json.dumps(doc), max_workers=4).array, shots)

    def test_round_trip_of_our_own_encoding_of_arrays(self) -> None:
        text = dumps({"pub_results": [], "arr": np.arange(3)})
        assert loads(text)["arr"].tolist() == [0, 1, 2]


def test_a_decoder_class_can_ask_for_plain_results() -> None:
    from runtime_job.decoders import ResultDecoder

    class Plain(ResultDecoder):
        qiskit_results = False

    out = Plain.decode(json.dumps(sampler_result()))
    assert bitarray_counts(out["pub_results"][0]["data"]["meas"]) == {"00": 1, "01": 1, "11": 2}


def test_v1_program_decoders_pass_v2_results_through() -> None:
    pytest.importorskip("qiskit")
    from qiskit.primitives import PrimitiveResult

    from runtime_job.decoders import EstimatorResultDecoder, SamplerResultDecoder

    assert isinstance(SamplerResultDecoder.decode(json.dumps(sampler_result())), PrimitiveResult)
    assert isinstance(
        EstimatorResultDecoder.decode(json.dumps(estimator_result())), PrimitiveResult
    )

    class Plain(SamplerResultDecoder):
        qiskit_results = False

    assert "pub_results" in Plain.decode(json.dumps(sampler_result()))


def test_platform_modules_import_and_encode_without_qiskit() -> None:
    import subprocess

    code = (
        "import sys, json; sys.modules['qiskit'] = None\n"
        "import runtime_job, runtime_job.service\n"
        "from runtime_job.api.platform_client import PlatformClient\n"
        "from runtime_job.pubs import prepare_inputs\n"
        "from runtime_job import codec\n"
        "inputs = prepare_inputs('estimator', {'pubs': [({'__type__': 'QuantumCircuit', "
        "'__value__': 'eJw='}, 'ZZ', [0.5])]})\n"
        "print(codec.dumps(inputs['pubs'][0][1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ZZ": 1.0}
