"""canonical.parse_body: its orjson fast path gives exactly what the strict json-module parse
gives (the same value, of the same types, or the same refusal), on arbitrary and tricky bodies."""

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.errors import ValidationError


def outcome(parse, body: bytes) -> tuple[str, object]:
    try:
        return "ok", _typed(parse(body))
    except ValidationError as e:
        return "refused", e.message


def _typed(value: object) -> object:
    """The value with every number's type (and a float's bits, so that -0.0 differs from 0.0)."""
    if isinstance(value, dict):
        return {"dict": [(k, _typed(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [_typed(v) for v in value]}
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    return (type(value).__name__, value)


def same(body: bytes) -> None:
    assert outcome(canonical.parse_body, body) == outcome(canonical._parse_strict, body), body


TRICKY = [
    b'{"a": 1, "a": 2}', b'{"a": {"b": 1, "b": 1}}', b'[{"x": 1}, {"x": 1, "x": 2}]', b'{"a:b": 1}',
    b'{"a": "x:y", "b": 1}', b'{"a": "x:y"}', b'{"": 1, "": 2}', b"{}", b"[]", b'""', b"0", b"-0", b"-0.0",
    b"1e400", b"-1e400", b"1e-400", b"1E2", b"18446744073709551615", b"18446744073709551616",
    b"-9223372036854775808", b"-9223372036854775809", b"9223372036854775807", b"9223372036854775808",
    b"[1.7976931348623157e308]", b"[1.7976931348623159e308]", b"1e19", b"-1e19", b"9.3e18",
    b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud83d\\ude00"', b'{"k\\ud800": 1}', b"\xef\xbb\xbf{}",
    b" {} ", b"{}\n", b"\x0c{}", b"{}\x0b", b"NaN", b"[Infinity]", b"-Infinity", b'{"a": NaN}',
    b'"\x01"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\xff"', b'"\xef\xbf\xbe"', b"", b" ", b"[1,]", b"{,}",
    b"1" * 5000, b"[" * 2000 + b"]" * 2000, b'{"a": [' + b"1.5," * 100 + b"2]}", b"01", b"1.", b".5",
    b'{"status": "done", "perf": 0.91, "train_perf": [0.95, 0.93], "test_perf": [0.91]}',
]


@pytest.mark.parametrize("body", TRICKY)
def test_tricky_bodies(body: bytes) -> None:
    same(body)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_values(value: object) -> None:
    same(json.dumps(value, ensure_ascii=False).encode())
    same(json.dumps(value).encode())


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a:b", ""]), st.integers(0, 3)), max_size=5))
def test_duplicate_keys(pairs: list[tuple[str, int]]) -> None:
    body = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"
    same(body.encode())


DIGITS = st.text("0123456789", min_size=1, max_size=25)
NUMBER = st.builds(
    lambda sign, whole, frac, exp: sign + (whole.lstrip("0") or "0") + frac + exp,
    st.sampled_from(["", "-"]),
    DIGITS,
    st.one_of(st.just(""), DIGITS.map(lambda d: "." + d)),
    st.one_of(st.just(""), st.builds(lambda e, s, n: f"{e}{s}{n}", st.sampled_from("eE"),
                                     st.sampled_from(["", "+", "-"]), st.integers(0, 400))),
)


@settings(max_examples=500, deadline=None)
@given(NUMBER)
def test_numbers(text: str) -> None:
    same(f"[{text}]".encode())
    if math.isfinite(float(text)):
        same(f'{{"n": {text}}}'.encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_arbitrary_bytes(body: bytes) -> None:
    same(body)
    same(b'{"a": "' + body + b'"}')
