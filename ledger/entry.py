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


def decode(raw: bytes) -> Entry:
    """Parse entry bytes; raises IntegrityError if they are not canonical."""
    try:
        doc = canonical.loads(raw)
        request = None
        if "method" in doc:
            request = SignedRequest(
                method=doc["method"],
                target=doc["target"],
                headers=dict(doc["headers"]),
                body=base64.b64decode(doc["body"], validate=True),
            )
        entry = Entry(
            seq=doc["seq"],
            time_ms=doc["time"],
            key_id=doc["key"],
            request=request,
            genesis=doc.get("genesis"),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"entry is not decodable: {e}") from e
    if encode(entry) != raw:
        raise IntegrityError("entry bytes are not in canonical form")
    return entry
