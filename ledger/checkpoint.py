"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes.

A checkpoint body is

    <origin>\n<tree size>\n<base64 root hash>\nstate <hex state digest>\n

(the last line is an extension line carrying the state digest after applying
all entries of that size). The note is the body, a blank line, then one
signature line ``— <key name> <base64(key id || Ed25519 signature)>``, where
the key id is the first 4 bytes of SHA-256(key name || "\n" || 0x01 || public key)
and the key name is the ledger's origin. :func:`vkey` gives the C2SP verifier key.
"""

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import IntegrityError

ED25519_TYPE = b"\x01"
_DASH = "\u2014"


class CheckpointError(IntegrityError):
    default_title = "Checkpoint does not verify"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    state_digest: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\nstate {self.state_digest.hex()}\n"


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + _raw_public(public)).digest()[:4]


def vkey(name: str, public: Ed25519PublicKey) -> str:
    """The C2SP verifier key: <name>+<hex key id>+<base64(0x01 || public key)>."""
    encoded = base64.b64encode(ED25519_TYPE + _raw_public(public)).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def parse_vkey(text: str) -> tuple[str, Ed25519PublicKey]:
    parts = text.strip().split("+", 2)  # base64 may hold '+'; names may not
    if len(parts) != 3 or not parts[0]:
        raise CheckpointError(f"malformed verifier key {text.strip()[:80]!r}: expected NAME+HEX+BASE64")
    name, hash_hex, encoded = parts
    try:
        raw = base64.b64decode(encoded, validate=True)
        if raw[:1] != ED25519_TYPE or len(raw) != 33:
            raise ValueError("not an Ed25519 verifier key")
        public = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError as e:
        raise CheckpointError(f"malformed verifier key: {e}") from e
    if key_id(name, public).hex() != hash_hex:
        raise CheckpointError("verifier key id does not match its key")
    return name, public


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    """The signed note for a checkpoint, signed by the ledger's node key under its origin."""
    body = checkpoint.body()
    signature = key.sign(body.encode())
    blob = base64.b64encode(key_id(checkpoint.origin, key.public_key()) + signature).decode()
    return f"{body}\n{_DASH} {checkpoint.origin} {blob}\n"


def open_note(note: str, name: str, public: Ed25519PublicKey | Sequence[Ed25519PublicKey]) -> Checkpoint:
    """Verify a signed checkpoint note with the given key, or with any one of the given keys
    (the node keys of a ledger several nodes run); return the checkpoint it holds.

    Raises CheckpointError naming what does not hold: no signature by any of the keys, or one
    by such a key that does not verify.
    """
    body, sep, signatures = note.partition("\n\n")
    if not sep or not body:
        raise CheckpointError("note has no signature block")
    body += "\n"
    publics = [public] if isinstance(public, Ed25519PublicKey) else list(public)
    wanted = {key_id(name, key): key for key in publics}
    verified = False
    for line in signatures.splitlines():
        prefix = f"{_DASH} {name} "
        if not line.startswith(prefix):
            continue
        try:
            blob = base64.b64decode(line[len(prefix) :], validate=True)
        except ValueError as e:
            raise CheckpointError("malformed signature line") from e
        signer = wanted.get(blob[:4])
        if signer is None:
            continue
        try:
            signer.verify(blob[4:], body.encode())  # raises InvalidSignature for a wrong length too
        except InvalidSignature as e:
            raise CheckpointError(f"checkpoint signature by {name!r} does not verify") from e
        verified = True
    if not verified:
        ids = " or ".join(k.hex() for k in wanted)
        raise CheckpointError(f"checkpoint carries no signature by {name!r} with key id {ids} (the key given)")
    return parse_body(body)


def open_note_by_all(note: str, name: str, publics: Sequence[Ed25519PublicKey]) -> Checkpoint:
    """Verify that the note carries a valid signature by every one of the keys; the checkpoint.

    Raises CheckpointError naming how many of them signed."""
    missing = 0
    signed: Checkpoint | None = None
    for public in publics:
        try:
            signed = open_note(note, name, public)
        except CheckpointError:
            missing += 1
    if missing or signed is None:
        raise CheckpointError(f"checkpoint carries valid signatures by {len(publics) - missing} of the ledger's "
                              f"{len(publics)} node keys, not all of them")
    return signed


def parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("checkpoint body is malformed")
    origin, size_text, root_text, *extensions = lines[:-1]
    if not re.fullmatch(r"[0-9]{1,19}", size_text) or (size_text.startswith("0") and size_text != "0"):
        raise CheckpointError(f"checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as e:
        raise CheckpointError("checkpoint root hash is not base64") from e
    digests = [e.removeprefix("state ") for e in extensions if e.startswith("state ")]
    if len(root) != 32 or len(digests) != 1:
        raise CheckpointError("checkpoint needs a 32-byte root and one state extension line")
    try:
        digest = bytes.fromhex(digests[0])
    except ValueError as e:
        raise CheckpointError("checkpoint state digest is not hex") from e
    return Checkpoint(origin, int(size_text), root, digest)
