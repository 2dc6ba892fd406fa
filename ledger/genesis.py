"""Creating a ledger: node key, client keys and the genesis entry (`orchestrator init`)."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import checkpoint, keys
from ledger.checkpoint_file import CheckpointFile
from ledger.config import DEFAULT_MAX_UPLETS_PER_WRITE, LedgerConfig
from ledger.entry import Entry, encode
from ledger.errors import StorageError, ValidationError
from ledger.log import Log
from ledger.machine import ROLES
from ledger.state import catch_up
from ledger.store import LevelStore

DEFAULT_ORIGIN = "orchestrator.local/ledger"
DEFAULT_KEYS = (("admin", tuple(ROLES)),)


@dataclass(frozen=True)
class KeySpec:
    name: str
    roles: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "KeySpec":
        """NAME=ROLE[,ROLE...]; raises ValidationError."""
        name, sep, roles_text = text.partition("=")
        roles = tuple(r.strip() for r in roles_text.split(",") if r.strip())
        if not sep or not name or not roles:
            raise ValidationError(f"--key {text!r}: expected NAME=ROLE[,ROLE...]")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValidationError(f"--key {text!r}: a key name may hold letters, digits, '-', '_' and '.'")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValidationError(f"--key {text!r}: unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
        return cls(name, roles)


def genesis_entry(
    origin: str,
    node_public: str,
    members: list[dict[str, Any]],
    window: int,
    time_ms: int,
    max_uplets: int = DEFAULT_MAX_UPLETS_PER_WRITE,
) -> Entry:
    body = {
        "origin": origin,
        "node_key": node_public,
        "signature_window": window,
        "max_uplets_per_write": max_uplets,
        "members": members,
    }
    return Entry(seq=0, time_ms=time_ms, key_id=origin, genesis=body)


def init(
    config: LedgerConfig,
    origin: str = DEFAULT_ORIGIN,
    specs: list[KeySpec] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Create a new ledger in config.data_dir; returns the private key files written.

    Refuses (StorageError) when the data dir already holds a ledger or any key file.
    """
    specs = specs if specs else [KeySpec(name, roles) for name, roles in DEFAULT_KEYS]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValidationError("each --key name may appear once")
    if config.log_dir.exists():
        raise StorageError(f"{config.data_dir} already holds a ledger; refusing to overwrite it")
    targets = [config.node_key_file] + [config.keys_dir / f"{name}.pem" for name in names]
    for path in [*targets, config.checkpoint_file]:
        if path.exists():
            raise StorageError(f"{path} already exists; refusing to overwrite it")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    node = keys.new_private_key()
    keys.write_private_key(config.node_key_file, node)
    members = []
    for spec in specs:
        key = keys.new_private_key()
        keys.write_private_key(config.keys_dir / f"{spec.name}.pem", key)
        members.append({"key_id": spec.name, "public_key": keys.public_b64(key), "roles": sorted(spec.roles)})
    time_ms = int(clock() * 1000)
    entry = genesis_entry(
        origin, keys.public_b64(node), members, config.signature_window, time_ms, config.max_uplets_per_write
    )
    log_store = LevelStore(config.log_dir, paranoid=True)
    state_store = LevelStore(config.state_dir)
    try:
        log = Log(log_store, CheckpointFile(config.checkpoint_file))  # commit() writes the file too
        log.append(0, [encode(entry)])
        meta = catch_up(log, state_store)
        note = checkpoint.sign(checkpoint.Checkpoint(origin, 1, log.tree().root(1), meta.digest), node)
        log.commit({}, note)
    finally:
        log_store.close()
        state_store.close()
    return targets
