"""The node's checkpoints, checked by a second implementation written from the C2SP specs alone.

Nothing here uses the ledger's own checkpoint or Merkle code (ledger.checkpoint, ledger.merkle):
the signed-note and tlog-checkpoint parsing, the Ed25519 key hash, the RFC 9162 tree hash and
the inclusion-proof verifier are written below from the specs
(https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint, RFC 9162 section 2.1),
with only hashlib, base64 and cryptography.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass

import pytest
from conftest import Server, new_uuid, orchestrator
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EM_DASH = "\u2014"
ED25519 = b"\x01"

# --- C2SP signed-note -------------------------------------------------------------------------


class NoteError(Exception):
    pass


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public: Ed25519PublicKey


def key_hash(name: str, raw_public: bytes) -> bytes:
    """signed-note: first 4 bytes of SHA-256(key name || 0x0A || signature type || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + raw_public).digest()[:4]


def b64decode_strict(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise NoteError(f"not standard base64: {text!r}") from e


def parse_vkey(vkey: str) -> Verifier:
    """<name>+<hex key hash>+<base64(0x01 || 32-byte Ed25519 public key)>."""
    parts = vkey.split("+", 2)  # the name has no "+"; base64 may
    if len(parts) != 3:
        raise NoteError(f"verifier key has {len(parts)} '+'-separated parts, not 3")
    name, hash_hex, key_b64 = parts
    if not name or any(c.isspace() for c in name):
        raise NoteError("bad key name")
    if len(hash_hex) != 8 or hash_hex != hash_hex.lower():
        raise NoteError("key hash must be 8 lower-case hex digits")
    key = b64decode_strict(key_b64)
    if len(key) != 33 or key[:1] != ED25519:
        raise NoteError("not an Ed25519 verifier key")
    if key_hash(name, key[1:]) != bytes.fromhex(hash_hex):
        raise NoteError("key hash does not match name and key")
    return Verifier(name, bytes.fromhex(hash_hex), Ed25519PublicKey.from_public_bytes(key[1:]))


def open_note(note: bytes, verifier: Verifier) -> str:
    """Return the note's text if it carries a valid signature by `verifier`; else raise NoteError.

    The text is everything up to and including the newline before the last blank line; the
    signature block is one or more lines "— <name> <base64(key hash || signature)>\\n".
    Signatures by other keys are ignored.
    """
    try:
        message = note.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("note is not UTF-8") from e
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteError("no blank line before the signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("control character in note text")
    if not block or not block.endswith("\n"):
        raise NoteError("signature block is empty or does not end in a newline")
    verified = False
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise NoteError(f"malformed signature line {line!r}")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise NoteError(f"malformed signature line {line!r}")
        name, blob_b64 = fields
        blob = b64decode_strict(blob_b64)
        if len(blob) < 5:
            raise NoteError("signature too short")
        if name != verifier.name or blob[:4] != verifier.key_hash:
            continue  # someone else's signature
        if len(blob) != 4 + 64:
            raise NoteError("Ed25519 signature must be 64 bytes")
        try:
            verifier.public.verify(blob[4:], text.encode())
        except InvalidSignature as e:
            raise NoteError(f"invalid signature by {name}") from e
        verified = True
    if not verified:
        raise NoteError(f"no signature by {verifier.name}")
    return text


# --- C2SP tlog-checkpoint ---------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def parse_checkpoint(text: str) -> Parsed:
    if not text.endswith("\n"):
        raise NoteError("checkpoint does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("empty origin")
    if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
        raise NoteError(f"tree size {size_text!r} is not a decimal number")
    root = b64decode_strict(root_text)
    if len(root) != 32:
        raise NoteError("root hash is not 32 bytes")
    if any(not e for e in extensions):
        raise NoteError("empty extension line")
    return Parsed(origin, int(size_text), root, tuple(extensions))


def open_checkpoint(note: bytes, verifier: Verifier, origin: str) -> Parsed:
    parsed = parse_checkpoint(open_note(note, verifier))
    if parsed.origin != origin:
        raise NoteError(f"origin {parsed.origin!r} is not {origin!r}")
    return parsed


# --- RFC 9162 ---------------------------------------------------------------------------------


def leaf(raw: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + raw).digest()


def interior(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 9162 2.1.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = largest_power_of_two_below(len(leaves))
    return interior(mth(leaves[:k]), mth(leaves[k:]))


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """Root implied by PATH(m, D[n]) (listed bottom-up), by descending the RFC 9162 split."""
    if not 0 <= index < size:
        raise NoteError("index outside the tree")
    if size == 1:
        if path:
            raise NoteError("inclusion proof too long")
        return leaf_hash
    if not path:
        raise NoteError("inclusion proof too short")
    k = largest_power_of_two_below(size)
    *below, top = path
    if index < k:
        return interior(root_from_inclusion(index, k, leaf_hash, below), top)
    return interior(top, root_from_inclusion(index - k, size - k, leaf_hash, below))


def proves(index: int, size: int, leaf_hash: bytes, path: list[bytes], root: bytes) -> bool:
    try:
        return root_from_inclusion(index, size, leaf_hash, path) == root
    except NoteError:
        return False


# --- the live node ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    vkey: str
    note: bytes
    raws: list[bytes]  # entries 0 .. checkpoint size - 1


def _get(server: Server, path: str, **params):
    response = server.client("auditor").get(path, **params)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response


@pytest.fixture(scope="module")
def live(server: Server) -> Live:
    admin = server.client("admin")
    for _ in range(6):
        response = admin.post(
            "/problem", {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        )
        assert response.status_code == 201, response.text
    vkey = _get(server, "/ledger/key").text.strip()
    note = _get(server, "/ledger/checkpoint").content
    size = int(note.split(b"\n")[1])
    raws: list[bytes] = []
    while len(raws) < size:
        page = _get(server, "/ledger/entries", start=len(raws), end=size).json()
        assert page["entries"], page
        for item in page["entries"]:
            assert item["seq"] == len(raws)
            raws.append(b64decode_strict(item["raw"]))
    return Live(vkey, note, raws[:size])


def test_checkpoint_verifies_independently_and_commits_to_the_entries(live: Live) -> None:
    verifier = parse_vkey(live.vkey)
    checkpoint = open_checkpoint(live.note, verifier, verifier.name)
    assert checkpoint.size == len(live.raws) >= 7
    assert checkpoint.root == mth([leaf(raw) for raw in live.raws])
    # The state extension line: "state <64 hex digits>".
    (state,) = [e for e in checkpoint.extensions if e.startswith("state ")]
    assert len(state) == 6 + 64 and bytes.fromhex(state[6:])
    # Exactly one signature line, by the origin.
    block = live.note.decode().rpartition("\n\n")[2]
    assert block.count("\n") == 1 and block.startswith(f"{EM_DASH} {verifier.name} ")


def _edit_line(note: bytes, index: int, edit) -> bytes:
    text, _, block = note.decode().rpartition("\n\n")
    lines = text.split("\n")
    lines[index] = edit(lines[index])
    return ("\n".join(lines) + "\n\n" + block).encode()


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


MODIFICATIONS = {
    "size_plus_one": (lambda note: _edit_line(note, 1, lambda s: str(int(s) + 1)), "invalid signature"),
    "size_minus_one": (lambda note: _edit_line(note, 1, lambda s: str(int(s) - 1)), "invalid signature"),
    "root": (lambda note: _edit_line(note, 2, _flip_b64), "invalid signature"),
    "extension_changed": (
        lambda note: _edit_line(note, 3, lambda s: s[:-1] + ("0" if s[-1] != "0" else "1")),
        "invalid signature",
    ),
    "extension_added": (lambda note: _edit_line(note, 3, lambda s: s + "\nextra line"), "invalid signature"),
    "origin": (lambda note: _edit_line(note, 0, lambda s: s + "x"), "invalid signature"),
    "signature_key_name": (
        lambda note: note.replace(f"{EM_DASH} orchestrator".encode(), f"{EM_DASH} xorchestrator".encode()),
        "no signature by",
    ),
    "signature_bytes": (
        lambda note: note.replace(note.rpartition(b" ")[2], (_flip_sig(note.rpartition(b" ")[2].decode())).encode()),
        "invalid signature",
    ),
    "signature_removed": (lambda note: note.rpartition(b"\n\n")[0] + b"\n\n", "signature block is empty"),
}


def _flip_sig(blob_line: str) -> str:
    blob = bytearray(base64.b64decode(blob_line.strip()))
    blob[10] ^= 0x80  # inside the Ed25519 signature, after the 4-byte key hash
    return base64.b64encode(bytes(blob)).decode() + "\n"


@pytest.mark.parametrize("modification", sorted(MODIFICATIONS))
def test_modified_note_fails_independent_verification(live: Live, modification: str) -> None:
    verifier = parse_vkey(live.vkey)
    modify, reason = MODIFICATIONS[modification]
    modified = modify(live.note)
    assert modified != live.note
    with pytest.raises(NoteError, match=reason):
        open_checkpoint(modified, verifier, verifier.name)


def test_note_fails_under_another_key_name_or_key(live: Live) -> None:
    genuine = parse_vkey(live.vkey)
    raw = genuine.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    # The same public key under another name: a different key hash, so no signature matches.
    renamed = Verifier("other.example/ledger", key_hash("other.example/ledger", raw), genuine.public)
    with pytest.raises(NoteError, match="no signature by"):
        open_checkpoint(live.note, renamed, renamed.name)
    # The right name and key hash, but another public key.
    impostor = Verifier(genuine.name, genuine.key_hash, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="invalid signature"):
        open_checkpoint(live.note, impostor, impostor.name)
    # A verifier key whose advertised hash does not match.
    name, hash_hex, key_b64 = live.vkey.split("+", 2)
    wrong_hash = f"{int(hash_hex, 16) ^ 1:08x}"
    with pytest.raises(NoteError, match="key hash"):
        parse_vkey(f"{name}+{wrong_hash}+{key_b64}")
    # Correctly signed, but for another origin than the one expected.
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(live.note, genuine, "another.origin/ledger")


def test_independent_verifier_accepts_a_note_it_did_not_produce() -> None:
    """The independent code itself: a note signed here by the spec verifies, a flipped bit does not."""
    name = "example.com/log"
    while True:  # a key whose base64 holds "+", like about half of them
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        vkey = f"{name}+{key_hash(name, raw).hex()}+{base64.b64encode(ED25519 + raw).decode()}"
        if vkey.count("+") > 2:
            break
    text = f"{name}\n3\n{base64.b64encode(bytes(32)).decode()}\n"
    other = Ed25519PrivateKey.generate()
    other_raw = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    witness_blob = key_hash("witness.example", other_raw) + other.sign(b"x")
    lines = [
        f"{EM_DASH} witness.example {base64.b64encode(witness_blob).decode()}",
        f"{EM_DASH} {name} {base64.b64encode(key_hash(name, raw) + key.sign(text.encode())).decode()}",
    ]
    note = (text + "\n" + "\n".join(lines) + "\n").encode()
    parsed = open_checkpoint(note, parse_vkey(vkey), name)
    assert parsed == Parsed(name, 3, bytes(32), ())
    with pytest.raises(NoteError):
        open_checkpoint(note.replace(b"\n3\n", b"\n4\n"), parse_vkey(vkey), name)
    with pytest.raises(NoteError, match="decimal"):
        parse_checkpoint(f"{name}\n03\n{base64.b64encode(bytes(32)).decode()}\n")


def test_inclusion_proofs_verify_independently(server: Server, live: Live) -> None:
    leaves = [leaf(raw) for raw in live.raws]
    size = len(leaves)
    cases = sorted(
        {(0, size), (1, size), (size // 2, size), (size - 1, size), (size - 2, size), (2, 3), (4, 7), (5, 6), (0, 1)}
    )
    for seq, tree_size in cases:
        body = _get(server, "/ledger/proofs/inclusion", seq=seq, tree_size=tree_size).json()
        assert (body["seq"], body["tree_size"]) == (seq, tree_size)
        assert b64decode_strict(body["leaf_hash"]) == leaves[seq]
        expected_root = mth(leaves[:tree_size])
        assert b64decode_strict(body["root"]) == expected_root
        path = [b64decode_strict(p) for p in body["proof"]]
        assert proves(seq, tree_size, leaves[seq], path, expected_root), (seq, tree_size)
        # Not a proof for a neighbouring entry, a different leaf, a damaged or shortened path.
        if tree_size > 1:
            other = seq + 1 if seq + 1 < tree_size else seq - 1
            assert not proves(other, tree_size, leaves[seq], path, expected_root)
            assert not proves(seq, tree_size, leaves[other], path, expected_root)
            damaged = list(path)
            damaged[-1] = bytes([damaged[-1][0] ^ 1]) + damaged[-1][1:]
            assert not proves(seq, tree_size, leaves[seq], damaged, expected_root)
            assert not proves(seq, tree_size, leaves[seq], path[:-1], expected_root)
    # At the checkpoint's size, the proofs lead to the signed root.
    verifier = parse_vkey(live.vkey)
    signed = open_checkpoint(live.note, verifier, verifier.name)
    body = _get(server, "/ledger/proofs/inclusion", seq=size - 1, tree_size=signed.size).json()
    path = [b64decode_strict(p) for p in body["proof"]]
    assert proves(size - 1, signed.size, leaves[size - 1], path, signed.root)


def test_consistency_endpoint_roots_match_independent_tree_hash(server: Server, live: Live) -> None:
    leaves = [leaf(raw) for raw in live.raws]
    size = len(leaves)
    for first, second in ((1, size), (3, 7), (size // 2, size), (size, size)):
        body = _get(server, "/ledger/proofs/consistency", first=first, second=second).json()
        assert b64decode_strict(body["first_root"]) == mth(leaves[:first])
        assert b64decode_strict(body["second_root"]) == mth(leaves[:second])


@pytest.mark.parametrize("origin", ["my ledger", "ledger+1", "tab\there", "no\u00a0break", "two\nlines"])
def test_an_origin_that_cannot_be_a_key_name_is_refused_at_init(tmp_path, origin: str) -> None:
    """The origin is the node key's name in the checkpoint's signature line, and signed-note says
    "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B)
    characters." (tlog-checkpoint: an origin SHOULD contain neither.) Such a ledger is never made."""
    result = orchestrator("init", "--data-dir", str(tmp_path / "data"), "--origin", origin, check=False)
    assert result.returncode == 2 and "--origin" in result.stderr, (result.stdout, result.stderr)
    assert not (tmp_path / "data" / "log").exists()
