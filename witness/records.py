"""The witness's durable records: per log, the latest checkpoint it cosigned; and the evidence.

Layout of the witness directory::

    witness.pem                       the witness's Ed25519 key (PKCS#8 PEM, mode 0600)
    name                              the witness's name (one line)
    lock                              held (flock) by the one serving process
    logs/<sha256(origin) hex>/checkpoint   the latest cosigned note: the log's signature(s) and ours
    logs/<sha256(origin) hex>/evidence/<n>-held.note, <n>-refused.txt (at most MAX_EVIDENCE per log)
                                      a validly signed checkpoint refused as inconsistent with the
                                      one held then (the whole request as sent), and that one

Invariants: a record is replaced atomically and durably (temporary file, fsync, rename, fsync of
the directory) before the cosignature is returned; a record that cannot be read or parsed stops
the witness from starting (it is never taken for "no record", which would let it cosign a tree
inconsistent with the one it cosigned before). One process holds the directory (``lock``).
"""

import fcntl
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ledger import note as notes
from ledger.checkpoint_file import fsync_directory, write_atomically
from ledger.errors import IntegrityError, StorageError

#: Refused checkpoints kept per log at most (the first ones: a forked log retries its new trees).
MAX_EVIDENCE = 100
#: Reads our own cosignature's timestamp from a record's note (raises ValueError if it has none).
TimestampOf = Callable[[notes.Note], int]


class RecordError(IntegrityError):
    default_title = "Witness record unusable"


def write_durably(path: Path, data: bytes) -> None:
    """Write a temporary file, fsync it, rename it over path, fsync the directory.

    The directory sync matters here (unlike for the node's checkpoint file): a rename lost in a
    crash would bring back an older record, against which the witness could then cosign a tree
    inconsistent with one it already cosigned."""
    write_atomically(path, data, sync_directory=True)


def _make_durably(directory: Path) -> None:
    """Create directory (and its missing parents), syncing each parent so the new entry persists."""
    missing = []
    path = directory
    while not path.exists():
        missing.append(path)
        path = path.parent
    try:
        for new in reversed(missing):
            new.mkdir()
            fsync_directory(new.parent)
    except OSError as e:
        raise StorageError(f"cannot create {directory}: {e.strerror}") from e


def origin_hash(origin: str) -> str:
    """The lower-case hex SHA-256 of a log's origin (names its directory and monitoring URL)."""
    return hashlib.sha256(origin.encode()).hexdigest()


@dataclass(frozen=True)
class Record:
    """The latest checkpoint cosigned for one log: its note (with our cosignature) and tree head."""

    note: str
    head: notes.TreeHead
    timestamp: int  # of our cosignature on it


class Records:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_file: IO[bytes] | None = None

    def lock(self) -> None:
        """Take the directory for this process; raises StorageError if another one holds it."""
        path = self.directory / "lock"
        handle = open(path, "ab")  # noqa: SIM115 (held open for the life of the process)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            raise StorageError(f"{self.directory} is in use by another witness process") from e
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _log_dir(self, origin: str) -> Path:
        return self.directory / "logs" / origin_hash(origin)

    def read(self, origin: str, parse_timestamp: TimestampOf) -> Record | None:
        """The record for origin, or None if the witness never cosigned for it.

        Raises RecordError if the record exists but cannot be read or does not parse."""
        path = self._log_dir(origin) / "checkpoint"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RecordError(f"cannot read {path}: {e.strerror}") from e
        try:
            text = data.decode()
            signed = notes.parse(text)
            head = notes.parse_checkpoint(signed.text)
            timestamp = parse_timestamp(signed)
        except (UnicodeDecodeError, IntegrityError, ValueError) as e:
            raise RecordError(f"{path} is damaged ({e}); refusing to witness {origin!r} without it") from e
        if head.origin != origin:
            raise RecordError(f"{path} holds a checkpoint of {head.origin!r}, not {origin!r}")
        return Record(text, head, timestamp)

    def write(self, origin: str, record_note: str) -> None:
        """Replace the record of origin with the note, atomically and durably."""
        directory = self._log_dir(origin)
        _make_durably(directory)
        write_durably(directory / "checkpoint", record_note.encode())

    def keep_evidence(self, origin: str, held: str, refused: bytes) -> Path:
        """Keep a refused request beside the note held when it was refused; returns the refused file."""
        directory = self._log_dir(origin) / "evidence"
        _make_durably(directory)
        try:
            number = 1 + max((int(p.name.split("-")[0]) for p in directory.glob("*-refused.txt")), default=0)
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot keep evidence in {directory}: {e}") from e
        if number > MAX_EVIDENCE:
            raise StorageError(f"{directory} already holds {MAX_EVIDENCE} refused checkpoints; keeping no more")
        write_durably(directory / f"{number}-held.note", held.encode())
        write_durably(directory / f"{number}-refused.txt", refused)
        return directory / f"{number}-refused.txt"

    def evidence(self, origin: str) -> list[tuple[str, bytes]]:
        """Every (held note, refused request) kept for origin, oldest first."""
        directory = self._log_dir(origin) / "evidence"
        if not directory.exists():
            return []
        numbers = sorted(int(p.name.split("-")[0]) for p in directory.glob("*-refused.txt"))
        return [
            ((directory / f"{n}-held.note").read_text(), (directory / f"{n}-refused.txt").read_bytes())
            for n in numbers
        ]
