"""Creating a ledger: node key(s), client keys and the genesis entry (`orchestrator init`).

A ledger several nodes run names each node's key in its genesis (``node_keys``: name and
public key; ``node_key`` is the first one's, as single-node genesis entries have it). The node
that runs ``init --node A --node B ...`` gets A's key as its own (``DATA_DIR/node.pem``) and
the others' in ``DATA_DIR/nodes/NAME.pem`` to hand over; every data dir keeps the genesis entry's
bytes in ``DATA_DIR/genesis.json``. Another node's data dir is made with :func:`join` from that
file and its own private key only, so that every node's log starts with the same entry 0.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import checkpoint, keys
from ledger.checkpoint_file import CheckpointFile
from ledger.config import DEFAULT_MAX_UPLETS_PER_WRITE, LedgerConfig
from ledger.entry import Entry, decode, encode
from ledger.errors import IntegrityError, StorageError, ValidationError
from ledger.log import Log
from ledger.machine import ROLES
from ledger.membership import genesis_settings, node_keys
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
    node_keys: list[tuple[str, str]] | None = None,
) -> Entry:
    """Entry 0. `node_keys` (name, base64 public key), for several nodes, must include node_public."""
    body: dict[str, Any] = {
        "origin": origin,
        "node_key": node_public,
        "signature_window": window,
        "max_uplets_per_write": max_uplets,
        "members": members,
    }
    if node_keys:
        body["node_keys"] = [{"name": name, "public_key": public} for name, public in node_keys]
    return Entry(seq=0, time_ms=time_ms, key_id=origin, genesis=body)


def _check_name(flag: str, name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValidationError(f"{flag} {name!r}: a name may hold letters, digits, '-', '_' and '.'")


def _check_origin(origin: str) -> None:
    """The origin is the node key's name in every checkpoint signature line: signed-note key names
    are non-empty, without Unicode spaces or '+' (and a note holds no control character)."""
    if not origin or "+" in origin or any(c.isspace() or ord(c) < 0x20 for c in origin):
        raise ValidationError(f"--origin {origin!r}: the ledger's name may not be empty, nor hold spaces or '+'")


def init(
    config: LedgerConfig,
    origin: str = DEFAULT_ORIGIN,
    specs: list[KeySpec] | None = None,
    *,
    nodes: list[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Create a new ledger in config.data_dir; returns the private key files written.

    With `nodes` (names), one node key each is listed in the genesis: the first is this data
    dir's, the others are written to ``DATA_DIR/nodes/NAME.pem`` (see :func:`join`).
    Refuses (StorageError) when the data dir already holds a ledger or any key file.
    """
    _check_origin(origin)
    specs = specs if specs else [KeySpec(name, roles) for name, roles in DEFAULT_KEYS]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValidationError("each --key name may appear once")
    nodes = nodes or []
    for name in nodes:
        _check_name("--node", name)
    if len(set(nodes)) != len(nodes):
        raise ValidationError("each --node name may appear once")
    node_files = [config.data_dir / "nodes" / f"{name}.pem" for name in nodes[1:]]
    targets = [config.node_key_file, *node_files] + [config.keys_dir / f"{name}.pem" for name in names]
    _refuse_existing(config, targets)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    node = keys.new_private_key()
    keys.write_private_key(config.node_key_file, node)
    node_keys = []
    if nodes:
        node_keys.append((nodes[0], keys.public_b64(node)))
        for name, path in zip(nodes[1:], node_files, strict=True):
            other = keys.new_private_key()
            keys.write_private_key(path, other)
            node_keys.append((name, keys.public_b64(other)))
    members = []
    for spec in specs:
        key = keys.new_private_key()
        keys.write_private_key(config.keys_dir / f"{spec.name}.pem", key)
        members.append({"key_id": spec.name, "public_key": keys.public_b64(key), "roles": sorted(spec.roles)})
    time_ms = int(clock() * 1000)
    entry = genesis_entry(
        origin, keys.public_b64(node), members, config.signature_window, time_ms, config.max_uplets_per_write,
        node_keys,
    )
    _create(config, encode(entry), node, keep_genesis=bool(nodes))
    return targets


def join(config: LedgerConfig, genesis_file: Path, node_key_file: Path) -> Path:
    """Create a data dir for one more node of a ledger: the genesis entry's bytes from
    `genesis_file` (another node's ``DATA_DIR/genesis.json``) and this node's private key, which
    must be one of the genesis node keys. Returns the node key file written.

    Raises ValidationError (not a genesis, a key it does not list) or StorageError."""
    try:
        raw = genesis_file.read_bytes()
    except OSError as e:
        raise StorageError(f"cannot read the genesis {genesis_file}: {e.strerror}") from e
    try:
        node = keys.load_private_key(node_key_file)
    except (OSError, ValueError) as e:
        raise StorageError(f"cannot read the node key {node_key_file}: {e}") from e
    try:
        entry = decode(raw.rstrip(b"\n"))
        if entry.seq != 0 or entry.genesis is None:
            raise ValidationError("it is not a genesis entry")
        settings = genesis_settings(entry.genesis)
    except (IntegrityError, ValidationError) as e:
        raise ValidationError(f"{genesis_file}: {e.message}") from e
    if keys.public_b64(node) not in node_keys(settings).values():
        raise ValidationError(f"{node_key_file} is not one of the node keys the genesis {genesis_file} lists")
    _refuse_existing(config, [config.node_key_file])
    config.data_dir.mkdir(parents=True, exist_ok=True)
    keys.write_private_key(config.node_key_file, node)
    _create(config, entry.raw, node, keep_genesis=True)
    return config.node_key_file


def _refuse_existing(config: LedgerConfig, targets: list[Path]) -> None:
    if config.log_dir.exists():
        raise StorageError(f"{config.data_dir} already holds a ledger; refusing to overwrite it")
    for path in [*targets, config.checkpoint_file, config.genesis_file]:
        if path.exists():
            raise StorageError(f"{path} already exists; refusing to overwrite it")


def _create(config: LedgerConfig, raw: bytes, node: Ed25519PrivateKey, *, keep_genesis: bool) -> None:
    """The log holding entry 0, state caught up with it, and the checkpoint this node signs."""
    entry = decode(raw)
    assert entry.genesis is not None
    origin = str(entry.genesis["origin"])
    if keep_genesis:
        config.genesis_file.write_bytes(raw + b"\n")
    log_store = LevelStore(config.log_dir, paranoid=True)
    state_store = LevelStore(config.state_dir)
    try:
        log = Log(log_store, CheckpointFile(config.checkpoint_file))  # commit() writes the file too
        log.append(0, [raw])
        meta = catch_up(log, state_store)
        note = checkpoint.sign(checkpoint.Checkpoint(origin, 1, log.tree().root(1), meta.digest), node)
        log.commit({}, note)
    finally:
        log_store.close()
        state_store.close()
