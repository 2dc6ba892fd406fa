"""The add-checkpoint decision (https://c2sp.org/tlog-witness), over the durable records.

For a request ``old M``, a consistency proof and a signed checkpoint of size N with root R:

- 400 malformed body or checkpoint, or M > N;
- 404 the origin is not a log this witness knows;
- 403 no valid signature by a trusted key of that origin (or one that fails to verify);
- 409 M is not the size S of the latest checkpoint cosigned for that origin (0 if none); the
  body, ``text/x.tlog.size``, is S;
- 422 a size-0 checkpoint whose root is not the empty tree's; a proof with M = 0; at M = N a
  root other than the one held; otherwise an RFC 9162 consistency proof from (M, held root) to
  (N, R) that does not verify. A validly signed checkpoint refused for its root or proof is kept
  as evidence, beside the note held then;
- 200 otherwise: the record becomes this checkpoint (durably, before answering) and the answer
  is our cosignature line.

Invariant: the check against the held record and its replacement happen under one lock, so
two requests can never both pass against the same record (no rollback race); with the records
durable and refusing to load when damaged, the witness never cosigns two inconsistent trees of
one log, across restarts too. Cosignature timestamps never go back for a log.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import cosignature, merkle, note, tlog_witness
from ledger.errors import IntegrityError, StorageError, ValidationError
from witness.records import Record, Records

log = logging.getLogger("orchestrator.witness")
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = TEXT


def _refuse(status: int, reason: str) -> Answer:
    return Answer(status, (reason + "\n").encode())


class Witness:
    """One witness key cosigning the logs it is configured with (origin -> trusted Ed25519 keys)."""

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        logs: Mapping[str, Sequence[Ed25519PublicKey]],
        records: Records,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = cosignature.WitnessKey(name, key.public_key())
        self._private = key
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self.records = records
        self.clock = clock
        self._lock = threading.Lock()
        #: The record of each log, loaded at start (a damaged one raises here: RecordError).
        self._held: dict[str, Record | None] = {origin: records.read(origin, self._our_timestamp) for origin in logs}

    def _our_timestamp(self, signed: note.Note) -> int:
        found = cosignature.valid(signed, [self.key])
        if self.key.name not in found:
            raise ValueError("it carries no cosignature of this witness")
        return found[self.key.name]

    def held(self, origin: str) -> Record | None:
        return self._held.get(origin)

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = tlog_witness.parse_request(body)
            signed = note.parse(request.note)
        except (ValidationError, IntegrityError) as e:
            return _refuse(400, e.message)
        origin = signed.text.split("\n", 1)[0]
        if not origin:  # a checkpoint's first line names its log: an empty one is no checkpoint
            return _refuse(400, "the checkpoint's origin line is empty")
        trusted = self.logs.get(origin)
        if trusted is None:
            return _refuse(404, f"unknown log origin {origin[:100]!r}")
        problem = _log_signature(signed, origin, trusted)
        if problem is not None:
            return _refuse(403, problem)
        try:
            head = note.parse_checkpoint(signed.text)
        except IntegrityError as e:
            return _refuse(400, e.message)
        if request.old > head.size:
            return _refuse(400, f"old size {request.old} is above the checkpoint size {head.size}")
        with self._lock:  # check and update atomically
            return self._decide(origin, request, signed, head, body)

    def _decide(
        self, origin: str, request: tlog_witness.AddCheckpoint, signed: note.Note, head: note.TreeHead, body: bytes
    ) -> Answer:
        held = self._held[origin]
        held_size = 0 if held is None else held.head.size
        if request.old != held_size:
            return Answer(409, tlog_witness.size_body(held_size), tlog_witness.SIZE_TYPE)
        if head.size == 0 and head.root != merkle.EMPTY_ROOT:
            return _refuse(422, "a checkpoint of size 0 must have the empty tree's root")
        if request.old == 0:
            if request.proof:
                return _refuse(422, "a consistency proof from size 0 must be empty")
        else:
            assert held is not None
            try:
                merkle.verify_consistency(request.old, head.size, held.head.root, head.root, list(request.proof))
            except IntegrityError as e:
                self._evidence(origin, held, body, e.message)
                return _refuse(422, f"not consistent with the checkpoint of size {held_size} cosigned before: "
                               f"{e.message}")
        timestamp = max(int(self.clock()), 1 if held is None else held.timestamp)
        line = cosignature.cosign(signed.text, self.key.name, self._private, timestamp)
        logs_lines = [s for s in signed.signatures if _is_log_signature(s, origin, self.logs[origin], signed)]
        record_note = note.Note(signed.text, tuple(logs_lines)).with_signatures([line]).encode()
        self.records.write(origin, record_note)  # durable before the cosignature leaves
        self._held[origin] = Record(record_note, head, timestamp)
        return Answer(200, line.line().encode())

    def _evidence(self, origin: str, held: Record, body: bytes, reason: str) -> None:
        try:
            path = self.records.keep_evidence(origin, held.note, body)
        except StorageError as e:  # the refusal stands; only its evidence is lost
            log.error("refused an inconsistent checkpoint of %r (%s); could not keep it: %s", origin, reason, e.message)
            return
        log.warning("refused an inconsistent checkpoint of %r (%s); evidence kept in %s", origin, reason, path)


def _log_signature(signed: note.Note, origin: str, trusted: Sequence[Ed25519PublicKey]) -> str | None:
    """None if a trusted key of origin validly signed the note; else why not (a 403)."""
    verified = False
    for public in trusted:
        if not note.signed_by(signed, origin, b"\x01", public):
            continue
        try:
            note.verify_ed25519(signed, origin, public)
        except IntegrityError as e:
            return e.message
        verified = True
    return None if verified else f"the checkpoint carries no signature by a trusted key of {origin!r}"


def _is_log_signature(
    line: note.Signature, origin: str, trusted: Sequence[Ed25519PublicKey], signed: note.Note
) -> bool:
    return any(line in note.signed_by(signed, origin, b"\x01", public) for public in trusted)
