"""Log entries and their canonical encoding.

An entry is what the ledger appends for one accepted transaction: the signed
HTTP request as received (method, target URI, the covered header fields, the
signature headers and the body), the key id, and the ledger-assigned sequence
number and time (Unix milliseconds). Entry 0 is the genesis instead of a
request. The encoding is canonical JSON; :func:`decode` refuses any bytes that
do not re-encode to themselves.
"""

import base64
from dataclasses import dataclass, field
from typing import Any

from ledger import canonical
from ledger.errors import IntegrityError
from ledger.merkle import leaf_hash as leaf_hash  # the entry's RFC 9162 leaf hash


@dataclass(frozen=True)
class SignedRequest:
    """An HTTP request exactly as the signature covers it."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names -> field values (covered fields + signature headers)
    body: bytes

    @property
    def path(self) -> str:
        rest = self.target.split("://", 1)[-1]
        slash = rest.find("/")
        path = rest[slash:] if slash >= 0 else "/"
        return path.split("?", 1)[0]


@dataclass(frozen=True)
class Entry:
    seq: int
    time_ms: int
    key_id: str
    request: SignedRequest | None = None
    genesis: dict[str, Any] | None = None
    raw: bytes = field(default=b"", compare=False)

    @property
    def time_s(self) -> int:
        """The entry time as the integer Unix seconds documents carry."""
        return self.time_ms // 1000

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"v": 1, "seq": self.seq, "time": self.time_ms, "key": self.key_id}
        if self.genesis is not None:
            doc["genesis"] = self.genesis
        if self.request is not None:
            doc["method"] = self.request.method
            doc["target"] = self.request.target
            doc["headers"] = self.request.headers
            doc["body"] = base64.b64encode(self.request.body).decode("ascii")
        return doc


def encode(entry: Entry) -> bytes:
    """Canonical bytes of an entry."""
    return canonical.dumps(entry.to_json())


_BASE = {"v", "seq", "time", "key"}
_REQUEST = {"method", "target", "headers", "body"}
#: The fields encode() writes, by (has a request, has a genesis).
_FIELDS = {
    (False, False): frozenset(_BASE),
    (False, True): frozenset(_BASE | {"genesis"}),
    (True, False): frozenset(_BASE | _REQUEST),
    (True, True): frozenset(_BASE | _REQUEST | {"genesis"}),
}
_new = object.__new__
_set = object.__setattr__


def decode(raw: bytes) -> Entry:
    """Parse entry bytes; raises IntegrityError if they are not canonical.

    Canonical means that the bytes are what :func:`encode` makes of the entry they decode to.
    Checked here without encoding it again: the bytes must be the canonical dump of the object
    they hold (whose fields are what encode writes, `v` being 1), and the body's base64 the
    canonical one of its bytes; encode then gives the same object, hence the same bytes.
    """
    try:
        doc = canonical.loads(raw)
        if type(doc) is not dict:
            raise TypeError("not a JSON object")
        request = None
        text, body = None, b""
        if "method" in doc:
            headers = doc["headers"]
            if type(headers) is not dict:
                raise TypeError("field 'headers' is not an object of strings")
            for value in headers.values():
                if type(value) is not str:
                    raise TypeError("field 'headers' is not an object of strings")
            method = _typed(doc, "method", str)
            target = _typed(doc, "target", str)
            text = _typed(doc, "body", str)
            body = base64.b64decode(text, validate=True)
            # As SignedRequest(method, target, dict(headers), body) would, without its frozen __init__.
            request = _new(SignedRequest)
            _set(request, "__dict__", {"method": method, "target": target, "headers": dict(headers), "body": body})
        genesis = doc.get("genesis")
        if genesis is not None and type(genesis) is not dict:
            raise TypeError("field 'genesis' is not an object")
        fields = {
            "seq": _typed(doc, "seq", int),
            "time_ms": _typed(doc, "time", int),
            "key_id": _typed(doc, "key", str),
            "request": request,
            "genesis": genesis,
            "raw": raw,
        }
    except KeyError as e:
        raise IntegrityError(f"entry is not decodable: field {e} is missing") from e
    except (ValueError, TypeError) as e:
        raise IntegrityError(f"entry is not decodable: {e}") from e
    if (
        doc.keys() != _FIELDS[request is not None, genesis is not None]
        or type(doc["v"]) is not int
        or doc["v"] != 1
        or (text is not None and base64.b64encode(body).decode("ascii") != text)
        or canonical.dumps(doc) != raw
    ):
        raise IntegrityError("entry bytes are not in canonical form")
    entry: Entry = _new(Entry)
    _set(entry, "__dict__", fields)  # as Entry(**fields), without its frozen __init__
    return entry


def _typed(doc: dict[str, Any], name: str, kind: type) -> Any:
    """doc[name], which must be of that JSON type (a bool is no number)."""
    value = doc[name]
    if type(value) is not kind:
        raise TypeError(f"field {name!r} is not a {'number' if kind is int else 'string'}")
    return value
