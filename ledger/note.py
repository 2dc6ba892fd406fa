"""C2SP signed notes and checkpoints, for any log: the generic parsing a witness needs.

A note is a text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key id || signature)>``, each ending in a newline
(https://c2sp.org/signed-note). The text is separated from the signatures by the *last* blank
line, includes its final newline, and holds no control character but newline. A checkpoint
(https://c2sp.org/tlog-checkpoint) is a note text of an origin line, a decimal tree size, a
base64 root hash and zero or more non-empty extension lines.

:mod:`ledger.checkpoint` is the ledger's own, stricter checkpoint (it needs its ``state``
extension line); this module accepts any log's.
"""

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import IntegrityError

DASH = "\u2014"
#: The most signature lines a note may carry (the spec asks verifiers to accept at least 16).
MAX_SIGNATURES = 64
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


class NoteError(IntegrityError):
    default_title = "Signed note does not verify"


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, with its final newline."""
        return f"{DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]

    def with_signatures(self, extra: Iterable[Signature]) -> "Note":
        """This note with further signatures after its own (duplicates dropped)."""
        lines = list(self.signatures)
        for signature in extra:
            if signature not in lines:
                lines.append(signature)
        return Note(self.text, tuple(lines))

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True)
class TreeHead:
    """A checkpoint's lines: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64; raises NoteError naming `what`."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise NoteError(f"{what} is not base64") from e


def parse(note: str) -> Note:
    """Split a signed note into its text and signature lines; raises NoteError if malformed."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("the note holds a control character")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("the note's signature block is empty or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note carries more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH or not parts[1] or "+" in parts[1] or _has_space(parts[1]):
            raise NoteError(f"malformed signature line {line[:80]!r}")
        blob = b64decode(parts[2], "a signature")
        if len(blob) < 5:
            raise NoteError("a signature is shorter than its key id")
        signatures.append(Signature(parts[1], blob[:4], blob[4:]))
    return Note(text, tuple(signatures))


def _has_space(name: str) -> bool:
    """Whether a key name holds a Unicode space (signed-note forbids them, as it does '+')."""
    return any(c.isspace() for c in name)


def parse_checkpoint(text: str) -> TreeHead:
    """The lines of a checkpoint note text; raises NoteError if it is not one."""
    if not text.endswith("\n"):
        raise NoteError("the checkpoint does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint needs an origin, a tree size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("the checkpoint's origin line is empty")
    if not _SIZE.fullmatch(size_text):
        raise NoteError(f"the checkpoint tree size {size_text[:40]!r} is not a decimal number")
    root = b64decode(root_text, "the checkpoint root hash")
    if len(root) != 32:
        raise NoteError("the checkpoint root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("the checkpoint has an empty extension line")
    return TreeHead(origin, int(size_text), root, tuple(extensions))


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, kind: bytes, public: Ed25519PublicKey) -> bytes:
    """SHA-256(name || "\\n" || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + kind + raw_public(public)).digest()[:4]


def signed_by(note: Note, name: str, kind: bytes, public: Ed25519PublicKey) -> list[Signature]:
    """The note's signature lines by this key (its name and key id); the caller verifies them."""
    wanted = key_id(name, kind, public)
    return [s for s in note.signatures if s.name == name and hmac.compare_digest(s.key_id, wanted)]


def verify_ed25519(note: Note, name: str, public: Ed25519PublicKey) -> None:
    """Raise NoteError unless the note carries a valid Ed25519 (type 0x01) signature by this key.

    Signatures by other keys are ignored; one by this key that does not verify rejects the note.
    """
    lines = signed_by(note, name, b"\x01", public)
    if not lines:
        raise NoteError(f"the note carries no signature by {name!r}")
    for line in lines:
        try:
            public.verify(line.signature, note.text.encode())
        except InvalidSignature as e:
            raise NoteError(f"the signature by {name!r} does not verify") from e
