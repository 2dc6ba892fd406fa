"""Nonces seen in the signature window, for reads and writes alike, and what became of them.

Accepted writes record their nonce in state (the state machine refuses a reused one, for
good). Reads and refused writes are not logged, so this cache is what stops a read reusing
a nonce, a write reusing a read's nonce, and a refused write taking effect later: a nonce
is tied to the signature that used it, and to its refusal if it was refused. The exact same
signed write may come again (a safe retry) and gets the same refusal; any other request with
that nonce is refused as a replay.

The cache is kept in memory and journaled in a store of its own (``DATA_DIR/nonces``), so
a restart within the signature window forgets nothing. Records expire when their signature
could no longer be accepted (created + window).
"""

import logging
import threading
from collections import deque
from dataclasses import dataclass

from ledger import canonical, errors
from ledger.errors import AuthError, LedgerError, StorageError
from ledger.layout import from_n8, n8
from ledger.store import Store

#: Refusals worth remembering: the request's own fault, so the same bytes must never pass later.
#: (Storage trouble and internal errors are not: a resend after them must go through.)
REFUSALS: tuple[type[LedgerError], ...] = (
    errors.ValidationError,
    errors.NotFoundError,
    errors.ConflictError,
    errors.AuthError,
    errors.ForbiddenError,
    errors.UnsupportedMediaError,
    errors.MisdirectedError,
)
_BY_NAME: dict[str, type[LedgerError]] = {cls.__name__: cls for cls in (*REFUSALS, errors.UnknownReferenceError)}
log = logging.getLogger("orchestrator.ledger")
_RECORD = b"n/"  # n/<key id>\0<nonce> -> {"fp", "until", "refused"?}
_EXPIRY = b"x/"  # x/<n8 until><key id>\0<nonce> -> b"" (expiry order, for pruning)


@dataclass(frozen=True)
class Seen:
    fingerprint: bytes
    until: int  # Unix seconds after which the signature can no longer be accepted
    refusal: LedgerError | None = None
    unverified: bool = False  # refused before its signature could be checked (counted apart)


def replay(key_id: str, nonce: str) -> AuthError:
    return AuthError(f"nonce {nonce!r} was already used by key {key_id!r}", reason="replay")


def refusable(error: LedgerError) -> bool:
    return isinstance(error, REFUSALS)


class NonceCache:
    MAX_UNVERIFIED = 100_000

    def __init__(self, window_s: int, journal: Store | None = None, *, now_s: int = 0) -> None:
        self.window_s = window_s
        self.journal = journal
        self._seen: dict[tuple[str, str], Seen] = {}
        self._expiry: deque[tuple[int, tuple[str, str]]] = deque()
        self._pruning = threading.Lock()
        self._unverified = 0
        if journal is not None:
            self._load(journal, now_s)

    def claim(self, key_id: str, nonce: str, fingerprint: bytes, created: int, now_s: int, *, resend: bool) -> None:
        """Record the nonce for this signature. Raises AuthError (replay) if another signature
        used it, or if this one did and it was a read; re-raises the recorded refusal when this
        same signed write was refused before.

        Without a lock: dict.setdefault is atomic, so of two concurrent claims exactly one
        inserts (request threads waiting on a shared lock here cost context switches under load).
        """
        self._prune(now_s)
        item = (key_id, nonce)
        # A signature stays acceptable until created + window; remember it at least that long.
        mine = Seen(fingerprint, max(created, now_s) + self.window_s)  # a new object: identity tells who won
        seen = self._seen.setdefault(item, mine)
        if seen is mine:
            self._expiry.append((mine.until, item))
            if not resend:
                self._journal(item, mine)  # a write's nonce is recorded durably in state if accepted
            return
        if not resend or seen.fingerprint != fingerprint:
            raise replay(key_id, nonce)
        if seen.refusal is not None:
            raise _copy(seen.refusal)

    def refusal(self, key_id: str, nonce: str, fingerprint: bytes) -> LedgerError | None:
        """The refusal remembered for this signed request, if it was refused (a fresh copy)."""
        seen = self._seen.get((key_id, nonce))
        if seen is None or seen.fingerprint != fingerprint or seen.refusal is None:
            return None
        return _copy(seen.refusal)

    def refuse(
        self, key_id: str, nonce: str, fingerprint: bytes, error: LedgerError, now_s: int, *, verified: bool = True
    ) -> None:
        """Remember that this signed request was refused with error (only if it holds the nonce).

        `verified=False`: its signature could not be checked (an unknown key). Anyone can send
        those, so at most MAX_UNVERIFIED are remembered at a time."""
        item = (key_id, nonce)
        seen = self._seen.get(item)
        if seen is None:
            if not verified:
                if self._unverified >= self.MAX_UNVERIFIED:
                    return
                self._unverified += 1
            seen = Seen(fingerprint, now_s + self.window_s, unverified=not verified)
            self._expiry.append((seen.until, item))
        elif seen.fingerprint != fingerprint:
            return
        refused = Seen(fingerprint, seen.until, _copy(error), seen.unverified)
        self._seen[item] = refused
        self._journal(item, refused)

    def _journal(self, item: tuple[str, str], seen: Seen) -> None:
        if self.journal is None:
            return
        key = _record_key(item)
        record: dict[str, object] = {"fp": seen.fingerprint.hex(), "until": seen.until}
        if seen.refusal is not None:
            record["refused"] = [type(seen.refusal).__name__, seen.refusal.message, _reason(seen.refusal)]
        self._write({key: canonical.dumps(record), _EXPIRY + n8(seen.until) + key[2:]: b""})

    def _write(self, writes: dict[bytes, bytes | None]) -> None:
        """Journal writes. A failing disk must not stop reads: the record stays in memory, and
        only a restart before the disk recovers could forget it."""
        if self.journal is None:
            return
        try:
            self.journal.write(writes, sync=False)
        except StorageError as e:
            log.warning("nonce journal write failed (kept in memory): %s", e.message)

    def _load(self, journal: Store, now_s: int) -> None:
        """Take up the journal's unexpired records (and forget the expired ones)."""
        expired: dict[bytes, bytes | None] = {}
        for key, _ in journal.scan(_EXPIRY):
            until = from_n8(key[2:10])
            if until >= now_s:
                break
            expired[key] = None
            expired[_RECORD + key[10:]] = None
        if expired:
            journal.write(expired, sync=False)
        for key, value in journal.scan(_RECORD):
            record = canonical.loads(value)
            key_id, _, nonce = key[2:].decode().partition("\x00")
            refusal = _restore(record["refused"]) if "refused" in record else None
            self._seen[(key_id, nonce)] = Seen(bytes.fromhex(record["fp"]), record["until"], refusal)
            self._expiry.append((record["until"], (key_id, nonce)))
        self._expiry = deque(sorted(self._expiry))

    def _prune(self, now_s: int) -> None:
        """Forget nonces whose signatures can no longer be accepted (one pruner at a time)."""
        if self._pruning.acquire(blocking=False):  # only the pruner pops: the peek below is safe
            try:
                gone: dict[bytes, bytes | None] = {}
                while self._expiry and self._expiry[0][0] < now_s:
                    until, item = self._expiry.popleft()
                    seen = self._seen.pop(item, None)
                    if seen is not None and seen.unverified:
                        self._unverified -= 1
                    if self.journal is not None:
                        key = _record_key(item)
                        gone[key] = None
                        gone[_EXPIRY + n8(until) + key[2:]] = None
                if gone:
                    self._write(gone)
            finally:
                self._pruning.release()


def _record_key(item: tuple[str, str]) -> bytes:
    return _RECORD + item[0].encode() + b"\x00" + item[1].encode()


def _reason(error: LedgerError) -> str:
    return error.reason if isinstance(error, AuthError) else ""


def _copy(error: LedgerError) -> LedgerError:
    """A fresh exception equal to error (an exception object is raised once per request)."""
    return _restore([type(error).__name__, error.message, _reason(error)])


def _restore(fields: list[str]) -> LedgerError:
    name, message, reason = fields
    cls = _BY_NAME.get(name, errors.ValidationError)
    if issubclass(cls, AuthError):
        return cls(message, reason=reason or "other")
    return cls(message)


