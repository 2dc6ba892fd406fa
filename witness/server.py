"""`orchestrator witness init` and `orchestrator witness serve`: a witness directory and its server."""

import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import authority, checkpoint, cosignature, keys
from ledger.errors import IntegrityError, StorageError, ValidationError
from witness.app import create_app
from witness.records import Records
from witness.service import Witness

KEY_FILE = "witness.pem"
NAME_FILE = "name"


def check_name(name: str) -> str:
    if not name or any(c.isspace() or ord(c) < 0x20 for c in name) or "+" in name:
        raise ValidationError(f"witness name {name!r}: it must be non-empty, without spaces, control characters or '+'")
    return name


def init(directory: Path, name: str) -> str:
    """Create a witness key and name in directory; returns the witness's vkey (type 0x04).

    Refuses (StorageError) to overwrite an existing witness."""
    check_name(name)
    if (directory / KEY_FILE).exists() or (directory / NAME_FILE).exists():
        raise StorageError(f"{directory} already holds a witness; refusing to overwrite it")
    key = keys.new_private_key()
    try:
        keys.write_private_key(directory / KEY_FILE, key)
        (directory / NAME_FILE).write_text(name + "\n")
    except OSError as e:
        raise StorageError(f"cannot write the witness in {directory}: {e.strerror}") from e
    return cosignature.WitnessKey(name, key.public_key()).vkey()


def load(directory: Path) -> tuple[str, Ed25519PrivateKey]:
    """The witness's name and key; raises StorageError if the directory holds no witness."""
    try:
        name = (directory / NAME_FILE).read_text().strip()
        key = keys.load_private_key(directory / KEY_FILE)
    except FileNotFoundError as e:
        raise StorageError(f"{directory} holds no witness; run `orchestrator witness init` first") from e
    except (OSError, ValueError) as e:
        raise StorageError(f"cannot read the witness in {directory}: {e}") from e
    return check_name(name), key


def read_log_vkey(text: str) -> tuple[str, Ed25519PublicKey]:
    """A log's verifier key (type 0x01): the contents of the file `text` names, or the vkey itself."""
    path = Path(text)
    is_file = path.is_file()
    if is_file:
        try:
            text = path.read_text()
        except OSError as e:
            raise StorageError(f"cannot read --log {path}: {e.strerror}") from e
    try:
        return checkpoint.parse_vkey(text)
    except IntegrityError as e:
        raise ValidationError(f"--log: {e.message}{'' if is_file else ' (and no file of that name exists)'}") from e


def logs_of(vkeys: list[str]) -> dict[str, list[Ed25519PublicKey]]:
    logs: dict[str, list[Ed25519PublicKey]] = {}
    for text in vkeys:
        origin, public = read_log_vkey(text)
        logs.setdefault(origin, []).append(public)
    return logs


def serve(directory: Path, bind: str, vkeys: list[str]) -> None:
    """Serve the witness until stopped (SIGINT or SIGTERM)."""
    import uvicorn

    name, key = load(directory)
    logs = logs_of(vkeys)
    if not logs:
        raise ValidationError("give the logs to witness: --log VKEY_FILE (repeatable)")
    try:
        host, port = authority.split_bind(bind)
    except ValidationError as e:
        raise ValidationError(f"--bind: {e.message}") from e
    records = Records(directory)
    records.lock()
    try:
        witness = Witness(name, key, logs, records)
        config = uvicorn.Config(
            create_app(witness), host=host, port=port, lifespan="off", log_level="warning", access_log=False,
            server_header=False,
        )
        print(f"witness {witness.key.vkey()} listening on http://{bind}", file=sys.stderr, flush=True)
        for origin in sorted(logs):
            record = witness.held(origin)
            held = "nothing cosigned yet" if record is None else f"cosigned size {record.head.size}"
            print(f"  log {origin}: {held}", file=sys.stderr, flush=True)
        uvicorn.Server(config).run()
    finally:
        records.unlock()
