"""C2SP tlog-cosignature, Ed25519 ``cosignature/v1`` (signature type 0x04).

A witness's cosignature on a checkpoint is a note signature line
``— <witness name> base64(key id || u64 big-endian timestamp || Ed25519 signature)`` whose
signature covers ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's note text.
The key id is SHA-256(name || "\\n" || 0x04 || public key)[:4]; the verifier key (vkey) is
``<name>+<hex key id>+<base64(0x04 || public key)>``. The timestamp is never zero.

:func:`valid` and :func:`require` check a note's cosignatures against a set of trusted witness
keys: lines of other keys are ignored, a line of a trusted key that does not verify rejects
the whole note (as signed-note asks), and each witness counts once towards a quorum.
"""

import base64
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import note
from ledger.errors import IntegrityError

COSIGNATURE_TYPE = b"\x04"
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1


class CosignatureError(IntegrityError):
    default_title = "Cosignature does not verify"


@dataclass(frozen=True)
class WitnessKey:
    """A witness's name and Ed25519 public key (cosignature/v1)."""

    name: str
    public: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return note.key_id(self.name, COSIGNATURE_TYPE, self.public)

    def vkey(self) -> str:
        encoded = base64.b64encode(COSIGNATURE_TYPE + note.raw_public(self.public)).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


def parse_vkey(text: str) -> WitnessKey:
    """A witness vkey (signature type 0x04); raises CosignatureError naming what is wrong."""
    parts = text.strip().split("+", 2)  # names hold no '+'; base64 may
    if len(parts) != 3 or not parts[0] or any(c.isspace() for c in parts[0]):
        raise CosignatureError(f"malformed witness verifier key {text.strip()[:80]!r}: expected NAME+HEX+BASE64")
    name, hash_hex, encoded = parts
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as e:
        raise CosignatureError(f"witness verifier key {name!r}: the key is not base64") from e
    if raw[:1] != COSIGNATURE_TYPE or len(raw) != 33:
        kind = raw[:1].hex() or "none"
        raise CosignatureError(
            f"witness verifier key {name!r} is not a cosignature/v1 Ed25519 key (type 04), its type is {kind}"
        )
    key = WitnessKey(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
    if key.key_id.hex() != hash_hex:
        raise CosignatureError(f"witness verifier key {name!r}: its key id does not match its key")
    return key


def message(text: str, timestamp: int) -> bytes:
    """What a cosignature signs: the header line, the time line, then the checkpoint text."""
    return f"{HEADER}time {timestamp}\n{text}".encode()


def cosign(text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> note.Signature:
    """The cosignature line of witness `name` on the checkpoint text, at `timestamp` (> 0)."""
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp must be positive, not {timestamp}")
    signature = key.sign(message(text, timestamp))
    return note.Signature(name, WitnessKey(name, key.public_key()).key_id, timestamp.to_bytes(8, "big") + signature)


def check(text: str, line: note.Signature, witness: WitnessKey) -> int:
    """The timestamp of a valid cosignature by `witness`; raises CosignatureError otherwise."""
    if line.name != witness.name or not hmac.compare_digest(line.key_id, witness.key_id):
        raise CosignatureError(f"the signature line is not by witness {witness.name!r}")
    if len(line.signature) != 8 + 64:
        raise CosignatureError(f"the cosignature by {witness.name!r} is not 72 bytes")
    timestamp = int.from_bytes(line.signature[:8], "big")
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"the cosignature by {witness.name!r} has timestamp {timestamp}")
    try:
        witness.public.verify(line.signature[8:], message(text, timestamp))
    except InvalidSignature as e:
        raise CosignatureError(f"the cosignature by {witness.name!r} does not verify") from e
    return timestamp


def valid(signed: note.Note, witnesses: Sequence[WitnessKey]) -> dict[str, int]:
    """The trusted witnesses that validly cosigned the note: name -> timestamp.

    Raises CosignatureError if a line of a trusted witness (its name and key id) does not verify.
    """
    found: dict[str, int] = {}
    for witness in witnesses:
        for line in note.signed_by(signed, witness.name, COSIGNATURE_TYPE, witness.public):
            found[witness.name] = check(signed.text, line, witness)
    return found


def require(text: str, witnesses: Sequence[WitnessKey], quorum: int) -> dict[str, int]:
    """valid() for a signed note in text form, raising CosignatureError unless at least `quorum`
    distinct trusted witnesses cosigned it."""
    try:
        found = valid(note.parse(text), witnesses)
    except note.NoteError as e:
        raise CosignatureError(e.message) from e
    if len(found) < quorum:
        names = ", ".join(sorted(found)) or "none"
        raise CosignatureError(
            f"the checkpoint carries {len(found)} valid cosignature(s) of the {quorum} required "
            f"from {len(witnesses)} trusted witness(es) (valid: {names})"
        )
    return found
