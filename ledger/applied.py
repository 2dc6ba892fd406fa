"""How far a node of a several-node ledger has applied: the record it keeps in etcd.

Each node puts one record under ``<ledger prefix>n/<node name>`` (:func:`ledger.etcd_codec.node_key`)
about once a second, off the write path. It says, for one head of that node:

- ``size`` and ``position``: the log size and the etcd position applied with it (the same
  head, so a node that takes these entries from a peer resumes the order exactly there);
- ``note``: the node's signed checkpoint for that size (root and state digest), which other
  nodes add to the checkpoints they serve when theirs has the same body;
- ``signature``: the node key's Ed25519 signature over all of it (:func:`_signed_text`).

Nodes read each other's records to decide what etcd may forget (compaction), to find a peer
head to catch up to, and to gather checkpoint signatures. A record is only believed once its
signatures verify with the node key the genesis lists under its name.

The value is canonical JSON: ``{"node", "size", "position" (hex), "note", "signature" (base64)}``.
"""

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import canonical, checkpoint, etcd_codec
from ledger import note as notes
from ledger.errors import IntegrityError, LedgerError

_CONTEXT = b"orchestrator applied/v1\n"


@dataclass(frozen=True)
class Applied:
    """A verified record: node `node` has applied `size` entries, up to etcd `position`."""

    node: str
    size: int
    position: bytes
    note: str
    checkpoint: checkpoint.Checkpoint
    #: The note's signature line by this node (what another node adds to its own note).
    line: notes.Signature

    @property
    def revision(self) -> int:
        """The etcd revision applied (0 when none): the history this node still needs starts there."""
        return etcd_codec.parse_position(self.position)[0]


def _signed_text(origin: str, node: str, size: int, position: bytes, note_text: str) -> bytes:
    return _CONTEXT + f"{origin}\n{node}\n{size}\n{position.hex()}\n".encode() + note_text.encode()


def encode(origin: str, node: str, size: int, position: bytes, note_text: str, key: Ed25519PrivateKey) -> bytes:
    """The signed record of a head (its note signed by the same key, for that size)."""
    signature = key.sign(_signed_text(origin, node, size, position, note_text))
    return canonical.dumps({"node": node, "size": size, "position": position.hex(), "note": note_text,
                            "signature": base64.b64encode(signature).decode()})


def decode(raw: bytes, origin: str, node_keys: Mapping[str, Ed25519PublicKey]) -> Applied:
    """Verify a record with the genesis node keys (name -> public key); raises IntegrityError."""
    try:
        value = canonical.loads(raw)
        name, size, position_hex = value["node"], value["size"], value["position"]
        note_text, signature_b64 = value["note"], value["signature"]
        if not (isinstance(name, str) and isinstance(size, int) and isinstance(position_hex, str)
                and isinstance(note_text, str) and isinstance(signature_b64, str)):
            raise ValueError("a field has the wrong type")
        position = bytes.fromhex(position_hex)
        signature = base64.b64decode(signature_b64, validate=True)
    except (LedgerError, ValueError, TypeError, KeyError) as e:
        raise IntegrityError(f"not a node record: {e}") from e
    public = node_keys.get(name)
    if public is None:
        raise IntegrityError(f"a node record names {name!r}, which is not a genesis node")
    try:
        public.verify(signature, _signed_text(origin, name, size, position, note_text))
    except InvalidSignature as e:
        raise IntegrityError(f"the record of node {name!r} is not signed by its key") from e
    etcd_codec.parse_position(position)  # raises IntegrityError
    signed = checkpoint.open_note(note_text, origin, public)
    if signed.size != size:
        raise IntegrityError(f"the record of node {name!r} holds a checkpoint of another size")
    parsed = notes.parse(note_text)
    lines = notes.signed_by(parsed, origin, checkpoint.ED25519_TYPE, public)
    return Applied(name, size, position, note_text, signed, lines[0])
