"""Validation of request bodies: pure functions from parsed JSON to clean values.

Every failure raises ValidationError naming the offending field.
"""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ledger.errors import ValidationError

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAX_INT = 2**53  # what every JSON reader can hold exactly

Check = Callable[[str, Any], Any]


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def uuid(name: str, value: Any) -> str:
    if not is_uuid(value):
        raise ValidationError(f"field {name!r} must be a UUID string like 0f4e...-....-....-....-............")
    return str(value).lower()


def uuid_list(name: str, value: Any, *, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError(f"field {name!r} must be a list of UUIDs")
    if not value and not allow_empty:
        raise ValidationError(f"field {name!r} must not be empty")
    result = [uuid(f"{name}[{i}]", item) for i, item in enumerate(value)]
    if len(set(result)) != len(result):
        raise ValidationError(f"field {name!r} lists the same UUID twice")
    return result


def uuid_or_list(name: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return uuid_list(name, value)
    return [uuid(name, value)]


def possibly_empty_uuid_list(name: str, value: Any) -> list[str]:
    return uuid_list(name, value, allow_empty=True)


def positive_int(name: str, value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_INT:
        raise ValidationError(f"field {name!r} must be a positive integer")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"field {name!r} must be a non-empty string")
    if len(value) > 1000:
        raise ValidationError(f"field {name!r} is longer than 1000 characters")
    return value


def finite(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"field {name!r} must be a finite number")
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ValidationError(f"field {name!r} is too large (limit 2**53)")
        return value
    if not math.isfinite(value):
        raise ValidationError(f"field {name!r} must be a finite number")
    return value


def status(name: str, value: Any) -> str:
    if value not in ("done", "failed"):
        raise ValidationError(f"field {name!r} must be 'done' or 'failed'")
    return str(value)


def perf_map(name: str, value: Any, keys: list[str]) -> dict[str, float | int]:
    """A mapping of each data uuid to a finite number; a list in the same order is accepted."""
    if isinstance(value, list):
        if len(value) != len(keys):
            raise ValidationError(f"field {name!r} must have {len(keys)} values, one per data, got {len(value)}")
        return {key: finite(f"{name}[{i}]", item) for i, (key, item) in enumerate(zip(keys, value, strict=True))}
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            clean_key = uuid(f"{name} key", key)
            if clean_key in cleaned:
                raise ValidationError(f"field {name!r} names data {clean_key} twice")
            cleaned[clean_key] = finite(f"{name}[{key}]", item)
        if sorted(cleaned) != sorted(keys):
            raise ValidationError(f"field {name!r} must map exactly the learnuplet's data uuids {keys}")
        return {key: cleaned[key] for key in keys}
    raise ValidationError(f"field {name!r} must be an object mapping data uuids to numbers, or a list")


def fields(body: Any, required: Mapping[str, Check], optional: Mapping[str, Check] | None = None) -> dict[str, Any]:
    """Check that body is an object with exactly these fields; return the cleaned values."""
    optional = optional or {}
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    extra = body.keys() - required.keys()
    if extra and optional:
        extra -= optional.keys()
    if extra:
        raise ValidationError(f"unknown field {sorted(extra)[0]!r}; expected {sorted({**required, **optional})}")
    for name in required:
        if name not in body:
            raise ValidationError(f"missing field {name!r}")
    cleaned = {name: check(name, body[name]) for name, check in required.items()}
    for name, check in optional.items():
        if name in body:
            cleaned[name] = check(name, body[name])
    return cleaned


def require(cleaned: Mapping[str, Any], names: tuple[str, ...], condition: str) -> None:
    """Raise ValidationError for the first of names missing from cleaned (required on condition)."""
    for name in names:
        if name not in cleaned:
            raise ValidationError(f"missing field {name!r} (required {condition})")
