"""What a node puts into etcd for a proposal, and the positions of ordered proposals.

Keys: ``<prefix><hex signature fingerprint>``, where the prefix names the ledger (its genesis
leaf hash), so that one etcd cluster can order several ledgers and an exact resend maps to the
key its first copy created.

Values: a compact, deterministic binary encoding of what the entry is built from: the proposing
node's clock reading, the key id and the signed request as the log keeps it::

    b"P1" | n8 proposed_ms | lp key_id | lp method | lp target | lp canonical JSON headers | lp body

(``lp`` is a 4-byte big-endian length, then the bytes). The nonce and fingerprint are not
stored: every node derives them from the signature, as the proposing node did.

Positions: ``n8 revision | n4 count``: every proposal of earlier revisions and the first `count`
proposals of `revision` (etcd's order within a transaction) have been applied. Positions compare
as bytes in etcd's order; :data:`EMPTY` (nothing applied) sorts first.
"""

import struct

from ledger import canonical, httpsig
from ledger.entry import SignedRequest
from ledger.errors import IntegrityError, LedgerError
from ledger.proposal import Proposal

MAGIC = b"P1"
EMPTY = b""
_LEN = struct.Struct(">I")
_REV = struct.Struct(">QI")
#: A count past any transaction's size: (revision, WHOLE) is "all of revision applied".
WHOLE = 0xFFFFFFFF


def prefix(genesis_leaf: bytes) -> bytes:
    """The etcd key prefix of a ledger's proposals."""
    return b"/orchestrator/" + genesis_leaf.hex().encode() + b"/p/"


def nodes_prefix(genesis_leaf: bytes) -> bytes:
    """The etcd key prefix of a ledger's node records (:mod:`ledger.applied`), beside its proposals."""
    return b"/orchestrator/" + genesis_leaf.hex().encode() + b"/n/"


def node_key(prefix_: bytes, node: str) -> bytes:
    """The key of one node's record, under :func:`nodes_prefix`."""
    return prefix_ + node.encode()


def key(prefix_: bytes, proposal: Proposal) -> bytes:
    return prefix_ + proposal.fingerprint.hex().encode()


def encode(proposal: Proposal, proposed_ms: int) -> bytes:
    request = proposal.request
    parts = [proposal.key_id.encode(), request.method.encode(), request.target.encode(),
             canonical.dumps(request.headers), request.body]
    return MAGIC + proposed_ms.to_bytes(8, "big") + b"".join(_LEN.pack(len(p)) + p for p in parts)


def decode(value: bytes) -> tuple[Proposal, int]:
    """(proposal, proposed_ms) of a stored value; raises IntegrityError when it is not one."""
    if value[:2] != MAGIC or len(value) < 10:
        raise IntegrityError("not a proposal value")
    proposed_ms = int.from_bytes(value[2:10], "big")
    parts: list[bytes] = []
    at = 10
    for _ in range(5):
        if at + 4 > len(value):
            raise IntegrityError("truncated proposal value")
        (size,) = _LEN.unpack_from(value, at)
        at += 4
        if at + size > len(value):
            raise IntegrityError("truncated proposal value")
        parts.append(value[at:at + size])
        at += size
    if at != len(value):
        raise IntegrityError("trailing bytes after a proposal value")
    try:
        key_id, method, target = (p.decode() for p in parts[:3])
        headers = canonical.loads(parts[3])
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError("headers are not an object of strings")
        if canonical.dumps(headers) != parts[3]:
            raise ValueError("headers are not canonical")
        request = SignedRequest(method, target, headers, parts[4])
        params = httpsig.signature_params(request)
    except (ValueError, LedgerError) as e:
        raise IntegrityError(f"undecodable proposal value: {e}") from e
    return Proposal(request, key_id, params.nonce, params.fingerprint), proposed_ms


def position(revision: int, count: int) -> bytes:
    return _REV.pack(revision, count)


def parse_position(raw: bytes) -> tuple[int, int]:
    """(revision, count); (0, 0) for EMPTY. Raises IntegrityError on anything else."""
    if raw == EMPTY:
        return 0, 0
    if len(raw) != _REV.size:
        raise IntegrityError(f"not an etcd position: {raw!r}")
    revision, count = _REV.unpack(raw)
    return int(revision), int(count)


def endpoint(url: str) -> str:
    """``host:port`` of an etcd client URL (``http://host:port`` or ``host:port``)."""
    text = url.strip()
    if text.startswith("https://"):
        raise ValueError(f"etcd endpoint {url!r}: TLS is not supported; use http:// on a private network")
    text = text.removeprefix("http://").rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"etcd endpoint {url!r}: expected http://HOST:PORT")
    return text
