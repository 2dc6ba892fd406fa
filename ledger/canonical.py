"""Canonical encodings and strict JSON parsing.

Canonical JSON here is orjson with sorted keys and no whitespace. Every value
the ledger stores or hashes goes through :func:`dumps`, so the same value always
has the same bytes, in every process.
"""

import json
import math
import re
from typing import Any

import orjson

from ledger.errors import ValidationError


def dumps(value: Any) -> bytes:
    """Canonical bytes of a JSON value (sorted keys, compact, UTF-8)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes) -> Any:
    """Decode bytes previously produced by :func:`dumps`."""
    return orjson.loads(data)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValidationError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValidationError(f"number {text[:40]} is not a finite double")
    return value


def _reject_constant(name: str) -> Any:
    raise ValidationError(f"non-finite number {name} is not allowed")


def parse_body(body: bytes) -> Any:
    """Parse a request body strictly.

    Raises ValidationError for non-UTF-8 bytes, malformed JSON, duplicate keys,
    NaN/Infinity and numbers that overflow a double.

    orjson parses first (several times faster than the json module with hooks); its value is
    taken only when the strict parse would give the same one, else the strict parse decides
    (and words any refusal). orjson refuses invalid UTF-8, NaN/Infinity, numbers that overflow
    a double and lone surrogate escapes, as the strict parse does; what it accepts and the
    strict parse would not, or reads differently, is caught by :func:`_same_as_strict`.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _parse_strict(body)
    if _same_as_strict(value, body.count(b":")):
        return value
    return _parse_strict(body)


_BIG = float(2**63)


def _same_as_strict(value: Any, colons: int) -> bool:
    """Whether orjson's value of a text with that many ':' bytes is the strict parse's too.

    Two differences remain once orjson accepted a text: it keeps the last of duplicate keys
    (the strict parse refuses them), and it reads an integer beyond 64 bits as a float (the
    strict parse as an int). Outside strings a ':' separates a key from its value, once per
    key in the text, so keys that went missing (duplicates) leave fewer keys in the value than
    ':' bytes; a ':' inside a string also leaves more, and takes the strict path. Such an
    integer becomes a float of magnitude 2**63 or more, which any float that large takes too.
    """
    keys = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            keys += len(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and not -_BIG < item < _BIG:
            return False
    return keys == colons


def _parse_strict(body: bytes) -> Any:
    """parse_body through the json module with strict hooks (it words every refusal)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"body is not UTF-8: {e.reason} at byte {e.start}") from e
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as e:
        raise ValidationError(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise ValidationError("body JSON is nested too deeply") from e
    except ValueError as e:  # an integer literal longer than Python allows
        raise ValidationError("body is not acceptable JSON: an integer literal is too long") from e
    where = _lone_surrogate(value, "body") if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        raise ValidationError(f"{where} holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode text")
    return value


# Text decoded from UTF-8 holds no surrogates; only \\uD800-\\uDFFF escapes can make them.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The place of a string with an unpaired surrogate in parsed JSON, or None (iterative: any depth)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(item, list):
            stack.extend((element, f"{where}[{i}]") for i, element in enumerate(item))
        elif isinstance(item, dict):
            for key, element in item.items():
                stack.append((key, f"a key of {where}"))
                stack.append((element, f"field {key!r}"))
    return None
