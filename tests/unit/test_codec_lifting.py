"""Long ``__value__`` literals lifted out before parsing: results must not change at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_job import codec
from runtime_job.codec import dumps, loads


@pytest.fixture
def lift_small(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Lift even short literals, and record what each lifting attempt returned."""
    monkeypatch.setattr(codec, "_LIFT_MIN_CHARS", 8)
    monkeypatch.setattr(codec, "_LIFT_MIN_BYTES_PER_QUOTE", 1)
    calls: list[Any] = []
    original = codec._lift_blobs

    def spy(text: str | bytes) -> Any:
        result = original(text)
        calls.append(result)
        return result

    monkeypatch.setattr(codec, "_lift_blobs", spy)
    yield calls


def lifted(calls: list[Any]) -> bool:
    return any(result is not None for result in calls)


@pytest.mark.parametrize("kind", ["str", "bytes"])
@pytest.mark.parametrize("max_workers", [1, 2])
def test_arrays_decode_from_lifted_literals(
    lift_small: list[Any], kind: str, max_workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "_PARALLEL_MIN_CHARS", 256)
    value = {"a": np.arange(1000.0), "b": [np.eye(4, dtype=">i2")], "c": {1: "x"}, "θ": "é"}
    text = dumps(value)
    out = loads(text if kind == "str" else text.encode(), max_workers=max_workers)
    assert lifted(lift_small)
    np.testing.assert_array_equal(out["a"], value["a"])
    assert out["b"][0].dtype == np.dtype(">i2")
    assert out["c"] == {1: "x"} and out["θ"] == "é"


@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_lifted_values_that_are_not_arrays_come_back_as_text(
    lift_small: list[Any], kind: str
) -> None:
    document = {
        "user": {"__value__": "a long plain string value"},
        "unknown": {"__type__": "Martian", "__value__": "another long string"},
        "to_json": {"__type__": "to_json", "__value__": "text from to_json()"},
        "set": {"__type__": "set", "__value__": ["xx"]},
    }
    text = json.dumps(document)
    out = loads(text if kind == "str" else text.encode())
    assert lifted(lift_small)
    assert out == {
        "user": {"__value__": "a long plain string value"},
        "unknown": {"__type__": "Martian", "__value__": "another long string"},
        "to_json": "text from to_json()",
        "set": {"xx"},
    }


@pytest.mark.parametrize(
    "text",
    [
        # "__value__" inside a string value, with escaped quotes: not a key.
        '{"a": "x \\"__value__\\": \\"not lifted at all\\" y"}',
        # A key that ends in an escaped quote before __value__.
        '{"\\"__value__": "the key is quote-__value__"}',
        # A key ending in an escaped backslash: the quote after it is real.
        '{"__value__\\\\": "backslash key value here", "k": "__value__"}',
        # Escapes inside the long value: left to json.
        '{"__value__": "line one\\nline two \\u00e9 and more"}',
        # Whitespace around the colon, and nesting.
        '[{"__value__"  :\n  "spaced out long value"}, {"__value__":"tight long value"}]',
        # Non-ASCII around lifted literals.
        '{"κλειδί": "τιμή", "__value__": "plain ascii long value", "z": "ζ"}',
    ],
)
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_tricky_documents_parse_exactly_like_json(
    lift_small: list[Any], text: str, kind: str
) -> None:
    raw: str | bytes = text if kind == "str" else text.encode()
    assert loads(raw) == json.loads(text)


def test_errors_point_into_the_original_document(lift_small: list[Any]) -> None:
    text = dumps({"a": np.arange(100.0)})[:-1] + ', "b": }'
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as plain:
        json.loads(text)
    assert lifted(lift_small)
    assert (ours.value.msg, ours.value.pos) == (plain.value.msg, plain.value.pos)


def test_unterminated_string_is_a_json_error(lift_small: list[Any]) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads('{"__value__": "never closed............')


def test_utf16_bytes_are_not_lifted(lift_small: list[Any]) -> None:
    text = '{"__value__": "a long plain string value"}'
    assert loads(text.encode("utf-16")) == json.loads(text)
    assert not lifted(lift_small)


def test_dense_quotes_skip_lifting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_LIFT_MIN_CHARS", 8)
    text = json.dumps({f"k{i}": "v" for i in range(100)} | {"__value__": "x" * 20})
    assert codec._lift_blobs(text) is None  # quotes far too dense: parse normally
    assert loads(text) == json.loads(text)


def test_large_documents_lift_by_default() -> None:
    text = dumps({"a": np.random.default_rng(0).random(100_000)})
    skeleton, _ = codec._lift_blobs(text) or (None, None)
    assert skeleton is not None and len(skeleton) < 200


_awkward_text = st.lists(
    st.sampled_from(
        ['"', "\\", ":", " ", "a", "é", "_", "\n", "{", "}", '"__value__"', "__value__", '\\"']
    ),
    max_size=12,
).map("".join)
_documents = st.recursive(
    st.none() | st.integers() | _awkward_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["__value__", "x", '"__value__', "__type__"]) | _awkward_text,
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=_documents, as_bytes=st.booleans())
def test_lifting_never_changes_a_document(document: Any, as_bytes: bool) -> None:
    text = json.dumps(document, ensure_ascii=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_LIFT_MIN_CHARS", 2)
        patch.setattr(codec, "_LIFT_MIN_BYTES_PER_QUOTE", 1)
        expected = loads(text, accelerated=False) if "__type__" in text else json.loads(text)
        with patch.context() as inner:
            inner.setattr(codec, "_LIFT_MIN_CHARS", 10**9)
            unlifted = loads(text)
        got = loads(text.encode() if as_bytes else text)
    assert got == unlifted
    if "__type__" not in text:
        assert got == expected
