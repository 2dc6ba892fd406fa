"""The ledger as the API sees it: authenticate, submit writes, read state.

:class:`Ledger` owns the data dir: the log and state LevelDBs and the writer
thread. It keeps the three concerns DESIGN separates apart: authentication
(:meth:`authenticate`), ordering (the writer) and applying (the state machine).
"""

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import canonical, checkpoint, checkpoint_file, ed25519, httpsig, keys, machine, query
from ledger.config import LedgerConfig
from ledger.documents import n8
from ledger.entry import SignedRequest
from ledger.errors import AuthError, StorageError
from ledger.log import Log
from ledger.nonces import NonceCache
from ledger.state import catch_up, read_meta
from ledger.store import LevelStore, MemoryStore, Store
from ledger.writer import Committed, Notary, Receipt, Writer


class Ledger:
    def __init__(
        self,
        config: LedgerConfig,
        log_store: Store,
        state_store: Store,
        *,
        node_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
        on_group: Callable[[int, float], None] | None = None,
        checkpoint_path: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.log = checkpoint_file.open_log(log_store, checkpoint_path)  # refuses a log shorter than signed
        self.state = state_store
        if self.log.size() == 0:
            raise StorageError(f"{config.data_dir} holds no ledger; run `orchestrator init` first")
        self.node_key = node_key or keys.new_private_key()
        catch_up(self.log, state_store)
        settings = machine.config(state_store)
        self.origin = str(settings["origin"])
        if keys.public_b64(self.node_key) != settings["node_key"]:
            raise StorageError(f"the node key does not match the ledger's genesis ({config.node_key_file})")
        self.notary = Notary(self.origin, self.node_key)
        self.writer = Writer(
            self.log, state_store, clock=clock, max_group=config.max_group, on_group=on_group, notary=self.notary
        )
        self._ensure_checkpoint()
        self.window = int(settings["signature_window"])
        self.nonces = NonceCache(self.window)
        #: Why the last log write failed, until one succeeds (readiness reads it).
        self.write_error: str | None = None

    @classmethod
    def open(cls, config: LedgerConfig, **kwargs: object) -> "Ledger":
        """Open the data dir's LevelDBs; raises StorageError if missing or in use."""
        if not config.log_dir.exists():
            raise StorageError(f"{config.data_dir} holds no ledger; run `orchestrator init` first")
        log_store = LevelStore(config.log_dir, create=False, paranoid=True)
        try:
            state_store = LevelStore(config.state_dir)
        except StorageError:
            log_store.close()
            raise
        try:
            node_key = keys.load_private_key(config.node_key_file)
        except (OSError, ValueError) as e:
            log_store.close()
            state_store.close()
            raise StorageError(f"cannot read the node key {config.node_key_file}: {e}") from e
        try:
            signed = config.checkpoint_file
            return cls(config, log_store, state_store, node_key=node_key, checkpoint_path=signed, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            log_store.close()
            state_store.close()
            raise

    @classmethod
    def in_memory(
        cls, config: LedgerConfig, genesis_raw: bytes, node_key: Ed25519PrivateKey, **kwargs: object
    ) -> "Ledger":
        """A ledger over memory stores holding just a genesis entry (for unit tests)."""
        log = Log(MemoryStore())
        log.append(0, [genesis_raw])
        return cls(config, log.store, MemoryStore(), node_key=node_key, **kwargs)  # type: ignore[arg-type]

    def _ensure_checkpoint(self) -> None:
        """Sign a checkpoint for the current size if the stored one is missing or older."""
        note = self.log.checkpoint()
        size, digest = self.writer.head()
        if note is not None and checkpoint.parse_body(note.partition("\n\n")[0] + "\n").size == size:
            return
        self.log.commit({}, self.notary.sign(size, self.log.tree().root(size), digest))

    def checkpoint(self) -> str:
        """The latest signed checkpoint note."""
        note = self.log.checkpoint()
        assert note is not None
        return note

    def vkey(self) -> str:
        return checkpoint.vkey(self.origin, self.node_key.public_key())

    def close(self) -> None:
        self.writer.stop()
        self.log.store.close()
        self.state.close()

    # -- authentication ------------------------------------------------------

    def authenticate(self, request: SignedRequest, role: str | None = None) -> httpsig.Signer:
        """Verify signature, key status, role and time window. Raises AuthError/ForbiddenError."""
        records: dict[str, dict | None] = {}  # the membership record is read once per request

        def public_key(key_id: str) -> ed25519.VerifyKey | None:
            records[key_id] = record = machine.member(self.state, key_id)
            return None if record is None else ed25519.verify_key(record["public_key"])

        signer = httpsig.verify_request(request, public_key)
        record = records[signer.key_id] if signer.key_id in records else machine.member(self.state, signer.key_id)
        machine.check_member(record, signer.key_id, role)
        httpsig.check_window(signer.params, int(self.clock()), self.window)
        return signer

    def authenticate_read(self, request: SignedRequest, role: str | None = None) -> httpsig.Signer:
        signer = self.authenticate(request, role)
        params = signer.params
        if self.state.get(machine.nonce_key(params.key_id, params.nonce)) is not None:
            raise AuthError(f"nonce {params.nonce!r} was already used by key {params.key_id!r}")
        self._claim_nonce(params, resend=False)
        return signer

    def _claim_nonce(self, params: httpsig.SignatureParams, *, resend: bool) -> None:
        now = int(self.clock())
        if not self.nonces.claim(params.key_id, params.nonce, params.fingerprint, params.created, now, resend=resend):
            raise AuthError(f"nonce {params.nonce!r} was already used by key {params.key_id!r}")

    # -- writes --------------------------------------------------------------

    def submit(self, request: SignedRequest, signer: httpsig.Signer) -> "Future[Committed]":
        """Queue an authenticated write; the future resolves once it is durable (or rejected)."""
        params = signer.params
        earlier = self.state.get(b"m/sent/" + params.fingerprint)
        if earlier is not None:
            future: Future[Committed] = Future()
            future.set_result(self._original(int.from_bytes(earlier, "big")))
            return future
        self._claim_nonce(params, resend=True)
        logged = httpsig.loggable(request, signer)
        future = self.writer.submit(logged, signer.key_id, params.fingerprint)
        future.add_done_callback(self._record_write)
        return future

    def _record_write(self, future: "Future[Committed]") -> None:
        error = future.exception()
        if error is None:
            self.write_error = None
        elif isinstance(error, StorageError):
            self.write_error = error.message

    def _original(self, seq: int) -> Committed:
        recorded = canonical.loads(self.state.get(b"m/result/" + n8(seq)) or b"null")
        return Committed(recorded["status"], recorded["body"], Receipt(seq, recorded["leaf"]), resent=True)

    # -- reads ---------------------------------------------------------------

    def document(self, coll: str, uuid: str) -> bytes:
        return query.get_document(self.state, coll, uuid)

    def find(self, coll: str, filters: Mapping[str, str], *, limit: int, after: str | None) -> query.Page:
        return query.find(self.state, coll, filters, limit=limit, after=after)

    def head(self) -> tuple[int, bytes]:
        """Log size and the state digest after it, as one consistent pair."""
        return self.writer.head()

    def state_lag(self) -> int:
        """Log entries the state store has not applied yet (0 when caught up)."""
        return self.writer.head()[0] - read_meta(self.state).applied
