"""The latest signed checkpoint, also kept outside LevelDB: ``DATA_DIR/checkpoint``.

LevelDB can lose the tail of the log without noticing: a damaged write-ahead log is skipped
from the first bad record on, and an older copy of the log directory restored by hand looks
like a whole, shorter ledger. The node's signature on its latest checkpoint is the evidence of
what it held. So a copy of that checkpoint lives in a plain file beside the LevelDBs, replaced
atomically right after each synced log batch (:meth:`CheckpointFile.store`, from
:meth:`ledger.log.Log.commit`), and

- at start-up (:func:`open_log`), a log shorter than the file's tree size, or whose tree at that
  size is not the one signed, is refused; so is a file that the genesis node key did not sign;
- the node never signs a checkpoint for a smaller tree than the file's (:meth:`CheckpointFile.guard`);
- `orchestrator verify` checks the file the same way (:func:`read_signed`, ledger/local.py).

A data dir made before the file existed has none: start-up then writes the log's own
checkpoint to it.
"""

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import checkpoint, keys
from ledger.entry import decode
from ledger.errors import IntegrityError, LedgerError, StorageError
from ledger.log import Log
from ledger.membership import genesis_settings, node_keys
from ledger.store import Store

PART = "checkpoint file"

log = logging.getLogger("orchestrator.ledger")


class CheckpointFileError(IntegrityError):
    """The log and the checkpoint file disagree, or the file is unusable.

    `where` is an entry sequence number or a part name, as in a verification failure.
    """

    default_title = "Log does not match the signed checkpoint"

    def __init__(self, where: int | str, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


class CheckpointFile:
    """The file holding the node's latest signed checkpoint note, and the tree size it signs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: The largest tree size this node is known to have signed (the file's, then each stored).
        self.signed_size: int | None = None

    def read(self) -> str | None:
        """The note in the file, or None when there is no file (a ledger made before it existed)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            return data.decode()
        except UnicodeDecodeError as e:
            raise CheckpointFileError(PART, f"{self.path} is not UTF-8 text (byte {e.start})") from e

    def guard(self, size: int) -> None:
        """Raise IntegrityError if size is smaller than a tree size this node already signed."""
        if self.signed_size is not None and size < self.signed_size:
            raise IntegrityError(
                f"refusing to sign a checkpoint for {size} entries: this node already signed one for "
                f"{self.signed_size} ({self.path}); the log has lost entries"
            )

    def check(self, note: str) -> None:
        """guard() for the tree size a note signs."""
        self.guard(note_size(note))

    def store(self, note: str) -> None:
        """Replace the file with note, atomically and durably; refuses a smaller tree (guard)."""
        size = note_size(note)
        self.guard(size)
        write_atomically(self.path, note.encode())
        self.signed_size = size

    def follow(self, note: str) -> None:
        """store() for a note already durable in the log (after the durability point): a file
        that cannot be written (a full disk) is logged, not raised, since the entries it signs
        are kept whatever happens to the file. The file then lags, which is safe (it only ever
        claims less than the log holds); the next commit tries again. The guard follows the note."""
        try:
            self.store(note)
        except StorageError as e:
            self.signed_size = max(self.signed_size or 0, note_size(note))
            log.warning("checkpoint file not updated", extra={"fields": {"reason": e.message}})


def note_size(note: str) -> int:
    """The tree size a checkpoint note claims (its signature unchecked); raises CheckpointError."""
    return checkpoint.parse_body(note.partition("\n\n")[0] + "\n").size


def write_atomically(path: Path, data: bytes, *, sync_directory: bool = False) -> None:
    """Write a temporary file, fsync it, rename it over path (then fsync the directory, if asked).

    For the checkpoint file the directory is not synced: after a crash the rename may be lost and the file hold the
    previous checkpoint (or none, for a new ledger), which the log, never shorter, still
    satisfies. Syncing it cost most of the file's price per commit (measured: 5.2 ms against
    1.1 ms per commit without the file; 1.3 ms of the file's 6 ms without the directory sync)."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.unlink(temporary)  # a full disk: give its space back; the old file stays
            raise
        finally:
            os.close(fd)
        os.replace(temporary, path)
        if sync_directory:
            fsync_directory(path.parent)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror}") from e


def fsync_directory(directory: Path) -> None:
    """fsync a directory, so that the entries created or renamed in it persist. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def genesis_key(log: Log) -> tuple[str, list[Ed25519PublicKey]]:
    """The ledger's origin and node public keys, from the log's genesis entry."""
    try:
        entry = decode(log.raw(0))
        if entry.genesis is None:
            raise IntegrityError("entry 0 is not a genesis entry")
        settings = genesis_settings(entry.genesis)
    except LedgerError as e:
        raise CheckpointFileError(0, f"genesis: {e.message}") from e
    return settings["origin"], [keys.public_from_b64(public) for public in node_keys(settings).values()]


def read_signed(file: CheckpointFile, log: Log) -> tuple[str, checkpoint.Checkpoint] | None:
    """The note in the file and its checkpoint, checked against the ledger's genesis and the
    log's size. None without a file. Raises CheckpointFileError when the file is malformed, not signed by
    the genesis node key under the ledger's origin, or covers more entries than the log holds.
    """
    note = file.read()
    if note is None:
        return None
    try:
        claimed = note_size(note)
    except IntegrityError as e:
        raise CheckpointFileError(PART, f"{file.path}: {e.message}") from e
    size = log.size()
    if size == 0:  # not even a genesis to check the signature with
        raise CheckpointFileError(0, _truncated(claimed, size, file.path))
    origin, public = genesis_key(log)
    try:
        signed = checkpoint.open_note(note, origin, public)
    except IntegrityError as e:
        raise CheckpointFileError(PART, f"{file.path}: {e.message}") from e
    if signed.origin != origin:
        raise CheckpointFileError(PART, f"{file.path} is for origin {signed.origin!r}, the ledger is {origin!r}")
    if signed.size > size:
        raise CheckpointFileError(size, _truncated(signed.size, size, file.path))
    file.signed_size = signed.size
    return note, signed


def _truncated(signed: int, size: int, path: Path) -> str:
    return f"log is truncated: this node signed a checkpoint for {signed} entries ({path}), the log holds {size}"


def open_log(store: Store, path: Path | None) -> Log:
    """The log over store, keeping its latest checkpoint in the file at path (None: no file).

    At start-up: raises CheckpointFileError unless the log holds the tree the file's checkpoint
    signs (read_signed, then the root at that size), and writes the log's own checkpoint to the
    file when the file is missing or older.
    """
    if path is None:
        return Log(store)
    file = CheckpointFile(path)
    log = Log(store, file)
    try:
        kept = read_signed(file, log)
    except CheckpointFileError as e:
        raise CheckpointFileError(e.where, f"{e.reason}; refusing to open it") from e
    signed = None if kept is None else kept[1]
    if signed is not None and signed.size and log.tree().root(signed.size) != signed.root:
        raise CheckpointFileError(
            PART,
            f"the log's first {signed.size} entries are not those this node signed ({path}): "
            "the log was altered or replaced; refusing to open it",
        )
    note = log.checkpoint()
    if note is None or log.size() == 0:
        return log
    origin, public = genesis_key(log)
    try:
        own = checkpoint.open_note(note, origin, public)
    except IntegrityError as e:
        raise CheckpointFileError("checkpoint", f"the log's checkpoint: {e.message}") from e
    if signed is None or own.size > signed.size:
        file.follow(note)
    return log
