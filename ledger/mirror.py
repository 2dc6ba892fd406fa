"""Keeping a verified copy of a ledger's log from its tlog-tiles (`orchestrator mirror`).

:func:`mirror` brings a local log (a data dir's ``log``, as a node lays it out: entries, tiles,
size, checkpoint) up to the checkpoint a node serves, reading only through ``fetch`` (a path
after the node's ``/``: ``checkpoint``, ``tile/entries/<N>[.p/<W>]``, ``tile/<L>/<N>[.p/<W>]``),
so that the C2SP tlog-tiles of any node, or of a plain file server mirroring them, will do.

It checks, then commits, in this order, everything in memory first: the checkpoint's signature
(by the node key of the copy's genesis, of the fetched genesis on a first run, or the ``vkey``
given, which that genesis must list) and the witnesses' cosignatures when a quorum is asked; that
the checkpoint is not smaller than the copy; the entries the copy already holds again, where a
bundle overlaps them; every new entry's leaf hash into the copy's tree, whose root must be the
checkpoint's (the new tree extends the copy's, so it is consistent with the checkpoint mirrored
before); and every hash tile the new entries changed, as the node serves it, against the tree
rebuilt here. Only then one synced batch writes entries, tiles, size and the checkpoint note. Any
failure raises :class:`MirrorError` and writes nothing.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint, cosignature, keys, merkle, tiles
from ledger.entry import decode
from ledger.errors import LedgerError
from ledger.layout import EDGE_KEY, TILE_PREFIX
from ledger.log import Log
from ledger.membership import genesis_settings, node_keys
from ledger.state import Progress
from ledger.verify import VerificationError

Fetch = Callable[[str], bytes]


class MirrorError(VerificationError):
    """What the node serves does not check out against itself or against the copy; nothing was written."""

    default_title = "Mirror refused"


@dataclass(frozen=True)
class MirrorReport:
    before: int
    after: int
    tiles: int
    root: bytes
    checkpoint: str
    witnessed: str = ""

    def summary(self) -> str:
        import base64

        root = base64.b64encode(self.root).decode()
        if self.after == self.before:
            text = f"up to date: {self.after} entries, root {root}"
        else:
            text = (
                f"mirrored {self.after - self.before} new entries ({self.before} -> {self.after}), "
                f"{self.tiles} hash tiles checked, root {root}"
            )
        return text + (f"; {self.witnessed}" if self.witnessed else "")


def mirror(
    log: Log,
    fetch: Fetch,
    *,
    vkey: tuple[str, Ed25519PublicKey] | None = None,
    witnesses: Sequence[cosignature.WitnessKey] = (),
    quorum: int = 0,
    progress: Progress | None = None,
) -> MirrorReport:
    """Bring `log` up to the node's checkpoint; raise MirrorError (nothing written) if anything
    fetched does not verify. `fetch` raises StorageError when the node does not answer."""
    note = _text(fetch("checkpoint"))
    try:
        claimed = checkpoint.parse_body(note.partition("\n\n")[0] + "\n")
    except LedgerError as e:
        raise MirrorError("checkpoint", e.message) from e
    before = log.size()
    if claimed.size == 0:
        raise MirrorError("checkpoint", "the node's checkpoint covers no entries")
    if vkey is not None:  # checked before any tile is fetched: the genesis may be in a partial bundle
        try:
            checkpoint.open_note(note, *vkey)
        except LedgerError as e:
            raise MirrorError("checkpoint", e.message) from e
    bundles = _Bundles(fetch, claimed.size)
    genesis = log.raw(0) if before else bundles.entries(0, keep=True)[0]
    origin, public = _identity(genesis, vkey)
    try:
        signed = checkpoint.open_note(note, origin, public)
    except LedgerError as e:
        raise MirrorError("checkpoint", e.message) from e
    witnessed = ""
    if quorum:
        try:
            found = cosignature.require(note, witnesses, quorum)
        except LedgerError as e:
            raise MirrorError("checkpoint", e.message) from e
        witnessed = f"cosigned by {', '.join(sorted(found))}"
    if signed.size < before:
        raise MirrorError(
            "checkpoint",
            f"the node's checkpoint covers {signed.size} entries, the copy already holds {before}: "
            "its tree is not consistent with the copy",
        )
    if signed.size == before:
        if log.tree().root(before) != signed.root:
            raise MirrorError(
                "checkpoint", f"the node signs another tree of {before} entries than the copy holds: history differs"
            )
        if note != log.checkpoint():
            log.commit({}, note)  # the same tree, maybe more cosignatures
        return MirrorReport(before, before, 0, signed.root, note, witnessed)
    new: list[bytes] = []
    for first in range(before - before % tiles.WIDTH, signed.size, tiles.WIDTH):
        for seq, raw in enumerate(bundles.entries(first // tiles.WIDTH), start=first):
            if seq < before:
                if raw != log.raw(seq):
                    raise MirrorError(seq, "the node serves other bytes for this entry than the copy holds: "
                                           "its history is not consistent with the copy")
            else:
                new.append(raw)
        if progress is not None:
            progress(before + len(new), signed.size)
    writes, root = log.prepare(before, new)
    if root != signed.root:
        raise MirrorError(
            "checkpoint",
            f"the node's entries {before}..{signed.size - 1} do not lead to its checkpoint's root: "
            "its entries are not those it signed, or its tree is not consistent with the copy",
        )
    checked = _check_tiles(fetch, writes)
    log.commit(writes, note)  # the durability point
    return MirrorReport(before, signed.size, checked, root, note, witnessed)


class _Bundles:
    """Entry bundles of the tree the checkpoint signs, each fetched once."""

    def __init__(self, fetch: Fetch, size: int) -> None:
        self.fetch = fetch
        self.size = size
        self._got: dict[int, list[bytes]] = {}

    def entries(self, index: int, keep: bool = False) -> list[bytes]:
        """The entries of bundle `index`; kept for a later call only with `keep`."""
        found = self._got.pop(index, None)
        if found is None:
            width = min(tiles.WIDTH, self.size - index * tiles.WIDTH)
            path = tiles.tile_path(None, index, None if width == tiles.WIDTH else width)
            found = _split_bundle(self.fetch("tile/" + path), width, path)
        if keep:
            self._got[index] = found
        return found


def _split_bundle(data: bytes, width: int, path: str) -> list[bytes]:
    entries, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise MirrorError(f"tile/{path}", "the entry bundle is cut short")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if len(entries) != width:
        raise MirrorError(f"tile/{path}", f"the entry bundle holds {len(entries)} entries, not {width}")
    return entries


def _check_tiles(fetch: Fetch, writes: dict[bytes, bytes | None]) -> int:
    """Every hash tile the new entries changed, as the node serves it, against the one rebuilt here."""
    count = 0
    for key, value in sorted(writes.items()):
        if not key.startswith(TILE_PREFIX) or key == EDGE_KEY or value is None:
            continue
        level, index, width = key[1], int.from_bytes(key[2:], "big"), merkle.tile_width(value)
        path = "tile/" + tiles.tile_path(level, index, None if width == tiles.WIDTH else width)
        if fetch(path) != value[: width * merkle.HASH]:
            raise MirrorError(path, "the hash tile the node serves does not match its entries")
        count += 1
    return count


def _identity(genesis: bytes, vkey: tuple[str, Ed25519PublicKey] | None) -> tuple[str, list[Ed25519PublicKey]]:
    """The origin and the node keys a checkpoint must be signed with: the genesis's, or just the
    vkey given (which the genesis must list, under its origin)."""
    try:
        entry = decode(genesis)
        if entry.genesis is None:
            raise MirrorError(0, "entry 0 is not a genesis entry")
        settings = genesis_settings(entry.genesis)
        origin = str(settings["origin"])
        public = [keys.public_from_b64(k) for k in node_keys(settings).values()]
    except MirrorError:
        raise
    except (LedgerError, KeyError, TypeError, ValueError) as e:
        reason = e.message if isinstance(e, LedgerError) else repr(e)
        raise MirrorError(0, f"malformed genesis: {reason}") from e
    if vkey is None:
        return origin, public
    name, key = vkey
    raw = keys.public_b64(key)
    if name != origin or raw not in {keys.public_b64(k) for k in public}:
        raise MirrorError(0, f"the ledger's genesis (origin {origin!r}) does not name the node key --vkey gives")
    return origin, [key]


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise MirrorError("checkpoint", f"the checkpoint is not UTF-8 text (byte {e.start})") from e
