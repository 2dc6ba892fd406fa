"""`orchestrator init | serve | replay | verify | audit | mirror | verify-receipt | call | keys new | vkey |
witness ... | cluster up | cluster down`.

Thin flag parsing over library functions. Settings (data dir, bind address, ...) come from
:mod:`orchestrator.settings`: documented defaults, then environment, then flags. Heavy
imports (falcon, gunicorn, the verifier) happen inside the command that needs them, so
`orchestrator call` starts fast.

Exit status: 0 on success; 1 when the ledger fails verification or the server answers
4xx/5xx to `call`; 2 for local trouble (bad flags or settings, unreadable files, a server
that cannot be reached, a data dir in use).
"""

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import LedgerError, StorageError
from orchestrator import settings as config
from orchestrator import stopping, version
from orchestrator.progress import ProgressBar
from orchestrator.settings import Settings, SettingsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ledger.cosignature import WitnessKey

INIT = ("data_dir", "signature_window", "max_uplets_per_write")
SERVE = (
    "data_dir", "bind", "threads", "body_limit", "max_queued_writes", "header_timeout", "body_timeout", "max_group",
    "log_level", "signature_window", "max_uplets_per_write", "public_url", "witness", "witness_quorum",
    "witness_timeout", "public_log", "etcd", "etcd_retain", "peer",
)
DATA = ("data_dir",)
CALL = ("data_dir", "url", "key_file", "key_id")  # also audit: it signs like call
KEYS_NEW = ("data_dir", "url")  # the url only goes into the commands it prints


class CommandError(Exception):
    """Local trouble a command reports in one line (exit 2)."""


def _settings(args: argparse.Namespace) -> Settings:
    return config.load(args.settings, args)


def _cmd_init(args: argparse.Namespace) -> int:
    from ledger.genesis import KeySpec, init, join

    s = _settings(args)
    if args.join is not None:
        if args.node_key is None:
            raise CommandError("--join needs --node-key PEM: this node's private key, one the genesis lists")
        if args.key or args.node:
            raise CommandError("--join takes the genesis as it is: no --key or --node")
        node_file = join(s.ledger_config(), args.join, args.node_key)
        print(f"joined the ledger of {args.join} in {s.data_dir}")
        print(f"  node key written: {node_file}")
        return 0
    if args.node_key is not None:
        raise CommandError("--node-key goes with --join GENESIS")
    specs = [KeySpec.parse(text) for text in args.key]
    written = init(s.ledger_config(), args.origin, specs, nodes=args.node)
    print(f"created ledger {args.origin!r} in {s.data_dir}")
    for path in written:
        print(f"  key written: {path}")
    if args.node:
        genesis = s.ledger_config().genesis_file
        print(f"  this data dir is node {args.node[0]!r}; the genesis is in {genesis}")
        for name in args.node[1:]:
            print(f"  node {name!r}: orchestrator init --join {genesis} --node-key "
                  f"{s.data_dir / 'nodes' / (name + '.pem')} --data-dir DIR")
    return 0


def check_bind(address: str) -> None:
    """Fail now, in one line, if the server could not listen on ``address`` (HOST:PORT, as gunicorn
    reads it); a unix socket or an inherited descriptor is left to gunicorn."""
    import errno
    import socket

    from gunicorn import util

    try:
        parsed = util.parse_address(address)
    except RuntimeError as e:
        raise CommandError(f"--bind {address}: {e}") from e
    if not isinstance(parsed, tuple):
        return
    host, port = parsed
    if not 0 < port < 65536:
        raise CommandError(f"--bind {address}: the port must be from 1 to 65535")
    family = socket.AF_INET6 if util.is_ipv6(host) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds its socket
            probe.bind((host, port))
    except OSError as e:
        hint = ""
        if e.errno == errno.EADDRINUSE:
            hint = f"; another server is listening there: stop it, or pass another --bind ({config.env_name('bind')})"
        raise CommandError(f"cannot listen on {address}: {(e.strerror or str(e)).lower()}{hint}") from e


def _cmd_serve(args: argparse.Namespace) -> int:
    # Ctrl-C and SIGTERM are recorded until gunicorn handles them, and acted on between steps: a
    # step is never cut in half, nor a signal lost inside one (orchestrator/stopping.py).
    stopping.defer()
    s = _settings(args)
    check_bind(s.bind)  # before anything is created: a server that cannot listen leaves no ledger behind
    witnesses = s.witnesses()
    if not witnesses and "witness_quorum" in s.overridden:
        raise CommandError("--witness-quorum needs the witnesses it counts: give them with --witness URL=VKEY")
    if witnesses and s.witness_quorum > len(witnesses):
        raise CommandError(
            f"--witness-quorum {s.witness_quorum} is more than the {len(witnesses)} witness(es) given with --witness"
        )

    from ledger.genesis import init
    from ledger.store import check_unlocked
    from orchestrator import server  # gunicorn only for this command

    stopping.check()
    ledger_config = s.ledger_config()
    if not ledger_config.log_dir.exists():
        written = init(ledger_config)
        print(f"no ledger in {s.data_dir}: created one; admin key written to {written[1]}", flush=True)
        stopping.check()
    check_unlocked(ledger_config.log_dir)  # fail clearly if another process holds it; never open LevelDB before fork
    server.check_ledger(ledger_config)  # a damaged or shortened log...: one line, nothing served
    stopping.check()
    server.run(s)  # gunicorn's master checks once more when its own handlers are in place
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from ledger.replay import replay

    result = replay(_settings(args).ledger_config(), to=args.to, progress=ProgressBar("replay"))
    print(f"replayed {result.applied} of {result.log_size} entries")
    print(f"state digest: {result.digest.hex()}")
    return 0


def _report(report: Any, save: Path | None) -> int:
    if save is not None:
        save.write_text(report.checkpoint)
    print(report.summary())
    return 0


def _trusted(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise StorageError(f"cannot read --trusted-checkpoint {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise StorageError(f"--trusted-checkpoint {path} is not UTF-8 text (byte {e.start})") from e


#: Said of a key argument that is neither a file nor a key.
_NOT_A_FILE = " (and no file of that name exists)"


def read_witness_keys(texts: list[str]) -> "list[WitnessKey]":
    """Witness verifier keys (type 0x04): each a file holding one, or the vkey itself."""
    from ledger import cosignature

    found = []
    for text in texts:
        path = Path(text)
        is_file = path.is_file()
        if is_file:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise CommandError(f"cannot read --witness {path}: {e}") from e
        try:
            found.append(cosignature.parse_vkey(text))
        except LedgerError as e:
            raise CommandError(f"--witness: {e.message}{'' if is_file else _NOT_A_FILE}") from e
    return found


def _witness_policy(args: argparse.Namespace) -> dict[str, Any]:
    """verify()'s witnesses and quorum from --witness and --quorum (default: 1 with witnesses)."""
    witnesses = read_witness_keys(args.witness)
    quorum = args.quorum if args.quorum is not None else (1 if witnesses else 0)
    if args.quorum is not None and args.quorum < 1:
        raise CommandError(f"--quorum must be a positive number, not {args.quorum}")
    distinct = len({w.name for w in witnesses})  # a witness counts once, however often it is given
    if quorum > distinct:
        raise CommandError(f"--quorum {quorum} needs at least {quorum} distinct --witness keys, {distinct} given")
    return {"witnesses": witnesses, "quorum": quorum}


def _cmd_verify(args: argparse.Namespace) -> int:
    from ledger.local import LocalSource
    from ledger.verify import verify

    trusted = _trusted(args.trusted_checkpoint)
    policy = _witness_policy(args)
    with LocalSource(_settings(args).ledger_config()) as source:
        report = verify(source, trusted=trusted, progress=ProgressBar("verify"), **policy)
    return _report(report, args.save_checkpoint)


def _cmd_audit(args: argparse.Namespace) -> int:
    import requests

    from ledger.verify import verify
    from orchestrator.audit import RemoteSource

    s = _settings(args)
    trusted = _trusted(args.trusted_checkpoint)
    policy = _witness_policy(args)
    client = _signing_client(s)  # the node and the key as `call` finds them
    try:
        report = verify(RemoteSource(client), trusted=trusted, progress=ProgressBar("audit"), all_nodes=args.all_nodes,
                        **policy)
    except requests.RequestException as e:
        raise StorageError(f"cannot reach {s.url}: {e}") from e
    return _report(report, args.save_checkpoint)


def _cmd_mirror(args: argparse.Namespace) -> int:
    import shutil

    from ledger.log import Log
    from ledger.mirror import MirrorError, mirror
    from ledger.store import LevelStore
    from orchestrator.mirror import HttpFetch, key_client

    s = _settings(args)
    vkey = None if args.vkey is None else _node_vkey(args.vkey)
    policy = _witness_policy(args)
    key_file, key_id = s.signing_key()
    fetch = HttpFetch(s.url, key_client(s.url, key_file, key_id, required="key_file" in s.overridden))
    ledger_config = s.ledger_config()
    created = not ledger_config.log_dir.exists()
    made_dir = not ledger_config.data_dir.exists()
    ledger_config.data_dir.mkdir(parents=True, exist_ok=True)
    store = LevelStore(ledger_config.log_dir, paranoid=True)
    done = False
    try:
        report = mirror(Log(store), fetch, vkey=vkey, progress=ProgressBar("mirror"), **policy)
        done = True
    except MirrorError as e:
        print(f"FAILED at {e.where}: {e.reason}; {ledger_config.data_dir} is unchanged", file=sys.stderr)
        return 1
    finally:
        store.close()
        if created and not done:
            # A first run that failed leaves nothing: not the log, nor the data dir it made.
            shutil.rmtree(ledger_config.data_dir if made_dir else ledger_config.log_dir, ignore_errors=True)
    print(report.summary())
    return 0


# -- call ---------------------------------------------------------------------


def _body(text: str | None, method: str) -> Any:
    """BODY as JSON: inline, @FILE or @- (stdin); a POST without one sends {}."""
    if text is None:
        return {} if method == "POST" else None
    source = "BODY"
    if text.startswith("@"):
        source = text[1:] or "-"
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as e:
            raise CommandError(f"cannot read the body from {source}: {e.strerror}") from e
    try:
        return json.loads(text)
    except ValueError as e:
        raise CommandError(f"{source} is not valid JSON: {e}") from e


def _signing_client(s: Settings) -> Any:
    from ledger import keys
    from orchestrator.client import Client

    key_file, key_id = s.signing_key()
    try:
        keys.load_private_key(key_file)
    except OSError as e:
        raise CommandError(
            f"cannot read the key file {key_file}: {e.strerror}; pass --key-file or --data-dir "
            f"({config.env_name('key_file')}, {config.env_name('data_dir')}), "
            "or start `orchestrator serve` once to create ./data with an admin key"
        ) from e
    except ValueError as e:
        raise CommandError(f"{key_file} is not an Ed25519 private key in PKCS#8 PEM: {e}") from e
    return Client.from_file(s.url, key_file, key_id)


def print_answer(answer: Any, stream: Any = None) -> None:
    """JSON pretty-printed on a terminal, on one line when piped; text and bytes as they came."""
    stream = stream if stream is not None else sys.stdout
    if isinstance(answer, bytes):
        stream.flush()
        stream.buffer.write(answer)
        stream.buffer.flush()
        return
    if isinstance(answer, str):
        stream.write(answer if answer.endswith("\n") or not answer else answer + "\n")
    elif stream.isatty():
        stream.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    else:
        stream.write(json.dumps(answer, separators=(",", ":"), ensure_ascii=False) + "\n")
    stream.flush()


def _timeout_for(path: str, timeout: float) -> float:
    """The client's timeout, on top of the seconds a `wait=S` in the query lets the server hold it."""
    import math
    from urllib.parse import parse_qsl, urlsplit

    for name, value in parse_qsl(urlsplit(path).query):
        if name == "wait":
            try:
                seconds = float(value)
            except ValueError:
                break
            if math.isfinite(seconds):  # out of range, the server refuses it at once
                return timeout + min(max(seconds, 0.0), 3600.0)
    return timeout


def _cmd_call(args: argparse.Namespace) -> int:
    from orchestrator.client import ClientError, Unreachable

    method = args.method.upper()
    if not args.path.startswith("/"):
        raise CommandError(f"PATH must start with '/' (the server is --url): got {args.path!r}")
    body = _body(args.body, method)
    client = _signing_client(_settings(args))
    try:
        answer = client.call(method, args.path, body, timeout=_timeout_for(args.path, client.timeout))
    except Unreachable as e:
        raise CommandError(f"{e}; is the server running (`orchestrator serve`), and is --url right?") from e
    except ClientError as e:
        print(f"orchestrator: {e}", file=sys.stderr)
        return 1
    print_answer(answer)
    return 0


# -- keys ---------------------------------------------------------------------


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from ledger import keys
    from ledger.membership import key_id, roles

    name = key_id("NAME", args.name)
    role_list = roles("--roles", [r.strip() for r in args.roles.split(",") if r.strip()])
    s = _settings(args)
    directory = args.dir if args.dir is not None else s.data_dir / "keys"
    path = directory / f"{name}.pem"
    key = keys.new_private_key()
    try:
        keys.write_private_key(path, key)
    except FileExistsError as e:
        raise CommandError(f"{path} already exists; refusing to overwrite it") from e
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from e
    public = keys.public_b64(key)
    body = json.dumps({"key_id": name, "public_key": public, "roles": role_list})
    # The settings this run was given (flag or environment) go into the commands it prints, so
    # that they work pasted into another shell: the node, and the data dir holding the admin key.
    url = ["--url", s.url] if "url" in s.overridden else []
    data_dir = ["--data-dir", str(s.data_dir)] if "data_dir" in s.overridden else []
    print(f"private key written: {path} (mode 0600; keep it secret)")
    print(f"public key: {public}")
    print("an admin registers it with:")
    print("  " + shlex.join(["orchestrator", "call", *url, *data_dir, "POST", "/nodes", body]))
    print("then it signs requests with:")
    print("  " + shlex.join(["orchestrator", "call", *url, "--key-file", str(path), "GET", f"/nodes/{name}"]))
    return 0


# -- receipts -----------------------------------------------------------------


def _read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"cannot read {flag} {path}: {e}") from e


def _node_vkey(given: str) -> "tuple[str, Ed25519PublicKey]":
    """--vkey: a file holding the node's C2SP vkey, or the vkey itself."""
    from ledger import checkpoint

    is_file = Path(given).is_file()
    text = _read_text(Path(given), "--vkey") if is_file else given
    try:
        return checkpoint.parse_vkey(text)
    except LedgerError as e:
        raise CommandError(f"--vkey: {e.message}{'' if is_file else _NOT_A_FILE}") from e


def _cmd_verify_receipt(args: argparse.Namespace) -> int:
    from ledger import receipt
    from ledger.entry import decode

    node = _node_vkey(args.vkey)
    policy = _witness_policy(args)
    genesis = None
    if args.genesis is not None:
        try:
            data = args.genesis.read_bytes()
        except OSError as e:
            raise CommandError(f"cannot read --genesis {args.genesis}: {e.strerror}") from e
        try:
            if data.startswith(receipt.HEADER.encode()):
                genesis = receipt.verify(data.decode(), node).entry  # a receipt of entry 0, checked too
            else:
                genesis = decode(data)
        except receipt.ReceiptError as e:
            print(f"FAILED at genesis {e.part}: {e.reason}", file=sys.stderr)
            return 1
        except LedgerError as e:
            raise CommandError(f"--genesis {args.genesis}: not a receipt of entry 0 nor its bytes: {e.message}") from e
    try:
        verified = receipt.verify(
            _read_text(args.file, "FILE"), node, signer_key=args.public_key, genesis=genesis, **policy
        )
    except receipt.ReceiptError as e:
        print(f"FAILED at {e.part}: {e.reason}", file=sys.stderr)
        return 1
    print(verified.summary())
    return 0


# -- witness ------------------------------------------------------------------


def _cmd_witness_init(args: argparse.Namespace) -> int:
    from witness.server import init

    print(init(args.dir, args.name))
    return 0


def _cmd_witness_serve(args: argparse.Namespace) -> int:
    from witness.server import serve

    check_bind(args.bind)
    serve(args.dir, args.bind, args.log)
    return 0


def _cmd_vkey(args: argparse.Namespace) -> int:
    from ledger import checkpoint, keys
    from ledger.checkpoint_file import CheckpointFile, note_size

    ledger_config = _settings(args).ledger_config()
    try:
        node = keys.load_private_key(ledger_config.node_key_file)
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot read the node key {ledger_config.node_key_file}: {e}") from e
    note = CheckpointFile(ledger_config.checkpoint_file).read()
    if note is None:
        raise CommandError(f"{ledger_config.data_dir} holds no checkpoint file; start the node once")
    note_size(note)  # a checkpoint, or CheckpointError
    print(checkpoint.vkey(note.split("\n", 1)[0], node.public_key()))
    return 0


# -- cluster ------------------------------------------------------------------


def _cmd_cluster(args: argparse.Namespace) -> int:
    from orchestrator import cluster, etcd_members

    try:
        if args.cluster_command == "down":
            stopped = cluster.down(args.dir)
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'} (data kept in {args.dir})")
            return 0
        urls = cluster.up(args.dir, args.nodes)
    except (cluster.ClusterError, etcd_members.EtcdMissing, TimeoutError) as e:
        raise CommandError(str(e)) from e
    base = args.dir.resolve()
    layout = cluster._load(base)
    assert layout is not None
    print(f"etcd: {','.join(m.client_url for m in layout.members(base))}")
    for i, url in enumerate(urls):
        print(f"node{i + 1}: {url}  (data dir {base / f'node{i + 1}'}, log {base / f'node{i + 1}.log'})")
    print(f"client keys: {base / 'node1' / 'keys'} (admin.pem: every role)")
    print(f"  orchestrator call --url {urls[-1]} --data-dir {base / 'node1'} GET /ledger/head")
    print(f"stop with: orchestrator cluster down --dir {args.dir}")
    return 0


# -- the parser ---------------------------------------------------------------


def _checkpoint_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="a checkpoint saved earlier: also prove the ledger is consistent with it",
    )
    p.add_argument("--save-checkpoint", type=Path, metavar="FILE", help="write the verified checkpoint here")
    _witness_flags(p)


def _witness_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="a witness's cosignature/v1 verifier key (or a file holding it), repeatable: the checkpoint accepted "
        "must carry --quorum valid cosignatures by these witnesses",
    )
    p.add_argument(
        "--quorum", type=int, default=None, metavar="K",
        help="valid cosignatures by distinct --witness keys the checkpoint needs (default: 1 with --witness)",
    )


def _with_settings(p: argparse.ArgumentParser, names: tuple[str, ...], base: Settings) -> None:
    group = p.add_argument_group(
        "settings", "defaults from config/defaults.toml; environment variables override them, flags override both"
    )
    config.add_arguments(group, names, base)
    p.set_defaults(settings=names)


CALL_EPILOG = """\
examples:
  orchestrator call GET /ledger/head
  orchestrator call GET '/learnuplet?status=todo&limit=10'
  orchestrator call POST /problem @problem.json
  orchestrator call --key-id compute POST /worker/learnuplet/UUID '{"worker": "UUID"}'

The answer is printed as JSON: indented on a terminal, on one line when piped. On a 4xx/5xx
answer the server's message goes to stderr and the exit status is 1.
"""


def parser(base: Settings | None = None) -> argparse.ArgumentParser:
    from ledger.genesis import DEFAULT_ORIGIN

    base = base if base is not None else config.defaults()
    top = argparse.ArgumentParser(prog="orchestrator", description="Signed-ledger Orchestrator for collaborative ML.")
    top.add_argument("--version", action="version", version=f"orchestrator {version()}")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("init", help="create a ledger: node key, client keys and genesis entry")
    p.add_argument("--origin", default=DEFAULT_ORIGIN, help=f"ledger name (default: {DEFAULT_ORIGIN})")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="NAME=ROLE[,ROLE...]",
        help="a client key to create (repeatable); default: admin with every role",
    )
    p.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME",
        help="a node of the ledger (repeatable): its key goes into the genesis; the first is this data dir's, "
        "the others are written to DATA_DIR/nodes/NAME.pem for `init --join` (default: one node)",
    )
    p.add_argument("--join", type=Path, default=None, metavar="GENESIS",
                   help="make this data dir one more node of the ledger whose genesis.json this is")
    p.add_argument("--node-key", type=Path, default=None, metavar="PEM",
                   help="with --join: this node's private key, one of those the genesis lists")
    _with_settings(p, INIT, base)
    p.set_defaults(func=_cmd_init)

    p = commands.add_parser(
        "serve",
        help="serve the API with gunicorn (creates the ledger if absent)",
        description="Serve the API with gunicorn on the data dir; if it holds no ledger yet, create one first "
        "(admin key in DATA_DIR/keys/admin.pem). /healthz, /readyz and /metrics need no signature.",
    )
    _with_settings(p, SERVE, base)
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser("replay", help="rebuild state from the log and print the state digest")
    p.add_argument("--to", type=int, default=None, metavar="SEQ", help="stop after this entry")
    _with_settings(p, DATA, base)
    p.set_defaults(func=_cmd_replay)

    p = commands.add_parser("verify", help="verify a stopped node's data dir (or a copy) offline")
    _checkpoint_flags(p)
    _with_settings(p, DATA, base)
    p.set_defaults(func=_cmd_verify)

    p = commands.add_parser(
        "audit",
        help="verify a running node over HTTP with an auditor key",
        description="Verify a running node over HTTP, signing with a key that holds the auditor role. The node "
        "and the key are found as `orchestrator call` finds them: --url (ORCHESTRATOR_URL), and DATA_DIR/keys/"
        "KEY_ID.pem, or --key-file whose name without .pem is the key id unless --key-id says otherwise.",
    )
    _checkpoint_flags(p)
    p.add_argument(
        "--all-nodes", action="store_true",
        help="require the checkpoint to carry a valid signature by every node key of the genesis (a ledger several "
        "nodes run), not just one",
    )
    _with_settings(p, CALL, base)
    p.set_defaults(func=_cmd_audit)

    p = commands.add_parser(
        "mirror",
        help="keep a verified local copy of a node's log (from its tlog-tiles), for verify and replay",
        description="Fetch the node's checkpoint, entry bundles and hash tiles (GET /checkpoint, /tile/entries/N, "
        "/tile/L/N) into DATA_DIR/log, checking everything before writing anything: the checkpoint's signature by "
        "the node key (--vkey, else the one the genesis names; on later runs the copy's genesis), --quorum "
        "cosignatures by --witness keys, every entry's leaf hash into the tree, the root against the checkpoint, "
        "the hash tiles against the entries, and that the new tree extends the copy (the checkpoint mirrored "
        "before). Run it again to fetch only what is new; a node whose checkpoint is not consistent with the copy "
        "is refused (FAILED at <part>: ..., exit 1) and the copy stays as it was. DATA_DIR then holds a log that "
        "`orchestrator verify --data-dir DATA_DIR` and `orchestrator replay --data-dir DATA_DIR` take. Requests "
        "are signed as `orchestrator call` signs them (a key with the auditor role: --key-file, or "
        "DATA_DIR/keys/KEY_ID.pem), or go unsigned when there is no such key file (a node serving public_log).",
    )
    p.add_argument("--vkey", default=None, metavar="NODE_VKEY",
                   help="the ledger's verifier key (`orchestrator vkey`, GET /ledger/key) or a file holding it: "
                   "the checkpoint must be signed by it (default: any node key of the ledger's genesis)")
    _witness_flags(p)
    _with_settings(p, CALL, base)
    p.set_defaults(func=_cmd_mirror)

    p = commands.add_parser(
        "call",
        help="send one signed request and print the answer",
        description="Send one RFC 9421-signed request to the node and print its JSON answer.",
        epilog=CALL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help="GET or POST")
    p.add_argument("path", metavar="PATH", help="path and query, e.g. /problem or '/learnuplet?algo=UUID'")
    p.add_argument(
        "body", metavar="BODY", nargs="?", help="JSON body: inline, @FILE, or @- for stdin; a POST without one sends {}"
    )
    _with_settings(p, CALL, base)
    p.set_defaults(func=_cmd_call)

    p = commands.add_parser(
        "vkey",
        help="print the node's verifier key (the C2SP vkey witnesses and verify-receipt take)",
        description="Print the ledger's C2SP verifier key, <origin>+<key id>+<base64 key>, from DATA_DIR/node.pem "
        "and the origin of DATA_DIR/checkpoint (also while the node runs); GET /ledger/key serves the same.",
    )
    _with_settings(p, DATA, base)
    p.set_defaults(func=_cmd_vkey)

    p = commands.add_parser(
        "verify-receipt",
        help="check a receipt (C2SP tlog-proof) offline",
        description="Check a receipt (a C2SP tlog-proof@v1: a write's ?proof=1 answer, or GET /ledger/receipts/SEQ "
        "saved as SEQ.tlog-proof) offline: the checkpoint's signature by the node key, --quorum cosignatures by "
        "--witness keys, the inclusion proof of the entry's bytes, and the entry's own RFC 9421 signature "
        "against the key it names (--public-key, or as the genesis registered it). Exit 0 with a summary, 1 "
        "with FAILED at <part>: <reason>.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the receipt")
    p.add_argument("--vkey", required=True, metavar="NODE_VKEY",
                   help="the ledger's verifier key (`orchestrator vkey`, GET /ledger/key) or a file holding it")
    _witness_flags(p)
    p.add_argument("--public-key", default=None, metavar="BASE64",
                   help="the base64 Ed25519 public key of the entry's signer (its membership record's public_key)")
    p.add_argument("--genesis", type=Path, default=None, metavar="FILE",
                   help="entry 0, to find the signer's key in: its receipt (0.tlog-proof, checked too) or its bytes")
    p.set_defaults(func=_cmd_verify_receipt)

    witness = commands.add_parser("witness", help="a C2SP tlog-witness that cosigns ledger checkpoints")
    witness_commands = witness.add_subparsers(dest="witness_command", required=True)
    p = witness_commands.add_parser(
        "init",
        help="create a witness key and print its verifier key",
        description="Create a witness in DIR (an Ed25519 key in DIR/witness.pem, mode 0600, and its name) and print "
        "its C2SP verifier key (signature type 0x04, cosignature/v1): give it to the nodes (serve --witness "
        "URL=VKEY) and to auditors (--witness VKEY).",
    )
    p.add_argument("--dir", type=Path, required=True, help="the witness directory (created if absent)")
    p.add_argument("--name", required=True, help="the witness's name, e.g. witness.example.org/w1 (no spaces or '+')")
    p.set_defaults(func=_cmd_witness_init)
    p = witness_commands.add_parser(
        "serve",
        help="serve the C2SP add-checkpoint protocol for the given logs",
        description="Serve POST /add-checkpoint (C2SP tlog-witness) for the logs whose verifier keys are given, "
        "and GET /<sha256(origin) hex>/checkpoint. The latest cosigned checkpoint of each log is kept in "
        "DIR/logs/; refused inconsistent checkpoints are kept as evidence in DIR/logs/<hash>/evidence/.",
    )
    p.add_argument("--dir", type=Path, required=True, help="the witness directory (from `witness init`)")
    p.add_argument(
        "--bind", default="127.0.0.1:8100", metavar="HOST:PORT", help="listen address (default: %(default)s)"
    )
    p.add_argument(
        "--log", action="extend", nargs="+", required=True, metavar="VKEY_FILE",
        help="a log's verifier key: a file holding it (`orchestrator vkey` prints it) or the key itself; repeatable",
    )
    p.set_defaults(func=_cmd_witness_serve)

    keys = commands.add_parser("keys", help="client key files")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    p = key_commands.add_parser(
        "new",
        help="write a new key pair and print how an admin registers it",
        description="Write a new Ed25519 private key to DIR/NAME.pem (PKCS#8 PEM, mode 0600; never overwrites) "
        "and print its public key, the `orchestrator call POST /nodes` an admin runs to register it and the "
        "`orchestrator call` the key's owner then runs; both carry the --url and --data-dir given here.",
    )
    p.add_argument("name", metavar="NAME", help="the key id: letters, digits, '.', '_' or '-'")
    p.add_argument("--dir", type=Path, default=None, help="where to write NAME.pem (default: DATA_DIR/keys)")
    p.add_argument(
        "--roles", default="viewer", metavar="ROLE[,ROLE...]", help="roles in the printed command (default: viewer)"
    )
    _with_settings(p, KEYS_NEW, base)
    p.set_defaults(func=_cmd_keys_new)

    group = commands.add_parser(
        "cluster", help="several nodes and their etcd members on loopback, to try them on one machine")
    cluster_commands = group.add_subparsers(dest="cluster_command", required=True)
    p = cluster_commands.add_parser(
        "up", help="start N etcd members and N ledger nodes (made the first time) and print their URLs")
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="how many nodes (default: 3)")
    p.add_argument("--dir", type=Path, required=True, metavar="DIR", help="where the nodes and members keep their data")
    p.set_defaults(func=_cmd_cluster)
    p = cluster_commands.add_parser("down", help="stop what `cluster up` started in DIR (the data stays)")
    p.add_argument("--dir", type=Path, required=True, metavar="DIR")
    p.set_defaults(func=_cmd_cluster)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.func is not _cmd_serve:
            stopping.restore()  # Ctrl-C stops them where they are
        return int(args.func(args))
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, stopping.Interrupted) else signal.SIGINT
        print("orchestrator: interrupted" if signum == signal.SIGINT else "orchestrator: terminated", file=sys.stderr)
        return 128 + signum  # the shell's code for death by that signal: 130 for SIGINT, 143 for SIGTERM
    except SettingsError as e:
        print(f"orchestrator: error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"orchestrator: error: {e}", file=sys.stderr)
        return 2
    except LedgerError as e:
        from ledger.verify import VerificationError

        if isinstance(e, VerificationError):
            print(f"FAILED at {e.where}: {e.reason}", file=sys.stderr)
            return 1
        print(f"orchestrator: error: {e.message}", file=sys.stderr)
        return 2
