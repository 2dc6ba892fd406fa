"""RFC 9162 Merkle tree: integration, roots, proofs and their verification.

The tree is stored as its perfect subtrees: node (level, index) is the hash of
leaves [index * 2**level, (index + 1) * 2**level). :func:`integrate` is pure:
given the old size, the new leaf hashes and a reader for existing nodes, it
returns the nodes to write (the caller writes them in the same batch as the
entries). Any subtree hash, hence any root or proof node, needs O(log n) node
reads. Verification functions follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 and
raise :class:`ProofError`; digests are compared with hmac.compare_digest.
"""

import hashlib
import hmac
from collections.abc import Callable

from ledger.errors import IntegrityError

Reader = Callable[[bytes], bytes | None]
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(IntegrityError):
    """A proof does not verify."""

    default_title = "Proof does not verify"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def node_key(level: int, index: int) -> bytes:
    return b"t" + bytes([level]) + index.to_bytes(8, "big")


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def integrate(size: int, leaves: list[bytes], read: Reader) -> dict[bytes, bytes | None]:
    """Nodes to write when appending leaf hashes to a tree of `size` leaves."""
    writes: dict[bytes, bytes | None] = {}

    def get(level: int, index: int) -> bytes:
        key = node_key(level, index)
        value = writes.get(key) or read(key)
        if value is None:
            raise IntegrityError(f"Merkle node {level}/{index} is missing")
        return value

    for offset, leaf in enumerate(leaves):
        index, level, value = size + offset, 0, leaf
        writes[node_key(0, index)] = value
        while index & 1:
            value = node_hash(get(level, index - 1), value)
            level, index = level + 1, index >> 1
            writes[node_key(level, index)] = value
    return writes


class Tree:
    """Read-side view of a stored tree: subtree hashes, roots and proofs."""

    def __init__(self, read: Reader) -> None:
        self.read = read

    def node(self, level: int, index: int) -> bytes:
        value = self.read(node_key(level, index))
        if value is None:
            raise IntegrityError(f"Merkle node {level}/{index} is missing")
        return value

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 9162's recursion produces."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int) -> bytes:
        return self.subtree(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]); raises ValueError unless 0 <= index < size."""
        if not 0 <= index < size:
            raise ValueError(f"index {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index - start < k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]); raises ValueError unless 0 < first <= second."""
        if not 0 < first <= second:
            raise ValueError(f"no consistency proof from size {first} to size {second}")
        proof: list[bytes] = []
        start, end, m, complete = 0, second, first, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            proof.append(self.subtree(start, end))
        proof.reverse()
        return proof


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is beyond tree size {size}")
    if len(leaf) != 32:
        raise ProofError("a leaf hash is 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """Raise ProofError unless proof shows leaf at index in the tree of this size and root."""
    if not _equal(root_from_inclusion(index, size, leaf, proof), root):
        raise ProofError(f"inclusion proof for entry {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> None:
    """Raise ProofError unless proof shows the tree of size1 is a prefix of the tree of size2."""
    if size1 > size2 or size1 < 0:
        raise ProofError(f"size {size1} is beyond size {size2}")
    if size1 == 0:
        raise ProofError("no consistency proof starts from the empty tree (RFC 9162 needs 0 < first size)")
    if size1 == size2:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if not _equal(root1, root2):
            raise ProofError("roots differ for equal sizes")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    if size1 & (size1 - 1) == 0:
        proof = [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if not _equal(fr, root1):
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if not _equal(sr, root2):
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")
