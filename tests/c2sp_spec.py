"""A second implementation, from the C2SP specs and RFC 9162 alone, of what the witness tests need.

Nothing here imports the project (ledger.*, witness.*): signed notes (https://c2sp.org/signed-note),
Ed25519 cosignature/v1 (https://c2sp.org/tlog-cosignature), add-checkpoint bodies
(https://c2sp.org/tlog-witness), tlog-proof@v1 (https://c2sp.org/tlog-proof), and the RFC 9162
tree head, consistency proof PROOF(m, D[n]) and inclusion proof PATH(m, D[n]) (section 2.1).
Only hashlib, base64 and cryptography.
"""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DASH = "\u2014"


class SpecError(Exception):
    pass


def raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, kind: int, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + raw(public)).digest()[:4]


def vkey(name: str, kind: int, public: Ed25519PublicKey) -> str:
    return f"{name}+{key_id(name, kind, public).hex()}+{base64.b64encode(bytes([kind]) + raw(public)).decode()}"


def parse_vkey(text: str) -> tuple[str, int, Ed25519PublicKey]:
    name, hash_hex, encoded = text.strip().split("+", 2)
    data = base64.b64decode(encoded, validate=True)
    public = Ed25519PublicKey.from_public_bytes(data[1:])
    if key_id(name, data[0], public).hex() != hash_hex:
        raise SpecError("vkey key id mismatch")
    return name, data[0], public


# --- signed notes -----------------------------------------------------------------------------


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """A note signed with an Ed25519 (type 0x01) key."""
    blob = key_id(name, 1, key.public_key()) + key.sign(text.encode())
    return f"{text}\n{DASH} {name} {base64.b64encode(blob).decode()}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(text, [(name, key id || signature)]); the text ends before the last blank line."""
    at = note.rfind("\n\n")
    if at < 0 or not note.endswith("\n"):
        raise SpecError("not a signed note")
    lines = []
    for line in note[at + 2 : -1].split("\n"):
        dash, name, b64 = line.split(" ")
        if dash != DASH:
            raise SpecError("bad signature line")
        lines.append((name, base64.b64decode(b64, validate=True)))
    return note[: at + 1], lines


def checkpoint_text(origin: str, size: int, root: bytes, *extensions: str) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n" + "".join(e + "\n" for e in extensions)


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    origin, size, root = text.split("\n")[:3]
    return origin, int(size), base64.b64decode(root, validate=True)


def verify_log_signature(note: str, name: str, public: Ed25519PublicKey) -> str:
    text, lines = split_note(note)
    wanted = key_id(name, 1, public)
    ok = False
    for line_name, blob in lines:
        if line_name == name and blob[:4] == wanted:
            public.verify(blob[4:], text.encode())
            ok = True
    if not ok:
        raise SpecError("no log signature")
    return text


def cosignature_time(text: str, blob: bytes, name: str, public: Ed25519PublicKey) -> int:
    """Verify one cosignature/v1 line's blob over the checkpoint text; return its timestamp."""
    if blob[:4] != key_id(name, 4, public) or len(blob) != 4 + 8 + 64:
        raise SpecError("not a cosignature/v1 of this key")
    timestamp = int.from_bytes(blob[4:12], "big")
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()
    try:
        public.verify(blob[12:], message)
    except InvalidSignature as e:
        raise SpecError("cosignature does not verify") from e
    if timestamp == 0:
        raise SpecError("zero timestamp")
    return timestamp


def cosigners(note: str, witnesses: list[tuple[str, Ed25519PublicKey]]) -> dict[str, int]:
    """name -> timestamp of the witnesses that validly cosigned the note."""
    text, lines = split_note(note)
    found = {}
    for line_name, blob in lines:
        for name, public in witnesses:
            if line_name == name and blob[:4] == key_id(name, 4, public):
                found[name] = cosignature_time(text, blob, name, public)
    return found


def add_checkpoint_body(old: int, proof: list[bytes], note: str) -> bytes:
    return (f"old {old}\n" + "".join(base64.b64encode(p).decode() + "\n" for p in proof) + "\n" + note).encode()


# --- RFC 9162 ---------------------------------------------------------------------------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def interior(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return interior(mth(leaves[:k]), mth(leaves[k:]))


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 2.1.4.1)."""

    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = _k(n)
        if m <= k:
            return subproof(m, d[:k], b) + [mth(d[k:])]
        return subproof(m - k, d[k:], False) + [mth(d[:k])]

    return subproof(m, leaves, True)


def inclusion(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 2.1.3.1)."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return inclusion(m, leaves[:k]) + [mth(leaves[k:])]
    return inclusion(m - k, leaves[k:]) + [mth(leaves[:k])]


@dataclass(frozen=True)
class TlogProof:
    extra: bytes | None
    index: int
    proof: list[bytes]
    checkpoint: str


def parse_tlog_proof(text: str) -> TlogProof:
    """c2sp.org/tlog-proof@v1: header, optional extra line, index line, proof lines, blank, checkpoint."""
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise SpecError("no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise SpecError("bad header")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = base64.b64decode(rest[0][6:], validate=True)
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise SpecError("no index line")
    index = int(rest[0][6:])
    return TlogProof(extra, index, [base64.b64decode(p, validate=True) for p in rest[1:]], checkpoint)


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """The root PATH(index, D[size]) (listed bottom-up) leads to, descending the RFC 9162 split."""
    if not 0 <= index < size:
        raise SpecError("index outside the tree")
    if size == 1:
        if path:
            raise SpecError("inclusion proof too long")
        return leaf_hash
    if not path:
        raise SpecError("inclusion proof too short")
    k = _k(size)
    *below, top = path
    if index < k:
        return interior(root_from_inclusion(index, k, leaf_hash, below), top)
    return interior(top, root_from_inclusion(index - k, size - k, leaf_hash, below))


# --- tlog-tiles -------------------------------------------------------------------------------


def tile_index(n: int) -> str:
    """<N> as zero-padded 3-digit path elements, all but the last prefixed with x."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_hashes(leaves: list[bytes], level: int, n: int, width: int = 256) -> bytes:
    """The n-th tile at level l: MTH(D[(n*256 + i) * 256**l : (n*256 + i + 1) * 256**l]), i < width."""
    span = 256**level
    return b"".join(mth(leaves[(n * 256 + i) * span : (n * 256 + i + 1) * span]) for i in range(width))


def split_bundle(data: bytes) -> list[bytes]:
    """An entry bundle: big-endian uint16 length-prefixed entries."""
    entries, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at : at + 2], "big")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if at != len(data):
        raise SpecError("a truncated bundle")
    return entries
