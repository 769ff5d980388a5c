"""ResultDecoder, LenientResultDecoder, the program defaults and the choice rule."""

from __future__ import annotations

import importlib.util
import json
import math
from typing import Any

import numpy as np
import pytest

from runtime_job import decoders
from runtime_job.codec import SettingsRegistry, dumps
from runtime_job.decoders import (
    DEFAULT_DECODERS,
    EstimatorResultDecoder,
    LenientResultDecoder,
    ResultDecoder,
    RunnerResult,
    SamplerResultDecoder,
    resolve_decoders,
)
from runtime_job.exceptions import IBMRuntimeError, ResultDecodingError

NOT_JSON = "Traceback (most recent call last):\n  File 'program.py', line 3\nValueError: boom"


class TestResultDecoder:
    def test_decodes_runtime_json(self) -> None:
        out = ResultDecoder.decode(dumps({"values": np.arange(3), "counts": {1: 5}}))
        np.testing.assert_array_equal(out["values"], np.arange(3))
        assert out["counts"] == {1: 5}

    def test_accepts_bytes(self) -> None:
        assert ResultDecoder.decode(b'{"a": [1, 2]}') == {"a": [1, 2]}

    def test_json_scalars(self) -> None:
        assert ResultDecoder.decode("42") == 42
        assert ResultDecoder.decode('"text"') == "text"
        assert ResultDecoder.decode("null") is None

    def test_not_json_is_an_error_with_an_excerpt(self) -> None:
        with pytest.raises(ResultDecodingError) as info:
            ResultDecoder.decode(NOT_JSON)
        err = info.value
        assert isinstance(err, IBMRuntimeError)
        assert "not valid JSON" in err.message and "line 1 column 1" in err.message
        assert err.excerpt == NOT_JSON
        assert err.job_id is None
        assert isinstance(err.__cause__, json.JSONDecodeError)

    def test_excerpt_is_short(self) -> None:
        with pytest.raises(ResultDecodingError) as info:
            ResultDecoder.decode("x" * 10_000)
        assert len(info.value.excerpt) <= 203 and info.value.excerpt.endswith("...")

    def test_empty_payload_is_an_error(self) -> None:
        with pytest.raises(ResultDecodingError, match="not valid JSON"):
            ResultDecoder.decode("")

    def test_invalid_utf8_is_an_error(self) -> None:
        with pytest.raises(ResultDecodingError, match="not valid JSON") as info:
            ResultDecoder.decode(b"\xff\xfe\xfa\xfb")
        assert info.value.excerpt  # replacement characters, not a crash

    def test_codec_errors_get_the_excerpt(self) -> None:
        payload = '{"__type__": "ndarray", "__value__": "AAAA"}'
        with pytest.raises(ResultDecodingError) as info:
            ResultDecoder.decode(payload)
        assert info.value.excerpt

    def test_none_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="ResultDecoder.decode expects str or bytes"):
            ResultDecoder.decode(None)  # type: ignore[arg-type]

    def test_job_can_re_raise_with_its_id(self) -> None:
        try:
            ResultDecoder.decode(NOT_JSON)
        except ResultDecodingError as err:
            wrapped = ResultDecodingError(
                f"Could not decode job abc: {err.message}", job_id="abc", excerpt=err.excerpt
            )
        assert wrapped.job_id == "abc" and wrapped.excerpt == NOT_JSON

    def test_subclass_calls_super(self) -> None:
        class Doubled(ResultDecoder):
            @classmethod
            def decode(cls, raw: str | bytes) -> Any:
                return 2 * super().decode(raw)

        assert Doubled.decode("21") == 42

    def test_subclass_tunes_the_decompression_cap(self) -> None:
        class Small(ResultDecoder):
            max_decompressed_size = 1000

        payload = dumps(np.zeros(1000))
        assert ResultDecoder.decode(payload).shape == (1000,)
        with pytest.raises(ResultDecodingError, match="max_decompressed_size"):
            Small.decode(payload)

    def test_subclass_brings_its_settings_registry(self) -> None:
        class Point:
            def __init__(self, x: int) -> None:
                self.x = x

            @property
            def settings(self) -> dict[str, int]:
                return {"x": self.x}

        class WithPoints(ResultDecoder):
            settings_registry = SettingsRegistry([Point])

        assert WithPoints.decode(dumps(Point(4))).x == 4
        with pytest.warns(UserWarning, match="not registered"):
            assert isinstance(ResultDecoder.decode(dumps(Point(4))), dict)


class TestLenientResultDecoder:
    def test_not_json_is_returned_unchanged(self) -> None:
        assert LenientResultDecoder.decode(NOT_JSON) is NOT_JSON
        raw = b"plain bytes"
        assert LenientResultDecoder.decode(raw) is raw
        assert LenientResultDecoder.decode(b"\xff\xfe") == b"\xff\xfe"
        assert LenientResultDecoder.decode("") == ""

    def test_json_is_decoded(self) -> None:
        assert LenientResultDecoder.decode(dumps({"z": 1j})) == {"z": 1j}

    def test_broken_tagged_values_still_raise(self) -> None:
        with pytest.raises(ResultDecodingError):
            LenientResultDecoder.decode('{"__type__": "ndarray", "__value__": "AAAA"}')

    def test_none_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            LenientResultDecoder.decode(None)  # type: ignore[arg-type]


class _ForeignDecoder:
    """A decoder of another library (the reference's shape): only a ``decode`` classmethod."""

    seen: list[Any] = []

    @classmethod
    def decode(cls, data: str) -> Any:
        cls.seen.append(data)
        return {"foreign": json.loads(data)}


class _ForeignFinal:
    @staticmethod
    def decode(data: str) -> Any:
        return ("final", data)


class _InstanceDecode:
    def decode(self, data: str) -> Any:
        return data


class TestDuckTypedDecoders:
    """Any class with a ``decode`` classmethod is a decoder (the reference passes its own)."""

    def test_a_foreign_class_is_accepted_and_gets_text(self) -> None:
        _ForeignDecoder.seen.clear()
        interim, final = resolve_decoders(_ForeignDecoder, "sampler")
        assert interim is final and issubclass(final, ResultDecoder)
        assert final.__wrapped__ is _ForeignDecoder  # type: ignore[attr-defined]
        assert final.decode(b'{"a": 1}') == {"foreign": {"a": 1}}
        assert final.decode('{"b": 2}') == {"foreign": {"b": 2}}
        assert _ForeignDecoder.seen == ['{"a": 1}', '{"b": 2}']  # bytes became text

    @pytest.mark.parametrize("container", [list, tuple])
    def test_a_list_or_tuple_of_foreign_classes(self, container: Any) -> None:
        interim, final = resolve_decoders(container([_ForeignDecoder, _ForeignFinal]), None)
        assert interim.decode("[1]") == {"foreign": [1]}
        assert final.decode("x") == ("final", "x")
        mixed = resolve_decoders([ResultDecoder, _ForeignFinal], None)
        assert mixed[0] is ResultDecoder

    def test_the_same_foreign_class_gives_the_same_adapter(self) -> None:
        assert (
            resolve_decoders(_ForeignDecoder, None)[0] is resolve_decoders(_ForeignDecoder, None)[0]
        )

    def test_bytes_that_are_not_utf8_are_a_decoding_error(self) -> None:
        _, final = resolve_decoders(_ForeignDecoder, None)
        with pytest.raises(ResultDecodingError, match="not UTF-8"):
            final.decode(b"\xff\xfe")


class TestResolveDecoders:
    def test_explicit_class(self) -> None:
        assert resolve_decoders(LenientResultDecoder, "sampler") == (
            LenientResultDecoder,
            LenientResultDecoder,
        )

    @pytest.mark.parametrize("container", [list, tuple])
    def test_pair(self, container: Any) -> None:
        pair = container([LenientResultDecoder, ResultDecoder])
        assert resolve_decoders(pair, None) == (LenientResultDecoder, ResultDecoder)

    def test_default_by_program(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(
            decoders,
            "DEFAULT_DECODERS",
            {"prog": LenientResultDecoder, "two": (ResultDecoder, LenientResultDecoder)},
        )
        assert resolve_decoders(None, "prog") == (LenientResultDecoder, LenientResultDecoder)
        assert resolve_decoders(None, "two") == (ResultDecoder, LenientResultDecoder)
        assert resolve_decoders(None, "other") == (ResultDecoder, ResultDecoder)
        assert resolve_decoders(None, None) == (ResultDecoder, ResultDecoder)

    @pytest.mark.parametrize("size", [0, 1, 3])
    def test_wrong_length(self, size: int) -> None:
        with pytest.raises(ValueError, match=f"sequence of {size}"):
            resolve_decoders([ResultDecoder] * size, None)

    @pytest.mark.parametrize(
        "bad",
        [ResultDecoder(), dict, "ResultDecoder", 42, [ResultDecoder, dict], (len, ResultDecoder)],
        ids=["instance", "other-class", "string", "int", "pair-with-class", "pair-with-function"],
    )
    def test_not_a_decoder(self, bad: Any) -> None:
        with pytest.raises(TypeError, match="must be a ResultDecoder subclass") as info:
            resolve_decoders(bad, None)
        assert "not " in str(info.value)

    @pytest.mark.parametrize(
        "bad",
        [bytes, _InstanceDecode, _ForeignDecoder()],
        ids=["bytes-method", "instance-method", "foreign-instance"],
    )
    def test_decode_must_be_a_classmethod(self, bad: Any) -> None:
        with pytest.raises(TypeError, match="must be a ResultDecoder subclass") as info:
            resolve_decoders(bad, None)
        assert "not " in str(info.value)


class TestDefaultDecoders:
    def test_read_only(self) -> None:
        with pytest.raises(TypeError):
            DEFAULT_DECODERS["x"] = ResultDecoder  # type: ignore[index]

    def test_entries_follow_qiskit(self) -> None:
        if importlib.util.find_spec("qiskit") is None:
            assert dict(DEFAULT_DECODERS) == {}
        else:
            assert DEFAULT_DECODERS["sampler"] == (ResultDecoder, SamplerResultDecoder)
            assert DEFAULT_DECODERS["estimator"] == (ResultDecoder, EstimatorResultDecoder)
            assert resolve_decoders(None, "sampler") == (ResultDecoder, SamplerResultDecoder)
            assert DEFAULT_DECODERS["circuit-runner"] is RunnerResult
            assert DEFAULT_DECODERS["qasm3-runner"] is RunnerResult

    def test_without_qiskit_there_are_no_entries(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
        assert dict(decoders._default_decoders()) == {}

    def test_primitive_decoders_fall_back_to_dicts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(decoders, "_primitive_result_classes", lambda *names: None)
        payload = dumps({"quasi_dists": [{0: 1.0}], "metadata": [{}], "values": [1.0]})
        assert SamplerResultDecoder.decode(payload)["quasi_dists"] == [{0: 1.0}]
        assert EstimatorResultDecoder.decode(payload)["values"] == [1.0]


class TestPrimitiveDecoders:
    @pytest.fixture(autouse=True)
    def _qiskit(self) -> None:
        pytest.importorskip("qiskit.primitives")

    def test_sampler(self) -> None:
        from qiskit.primitives import SamplerResult
        from qiskit.result import QuasiDistribution

        payload = dumps(
            {
                "quasi_dists": [{0: 0.5, 3: 0.5}, {1: 1.0}],
                "metadata": [{"shots": 400, "readout_mitigation_overhead": 4.0}, {}],
            }
        )
        out = SamplerResultDecoder.decode(payload)
        assert isinstance(out, SamplerResult)
        first, second = out.quasi_dists
        assert isinstance(first, QuasiDistribution) and dict(first) == {0: 0.5, 3: 0.5}
        assert first.shots == 400 and first.stddev_upper_bound == pytest.approx(0.1)
        assert second.shots == math.inf and second.stddev_upper_bound == 0.0
        assert out.metadata[0]["shots"] == 400

    def test_estimator(self) -> None:
        from qiskit.primitives import EstimatorResult

        out = EstimatorResultDecoder.decode(
            dumps({"values": np.array([0.5, -1.0]), "metadata": [{"variance": 0.1}, {}]})
        )
        assert isinstance(out, EstimatorResult)
        np.testing.assert_array_equal(out.values, [0.5, -1.0])
        assert out.metadata == [{"variance": 0.1}, {}]

    @pytest.mark.parametrize("decoder", [SamplerResultDecoder, EstimatorResultDecoder])
    def test_wrong_shape_is_a_decoding_error(self, decoder: type[ResultDecoder]) -> None:
        with pytest.raises(ResultDecodingError, match="not an? (sampler|estimator) result") as info:
            decoder.decode('{"something": "else"}')
        assert info.value.excerpt == '{"something": "else"}'

    def test_interim_results_stay_plain(self) -> None:
        interim, final = resolve_decoders(None, "sampler")
        assert interim.decode('{"iteration": 1}') == {"iteration": 1}
        assert final is SamplerResultDecoder


class TestRunnerResult:
    """Our decoder of circuit-runner results: a qiskit Result with get_quasiprobabilities."""

    @pytest.fixture(autouse=True)
    def _qiskit(self) -> None:
        pytest.importorskip("qiskit.result")

    @staticmethod
    def payload(**data: Any) -> str:
        return dumps(
            {
                "backend_name": "local_simulator",
                "backend_version": "0.1.0",
                "qobj_id": "q",
                "job_id": "j",
                "success": True,
                "results": [
                    {
                        "shots": 100,
                        "success": True,
                        "data": {"counts": {"0x0": 40, "0x3": 60}, **data},
                        "header": {
                            "name": "bell",
                            "memory_slots": 2,
                            "creg_sizes": [["c", 2]],
                            "final_measurement_mapping": [0, 1],
                        },
                    }
                ],
            }
        )

    def test_decodes_a_result(self) -> None:
        from qiskit.result import Result

        out = RunnerResult.decode(self.payload(memory=["0x3", "0x0"]))
        assert isinstance(out, Result) and type(out).__name__ == "RunnerResult"
        assert out.get_counts() == {"00": 40, "11": 60}
        assert out.get_memory() == ["11", "00"]

    def test_quasiprobabilities(self) -> None:
        from qiskit.exceptions import QiskitError

        out = RunnerResult.decode(self.payload(quasiprobabilities={"0x0": 0.4, "0x3": 0.6}))
        assert dict(out.get_quasiprobabilities()) == {0: 0.4, 3: 0.6}
        with pytest.raises(QiskitError, match="No quasi-probability"):
            RunnerResult.decode(self.payload()).get_quasiprobabilities()

    def test_not_a_result_is_a_decoding_error(self) -> None:
        with pytest.raises(ResultDecodingError, match="not a circuit-runner result"):
            RunnerResult.decode('{"results": 3}')

    def test_without_qiskit_the_dict_is_returned(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(decoders, "_runner_result_class", lambda: None)
        assert RunnerResult.decode(self.payload())["backend_name"] == "local_simulator"
