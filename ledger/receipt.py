"""Receipts that prove themselves: C2SP ``tlog-proof@v1`` (https://c2sp.org/tlog-proof).

A receipt for entry ``index`` is::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's bytes>
    index <index>
    <base64 inclusion proof hashes, from the leaf's sibling up to the root's child>

    <the checkpoint note, verbatim, with its cosignatures>

The entry bytes travel in ``extra``, so that a verifier computes the leaf hash
SHA-256(0x00 || entry) itself and reads what was logged. :func:`verify` checks, offline and in
this order: the checkpoint's signature by the node's key (its vkey), a quorum of cosignatures
by trusted witnesses, the inclusion proof of that leaf at that index in the checkpoint's tree,
that the entry is canonical and names that index, and the entry's own RFC 9421 signature
against the key it names (a public key given, or the one the genesis registered). The first
check that fails raises :class:`ReceiptError` naming it.
"""

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint, cosignature, ed25519, httpsig, merkle
from ledger.entry import Entry, decode
from ledger.errors import IntegrityError, LedgerError

HEADER = "c2sp.org/tlog-proof@v1"


class ReceiptError(IntegrityError):
    default_title = "Receipt does not verify"

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True)
class TlogProof:
    extra: bytes | None
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def encode(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(p).decode() for p in self.proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def parse(text: str) -> TlogProof:
    """A tlog-proof@v1; raises ReceiptError("format", ...) if it is not one."""
    head, sep, note = text.partition("\n\n")
    if not sep or not note.strip("\n"):
        raise ReceiptError("format", "no blank line before the checkpoint")
    # A file saved with extra line ends after the note (as `jq -r` or an editor writes it) holds
    # the same note: no signature covers them.
    note = note.rstrip("\n") + "\n"
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ReceiptError("format", f"the first line must be {HEADER!r}")
    rest = lines[1:]
    extra = None
    try:
        if rest and rest[0].startswith("extra "):
            extra = base64.b64decode(rest[0][6:], validate=True)
            rest = rest[1:]
        if not rest or not rest[0].startswith("index "):
            raise ReceiptError("format", "no 'index' line")
        index_text = rest[0][6:]
        if not index_text.isascii() or not index_text.isdigit() or (index_text != "0" and index_text[0] == "0"):
            raise ReceiptError("format", f"index {index_text[:30]!r} is not a decimal number")
        proof = tuple(base64.b64decode(line, validate=True) for line in rest[1:])
    except ValueError as e:
        raise ReceiptError("format", "a line is not base64") from e
    if any(len(p) != 32 for p in proof):
        raise ReceiptError("format", "an inclusion proof line is not a 32-byte hash")
    return TlogProof(extra, int(index_text), proof, note)


@dataclass(frozen=True)
class Verified:
    """What a verified receipt shows."""

    entry: Entry
    tree_size: int
    cosigners: tuple[str, ...]

    def summary(self) -> str:
        what = "the genesis" if self.entry.request is None else (
            f"{self.entry.request.method} {self.entry.request.path} signed by {self.entry.key_id!r}"
        )
        witnessed = f", cosigned by {', '.join(self.cosigners)}" if self.cosigners else ""
        return f"ok: entry {self.entry.seq} ({what}) is in the tree of size {self.tree_size}{witnessed}"


def verify(
    text: str,
    node: tuple[str, Ed25519PublicKey],
    *,
    witnesses: Sequence[cosignature.WitnessKey] = (),
    quorum: int = 0,
    signer_key: str | None = None,
    genesis: Entry | None = None,
) -> Verified:
    """Verify a receipt offline (see the module docstring); raises ReceiptError.

    `node` is the ledger's origin and node key (from its vkey); `signer_key` the base64 public
    key of the entry's signer, else `genesis` (entry 0) to find it in."""
    receipt = parse(text)
    origin, public = node
    try:
        head = checkpoint.open_note(receipt.checkpoint, origin, public)
    except LedgerError as e:
        raise ReceiptError("checkpoint", e.message) from e
    if head.origin != origin:
        raise ReceiptError("checkpoint", f"it is for origin {head.origin!r}, not {origin!r}")
    cosigners: tuple[str, ...] = ()
    if quorum:
        try:
            cosigners = tuple(sorted(cosignature.require(receipt.checkpoint, witnesses, quorum)))
        except LedgerError as e:
            raise ReceiptError("cosignatures", e.message) from e
    if receipt.extra is None:
        raise ReceiptError("entry", "the receipt carries no entry bytes ('extra' line)")
    try:
        merkle.verify_inclusion(receipt.index, head.size, merkle.leaf_hash(receipt.extra), list(receipt.proof),
                                head.root)
    except LedgerError as e:
        raise ReceiptError("inclusion proof", e.message) from e
    try:
        entry = decode(receipt.extra)
    except LedgerError as e:
        raise ReceiptError("entry", e.message) from e
    if entry.seq != receipt.index:
        raise ReceiptError("entry", f"the entry says it is entry {entry.seq}, the receipt {receipt.index}")
    if entry.request is not None:
        _check_signature(entry, signer_key, genesis)
    elif entry.seq != 0:
        raise ReceiptError("entry", "only entry 0 may be a genesis entry")
    return Verified(entry, head.size, cosigners)


def signer_from_genesis(genesis: Entry, key_id: str) -> str:
    """The base64 public key the genesis registered for key_id; raises ReceiptError."""
    if genesis.genesis is None or genesis.seq != 0:
        raise ReceiptError("genesis", "the entry given as the genesis is not entry 0")
    for member in genesis.genesis.get("members", []):
        if isinstance(member, dict) and member.get("key_id") == key_id:
            return str(member.get("public_key"))
    raise ReceiptError("signature", f"key {key_id!r} is not in the genesis (registered later?): give its public key")


def _check_signature(entry: Entry, signer_key: str | None, genesis: Entry | None) -> None:
    assert entry.request is not None
    if signer_key is None:
        if genesis is None:
            raise ReceiptError("signature", f"give the public key of {entry.key_id!r}, or the genesis")
        signer_key = signer_from_genesis(genesis, entry.key_id)
    try:
        key = ed25519.verify_key(signer_key)
    except (ValueError, TypeError) as e:
        raise ReceiptError("signature", f"the public key of {entry.key_id!r} is not base64 Ed25519: {e}") from e
    try:
        signer = httpsig.verify_request(entry.request, lambda key_id: key if key_id == entry.key_id else None)
    except LedgerError as e:
        raise ReceiptError("signature", e.message) from e
    if signer.key_id != entry.key_id:
        raise ReceiptError("signature", "signed by another key than the entry names")
