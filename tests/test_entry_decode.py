"""entry.decode checks canonical form without encoding the entry again: it must accept and refuse
exactly what the reference (decode, then ``encode(entry) == raw``) does, with the same message."""

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.entry import Entry, SignedRequest, decode, encode
from ledger.errors import IntegrityError


def reference(raw: bytes) -> Entry:
    """decode as it was: build the entry, encode it again and compare."""
    try:
        doc = canonical.loads(raw)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        request = None
        if "method" in doc:
            headers = doc["headers"]
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise TypeError("field 'headers' is not an object of strings")
            request = SignedRequest(
                method=_typed(doc, "method", str),
                target=_typed(doc, "target", str),
                headers=dict(headers),
                body=base64.b64decode(_typed(doc, "body", str), validate=True),
            )
        genesis = doc.get("genesis")
        if genesis is not None and not isinstance(genesis, dict):
            raise TypeError("field 'genesis' is not an object")
        entry = Entry(
            seq=_typed(doc, "seq", int), time_ms=_typed(doc, "time", int), key_id=_typed(doc, "key", str),
            request=request, genesis=genesis, raw=raw,
        )
    except KeyError as e:
        raise IntegrityError(f"entry is not decodable: field {e} is missing") from e
    except (ValueError, TypeError) as e:
        raise IntegrityError(f"entry is not decodable: {e}") from e
    if encode(entry) != raw:
        raise IntegrityError("entry bytes are not in canonical form")
    return entry


def _typed(doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {name!r} is not a {'number' if kind is int else 'string'}")
    return value


def verdict(decoder, raw: bytes) -> object:
    try:
        entry = decoder(raw)
    except IntegrityError as e:
        return ("refused", e.message)
    return ("ok", entry, entry.raw, entry.time_s)


def same(raw: bytes) -> None:
    assert verdict(decode, raw) == verdict(reference, raw), raw


REQUEST = {
    "v": 1, "seq": 5, "time": 1700000000123, "key": "admin", "method": "POST", "target": "http://x/data",
    "headers": {"content-digest": "sha-256=:x:", "signature": "s=:AA==:", "signature-input": 's=("@method")'},
    "body": base64.b64encode(b'{"uuid": "a"}').decode(),
}
GENESIS = {"v": 1, "seq": 0, "time": 1700000000000, "key": "origin", "genesis": {"origin": "o", "members": []}}

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4),
    st.just({}), st.just({"a": "b"}), st.just({"a": 1}), st.just([]), st.just("QUJD"), st.just("QUJD="),
    st.just("QUI="), st.just("QUJ="), st.just("====")
)
FIELDS = st.sampled_from(["v", "seq", "time", "key", "method", "target", "headers", "body", "genesis", "extra"])


BOTH = {**REQUEST, "genesis": {"origin": "o"}}


@pytest.mark.parametrize("doc", [REQUEST, GENESIS, BOTH, {**GENESIS, "genesis": None}])
def test_canonical_entries(doc: dict[str, Any]) -> None:
    raw = canonical.dumps(doc)
    same(raw)
    same(orjson.dumps(doc))  # keys not sorted
    same(raw.replace(b",", b", ", 1))
    same(raw + b"\n")


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([REQUEST, GENESIS]), st.lists(st.tuples(FIELDS, VALUES | st.just("<drop>")), max_size=3))
def test_mutated_entries(base: dict[str, Any], changes: list[tuple[str, object]]) -> None:
    doc = dict(base)
    for name, value in changes:
        if value == "<drop>":
            doc.pop(name, None)
        else:
            doc[name] = value
    same(canonical.dumps(doc))
    same(orjson.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bodies(body: bytes) -> None:
    for text in (base64.b64encode(body).decode(), base64.b64encode(body).decode().rstrip("=")):
        same(canonical.dumps({**REQUEST, "body": text}))
