"""The RFC 9162 Merkle tree in ledger.merkle, held to three independent references.

1. The Certificate Transparency reference data checked in under tests/data/merkle/ (see its README):
   the classic eight-leaf tree with its roots and node hashes, and the inclusion and consistency
   probes of transparency-dev/merkle, each with a description and whether it must fail.
2. A naive MTH / PATH / PROOF written here straight from RFC 9162 section 2.1 (recursive on lists of
   leaves, its own hashing), compared with the stored-node fast path for every size 0..64, every
   index and every pair of sizes.
3. Hypothesis properties on random trees of 1..300 leaves: every proof the tree produces verifies,
   and every alteration of a proof, leaf, root, index or size is rejected with ProofError, except
   the size changes the RFC verification algorithm cannot see (where the altered proof has exactly
   the same shape, which is asserted too).
"""

import base64
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import IntegrityError
from ledger.layout import legacy_node_key
from ledger.merkle import (
    EMPTY_ROOT,
    LegacyTree,
    ProofError,
    TileCache,
    Tree,
    integrate,
    leaf_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).parent / "data" / "merkle"
REFERENCE = json.loads((DATA / "roots.json").read_text())
INCLUSION = json.loads((DATA / "inclusion.json").read_text())
CONSISTENCY = json.loads((DATA / "consistency.json").read_text())

LEAVES = [bytes.fromhex(leaf) for leaf in REFERENCE["leaves"]]
ROOTS = {row["size"]: bytes.fromhex(row["root"]) for row in REFERENCE["roots"]}


# --- a stored tree, written only through integrate() ------------------------------------------


class Store:
    """Node storage for tests: a dict that integrate() writes to and Tree reads from."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.size = 0

    def append(self, leaf_hashes: list[bytes]) -> None:
        for key, value in integrate(self.size, leaf_hashes, self.nodes.get).items():
            if value is None:
                self.nodes.pop(key, None)
            else:
                self.nodes[key] = value
        self.size += len(leaf_hashes)

    @property
    def tree(self) -> Tree:
        return Tree(self.nodes.get)


def stored(data: list[bytes], batches: list[int] | None = None) -> Store:
    """A store holding the leaves of `data`, appended in batches of the given sizes (else one call)."""
    store = Store()
    hashes = [leaf_hash(d) for d in data]
    for size in batches if batches is not None else [len(hashes)]:
        store.append(hashes[store.size : store.size + size])
    store.append(hashes[store.size :])
    return store


# --- RFC 9162 section 2.1, naively, with its own hashing --------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D_n) of RFC 9162 section 2.1.1."""
    if not d:
        return sha256(b"")
    if len(d) == 1:
        return sha256(b"\x00" + d[0])
    k = largest_power_of_two_below(len(d))
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D_n) of RFC 9162 section 2.1.3.1."""
    if len(d) == 1:
        return []
    k = largest_power_of_two_below(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D_n) of RFC 9162 section 2.1.4.1 (also m == n, which gives the empty proof)."""

    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        if m == len(d):
            return [] if b else [mth(d)]
        k = largest_power_of_two_below(len(d))
        if m <= k:
            return subproof(m, d[:k], b) + [mth(d[k:])]
        return subproof(m - k, d[k:], False) + [mth(d[:k])]

    return subproof(m, d, True)


def path_shape(m: int, n: int) -> list[str] | None:
    """Which side each PATH(m, D_n) element hashes on ('L' or 'R'), bottom up; None if m is not in D_n.

    The RFC verification algorithm sees nothing else of the tree: two (index, size) pairs with the same
    shape make it compute the same hash from the same proof.
    """

    def sub(m: int, n: int) -> list[str]:
        if n == 1:
            return []
        k = largest_power_of_two_below(n)
        if m < k:
            return sub(m, k) + ["R"]
        return sub(m - k, n - k) + ["L"]

    return sub(m, n) if 0 <= m < n else None


def proof_shape(m: int, n: int) -> list[str] | None:
    """The shape of PROOF(m, D_n), as path_shape; 'seed' marks an explicit first-tree subtree hash.

    None outside 0 < m <= n, the only sizes RFC 9162 defines a consistency proof for.
    """

    def sub(m: int, n: int, b: bool) -> list[str]:
        if m == n:
            return [] if b else ["seed"]
        k = largest_power_of_two_below(n)
        if m <= k:
            return sub(m, k, b) + ["R"]
        return sub(m - k, n - k, False) + ["L"]

    return sub(m, n, True) if 0 < m <= n else None


# --- reference data ----------------------------------------------------------------------------


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def case_id(case: dict[str, Any]) -> str:
    """'1/leafIdx sub @1' for testdata/inclusion/1/leafIdx-sub-@1.json."""
    group = "/".join(case["source"].split("/")[2:-1]) or "-"
    return f"{group}/{case['desc']}"


def numbered(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The happy paths of the numbered directories: proofs in the eight-leaf reference tree."""
    return [c for c in cases if c["source"].split("/")[2].isdigit() and not c["wantErr"]]


def test_reference_data_is_complete() -> None:
    assert len(LEAVES) == 8 and sorted(ROOTS) == list(range(9))
    for cases, kind in ((INCLUSION, "inclusion"), (CONSISTENCY, "consistency")):
        assert len({case_id(c) for c in cases}) == len(cases), "ids must be unique"
        dirs = {c["source"].split("/")[2] for c in cases}
        assert {"0", "1", "2", "3", "4", "additional"} <= dirs, kind
        for d in ("0", "1", "2", "3", "4"):
            here = [c for c in cases if c["source"].split("/")[2] == d]
            assert sum(not c["wantErr"] for c in here) == 1, f"{kind}/{d} has one happy path"
            # Upstream writes no failure probes for the empty proof of consistency 1 -> 1.
            if (kind, d) != ("consistency", "0"):
                assert sum(c["wantErr"] for c in here) >= 6, f"{kind}/{d} has failure probes"


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_of_the_reference_leaves(size: int) -> None:
    store = stored(LEAVES[:size])
    assert store.tree.root(size) == ROOTS[size]
    assert mth(LEAVES[:size]) == ROOTS[size]


def test_root_of_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0] == sha256(b"")
    assert Store().tree.root(0) == EMPTY_ROOT


def test_nodes_of_the_reference_tree() -> None:
    store = stored(LEAVES)
    for level, row in enumerate(REFERENCE["nodes"]):
        for index, value in enumerate(row):
            expected = bytes.fromhex(value)
            assert store.tree.node(level, index) == expected
            assert mth(LEAVES[index << level : (index + 1) << level]) == expected


@pytest.mark.parametrize("case", INCLUSION, ids=case_id)
def test_inclusion_vector(case: dict[str, Any]) -> None:
    """leafHash in the vectors is already a leaf hash (see test_vectors_carry_leaf_hashes)."""
    args = (case["leafIdx"], case["treeSize"], b64(case["leafHash"]), [b64(p) for p in case["proof"] or []])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, b64(case["root"]))
    else:
        verify_inclusion(*args, b64(case["root"]))
        assert root_from_inclusion(*args) == b64(case["root"])


@pytest.mark.parametrize("case", CONSISTENCY, ids=case_id)
def test_consistency_vector(case: dict[str, Any]) -> None:
    args = (case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), [b64(p) for p in case["proof"] or []])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vectors_carry_leaf_hashes() -> None:
    for case in numbered(INCLUSION):
        assert b64(case["leafHash"]) == leaf_hash(LEAVES[case["leafIdx"]]), case_id(case)
    single = [c for c in INCLUSION if "single-entry" in c["source"] and not c["wantErr"]]
    assert [b64(c["leafHash"]) for c in single] == [leaf_hash(b"data")]


@pytest.mark.parametrize("case", numbered(INCLUSION), ids=case_id)
def test_our_inclusion_proofs_are_the_vectors(case: dict[str, Any]) -> None:
    index, size = case["leafIdx"], case["treeSize"]
    tree = stored(LEAVES[:size]).tree
    assert tree.root(size) == b64(case["root"]) == ROOTS[size]
    assert tree.inclusion(index, size) == [b64(p) for p in case["proof"] or []]
    assert path(index, LEAVES[:size]) == tree.inclusion(index, size)


@pytest.mark.parametrize("case", numbered(CONSISTENCY), ids=case_id)
def test_our_consistency_proofs_are_the_vectors(case: dict[str, Any]) -> None:
    size1, size2 = case["size1"], case["size2"]
    tree = stored(LEAVES[:size2]).tree
    assert (tree.root(size1), tree.root(size2)) == (b64(case["root1"]), b64(case["root2"]))
    assert tree.consistency(size1, size2) == [b64(p) for p in case["proof"] or []]
    assert proof(size1, LEAVES[:size2]) == tree.consistency(size1, size2)


# --- the stored-node fast path against the naive RFC recursion, exhaustively ------------------


def growing(n: int) -> Iterator[tuple[list[bytes], Store]]:
    """Trees of every size 0..n, each store holding exactly its own leaves' nodes."""
    data = [hashlib.sha256(b"leaf %d" % i).digest()[: i % 7] for i in range(n)]
    store = Store()
    yield [], store
    for i in range(n):
        store.append([leaf_hash(data[i])])
        yield data[: i + 1], store


def test_fast_path_equals_naive_reference_for_every_size_index_and_pair() -> None:
    for data, store in growing(64):
        n, tree = len(data), store.tree
        assert tree.root(n) == mth(data)
        for m in range(n):
            got = tree.inclusion(m, n)
            assert got == path(m, data), (m, n)
            verify_inclusion(m, n, leaf_hash(data[m]), got, mth(data))
        for m in range(1, n + 1):
            got = tree.consistency(m, n)
            assert got == proof(m, data[:n]), (m, n)
            verify_consistency(m, n, mth(data[:m]), mth(data), got)


def test_subtree_hashes_equal_naive_reference() -> None:
    data, store = list(growing(40))[-1]
    for start in range(41):
        for end in range(start, 41):
            # Tree.subtree serves the ranges RFC 9162's recursion produces: start aligned to the length's power of two.
            if start and (end - start) > (start & -start):
                continue
            assert store.tree.subtree(start, end) == mth(data[start:end]), (start, end)


def test_batches_of_any_size_store_the_same_nodes() -> None:
    data = [b"%d" % i for i in range(100)]
    one_call = stored(data).nodes
    rng = random.Random(9162)
    for _ in range(20):
        batches: list[int] = []
        while sum(batches) < 100:
            batches.append(rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 31]))
        assert stored(data, batches).nodes == one_call
    assert stored(data, [1] * 100).nodes == one_call


def test_proof_requests_outside_the_tree_are_refused() -> None:
    tree = stored(LEAVES[:5]).tree
    for index, size in ((0, 0), (5, 5), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            tree.inclusion(index, size)
    for first, second in ((0, 5), (0, 0), (6, 5), (-1, 5)):
        with pytest.raises(ValueError):
            tree.consistency(first, second)


def test_missing_nodes_are_an_integrity_error() -> None:
    store = stored(LEAVES[:6])
    with pytest.raises(IntegrityError):
        store.tree.root(7)
    with pytest.raises(IntegrityError):
        integrate(7, [leaf_hash(b"x")], store.nodes.get)  # claims a size the store does not hold


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_consistency_from_the_empty_tree_is_refused(size: int) -> None:
    """RFC 9162 defines PROOF(m, D_n) for 0 < m only; Tree.consistency refuses m == 0 and so must the verifier."""
    root = stored(LEAVES[:size]).tree.root(size)
    with pytest.raises(ProofError):
        verify_consistency(0, size, EMPTY_ROOT, root, [])
    with pytest.raises(ProofError):
        verify_consistency(0, size, b"any root", root, [])
    with pytest.raises(ProofError):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


def test_hashes_of_the_wrong_length_are_refused() -> None:
    """A one-leaf tree's root is its leaf hash; a verifier must not 'verify' two empty strings as such."""
    with pytest.raises(ProofError):
        verify_inclusion(0, 1, b"", [], b"")
    with pytest.raises(ProofError):
        verify_inclusion(0, 1, b"short", [], b"short")


# --- properties on random trees ----------------------------------------------------------------

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[bytes], Store]:
    """A tree of 1..300 random leaves, appended in random batches."""
    size = draw(st.integers(1, 300))
    rng = random.Random(draw(st.integers(0, 2**32)))
    # Distinct leaves: with two equal leaves a proof for one is, rightly, a proof for the other.
    data = [i.to_bytes(2, "big") + rng.randbytes(rng.randrange(0, 40)) for i in range(size)]
    batches = [rng.randrange(0, 40) for _ in range(size)]
    return data, stored(data, batches)


def flip(value: bytes, bit: int) -> bytes:
    bit %= 8 * len(value)
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def inclusion_verifies(index: int, size: int, leaf: bytes, elements: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(index, size, leaf, elements, root)
    except ProofError:
        return False
    return True


def consistency_verifies(size1: int, size2: int, root1: bytes, root2: bytes, elements: list[bytes]) -> bool:
    try:
        verify_consistency(size1, size2, root1, root2, elements)
    except ProofError:
        return False
    return True


@PROPERTY
@given(trees(), st.data())
def test_every_inclusion_proof_verifies_and_every_alteration_is_refused(
    tree_and_data: tuple[list[bytes], Store], draw: st.DataObject
) -> None:
    data, store = tree_and_data
    n, tree = len(data), store.tree
    root = tree.root(n)
    index = draw.draw(st.integers(0, n - 1), label="index")
    leaf = leaf_hash(data[index])
    got = tree.inclusion(index, n)
    assert got == path(index, data)
    assert root == mth(data)
    verify_inclusion(index, n, leaf, got, root)
    assert root_from_inclusion(index, n, leaf, got) == root

    other = draw.draw(st.binary(min_size=32, max_size=32), label="other hash")
    bit = draw.draw(st.integers(0, 255), label="bit")
    refused: dict[str, tuple[bytes, list[bytes], bytes]] = {  # leaf, proof, root
        "leaf bit flipped": (flip(leaf, bit), got, root),
        "root bit flipped": (leaf, got, flip(root, bit)),
        "leaf data instead of leaf hash": (data[index], got, root),
        "element appended": (leaf, [*got, other], root),
        "root appended": (leaf, [*got, root], root),
        "element prepended": (leaf, [other, *got], root),
        "empty element appended": (leaf, [*got, b""], root),
    }
    if got:
        at = draw.draw(st.integers(0, len(got) - 1), label="element")
        refused |= {
            "element bit flipped": (leaf, [*got[:at], flip(got[at], bit), *got[at + 1 :]], root),
            "element dropped": (leaf, got[:at] + got[at + 1 :], root),
            "element duplicated": (leaf, [*got[: at + 1], got[at], *got[at + 1 :]], root),
            "element replaced": (leaf, [*got[:at], other, *got[at + 1 :]], root),
        }
    for what, (bad_leaf, bad_proof, bad_root) in refused.items():
        assert not inclusion_verifies(index, n, bad_leaf, bad_proof, bad_root), what

    # Another index or size is refused unless the verifier cannot tell it apart: same proof shape.
    for new_index, new_size in (
        (index - 1, n),
        (index + 1, n),
        (index ^ 2, n),
        (draw.draw(st.integers(0, 2 * n), label="index'"), n),
        (index, n - 1),
        (index, n + 1),
        (index, 2 * n),
        (index, n // 2),
        (index, draw.draw(st.integers(0, 2 * n + 2), label="size'")),
    ):
        same_shape = path_shape(new_index, new_size) == path_shape(index, n)
        verified = inclusion_verifies(new_index, new_size, leaf, got, root)
        assert verified == same_shape, (index, n, new_index, new_size)


@PROPERTY
@given(trees(), st.data())
def test_every_consistency_proof_verifies_and_every_alteration_is_refused(
    tree_and_data: tuple[list[bytes], Store], draw: st.DataObject
) -> None:
    data, store = tree_and_data
    tree = store.tree
    size2 = draw.draw(st.integers(1, len(data)), label="size2")
    size1 = draw.draw(st.integers(1, size2), label="size1")
    root1, root2 = tree.root(size1), tree.root(size2)
    got = tree.consistency(size1, size2)
    assert got == proof(size1, data[:size2])
    assert (root1, root2) == (mth(data[:size1]), mth(data[:size2]))
    verify_consistency(size1, size2, root1, root2, got)

    other = draw.draw(st.binary(min_size=32, max_size=32), label="other hash")
    bit = draw.draw(st.integers(0, 255), label="bit")
    refused: dict[str, tuple[bytes, bytes, list[bytes]]] = {  # root1, root2, proof
        "root1 bit flipped": (flip(root1, bit), root2, got),
        "root2 bit flipped": (root1, flip(root2, bit), got),
        "element appended": (root1, root2, [*got, other]),
        "root1 appended": (root1, root2, [*got, root1]),
        "root2 appended": (root1, root2, [*got, root2]),
        "element prepended": (root1, root2, [other, *got]),
        "root2 prepended": (root1, root2, [root2, *got]),
    }
    if size1 != size2:
        refused["roots swapped"] = (root2, root1, got)
    if got:
        at = draw.draw(st.integers(0, len(got) - 1), label="element")
        refused |= {
            "element bit flipped": (root1, root2, [*got[:at], flip(got[at], bit), *got[at + 1 :]]),
            "element dropped": (root1, root2, got[:at] + got[at + 1 :]),
            "element duplicated": (root1, root2, [*got[: at + 1], got[at], *got[at + 1 :]]),
            "element replaced": (root1, root2, [*got[:at], other, *got[at + 1 :]]),
            "proof emptied": (root1, root2, []),
        }
    for what, (bad_root1, bad_root2, bad_proof) in refused.items():
        assert not consistency_verifies(size1, size2, bad_root1, bad_root2, bad_proof), what

    # Other sizes are refused unless the verifier cannot tell them apart: same proof shape.
    # (Size 0 is left to test_consistency_from_the_empty_tree_is_refused.)
    for new1, new2 in (
        (size1 - 1, size2),
        (size1 + 1, size2),
        (size1 ^ 2, size2),
        (draw.draw(st.integers(1, 2 * size2), label="size1'"), size2),
        (size1, size2 - 1),
        (size1, size2 + 1),
        (size1, 2 * size2),
        (size1, size2 // 2),
        (size1, draw.draw(st.integers(0, 2 * size2 + 2), label="size2'")),
    ):
        if new1 == 0:
            continue
        same_shape = proof_shape(new1, new2) == proof_shape(size1, size2)
        verified = consistency_verifies(new1, new2, root1, root2, got)
        assert verified == same_shape, (size1, size2, new1, new2)


# --- the tree stored as tiles: beyond one tile, against the naive reference and the tile spec ------


def spec_tile(leaves: list[bytes], level: int, index: int, width: int) -> bytes:
    """C2SP tlog-tiles: hash i of tile <level>/<index> is MTH of the entries under it (naive)."""
    span = 256**level
    return b"".join(mth(leaves[(index * 256 + i) * span : (index * 256 + i + 1) * span]) for i in range(width))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 1400), data=st.data())
def test_proofs_from_tiles_equal_proofs_from_the_leaves(size: int, data: st.DataObject) -> None:
    """Trees over several tiles, grown in random batches: roots, inclusion and consistency proofs
    read from the stored tiles equal RFC 9162 computed naively from the leaves."""
    leaves = [b"leaf %d" % i for i in range(size)]
    batches = data.draw(st.lists(st.integers(0, 700), max_size=6))
    store = stored(leaves, batches)
    tree = store.tree
    assert tree.root(size) == mth(leaves)
    for m in data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=4)):
        assert tree.inclusion(m, size) == path(m, leaves), (m, size)
        verify_inclusion(m, size, leaf_hash(leaves[m]), tree.inclusion(m, size), mth(leaves))
    first = data.draw(st.integers(1, size))
    assert tree.consistency(first, size) == proof(first, leaves)
    older = data.draw(st.integers(1, size))
    assert tree.root(older) == mth(leaves[:older])  # an older size: the stored edge is not its own
    if older > 1:
        m = data.draw(st.integers(0, older - 1))
        assert tree.inclusion(m, older) == path(m, leaves[:older])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.integers(1, 400), min_size=1, max_size=6), data=st.data())
def test_trees_sharing_a_cache_see_the_tree_grow(batches: list[int], data: st.DataObject) -> None:
    """Trees that share one TileCache while the tree grows (so it holds partial tiles and an edge
    of older sizes) give, after each append, the roots and proofs of the tree as it now is, and of
    the older trees, as RFC 9162 computes them from the leaves."""
    leaves = [b"grown %d" % i for i in range(sum(batches))]
    store, cache = Store(), TileCache()
    for batch in batches:
        store.append([leaf_hash(leaf) for leaf in leaves[store.size : store.size + batch]])
        size, tree = store.size, Tree(store.nodes.get, cache)
        assert tree.root(size) == mth(leaves[:size])
        for m in data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3)):
            assert Tree(store.nodes.get, cache).inclusion(m, size) == path(m, leaves[:size]), (m, size)
        older = data.draw(st.integers(1, size))
        assert Tree(store.nodes.get, cache).consistency(older, size) == proof(older, leaves[:size])
        assert Tree(store.nodes.get, cache).root(older) == mth(leaves[:older])
    if store.size & (store.size - 1):  # the root of a tree not a power of two is read from the edge
        assert cache.edge is not None and cache.edge[0] == store.size
    assert all(level > 0 for level, _ in cache.tiles), "level-0 tiles are read from the store each time"


def test_a_tree_in_the_old_one_key_per_node_layout_gives_the_same_proofs() -> None:
    leaves = [b"old %d" % i for i in range(700)]
    tree = stored(leaves).tree
    nodes = {
        legacy_node_key(level, index): tree.node(level, index)
        for level in range(10)
        for index in range(700 >> level)
    }
    legacy = LegacyTree(nodes.get)
    for m in (0, 255, 256, 511, 699):
        assert legacy.inclusion(m, 700) == path(m, leaves), m
    assert legacy.consistency(300, 700) == proof(300, leaves)


def test_a_tile_missing_from_the_store_is_an_integrity_error_even_through_the_cache() -> None:
    store, cache = stored([b"%d" % i for i in range(700)]), TileCache()
    Tree(store.nodes.get, cache).inclusion(5, 700)
    del store.nodes[b"h\x00" + (1).to_bytes(8, "big")]
    with pytest.raises(IntegrityError, match="missing"):
        Tree(store.nodes.get, cache).inclusion(300, 700)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 1400), data=st.data())
def test_stored_tiles_hold_the_spec_tiles(size: int, data: st.DataObject) -> None:
    """Every hash tile the tree of `size` holds, full or partial, is the stored tile's first hashes."""
    leaves = [b"%d" % i for i in range(size)]
    store = stored(leaves, data.draw(st.lists(st.integers(1, 600), max_size=4)))
    for level in (0, 1):
        span = 256**level
        full, width = divmod(size // span, 256)
        for index in range(full + 1):
            w = 256 if index < full else width
            if w:
                assert store.tree.hashes(level, index, w) == spec_tile(leaves, level, index, w)
    with pytest.raises(IntegrityError):
        store.tree.hashes(0, size // 256, size % 256 + 1)  # wider than the tree holds


def test_a_full_tile_never_changes_and_the_edge_tile_grows() -> None:
    store = stored([b"%d" % i for i in range(256)])
    full = store.nodes[b"h\x00" + (0).to_bytes(8, "big")]
    store.append([leaf_hash(b"more %d" % i) for i in range(300)])
    assert store.nodes[b"h\x00" + (0).to_bytes(8, "big")] == full
    assert len(store.tree.hashes(0, 2, 44)) == 44 * 32
    assert store.tree.hashes(1, 0, 2) == store.tree.node(8, 0) + store.tree.node(8, 1)


def test_an_append_writes_only_the_tiles_it_grows_and_the_edge() -> None:
    store = stored([b"%d" % i for i in range(300)])
    tile = lambda level, index: b"h" + bytes([level]) + index.to_bytes(8, "big")  # noqa: E731
    assert set(integrate(300, [leaf_hash(b"x")], store.nodes.get)) == {tile(0, 1), b"h\xff"}
    assert set(integrate(300, [leaf_hash(b"%d" % i) for i in range(213)], store.nodes.get)) == {
        tile(0, 1), tile(0, 2), tile(1, 0), b"h\xff"
    }
