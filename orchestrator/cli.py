"""`orchestrator init | serve | replay`."""

import argparse
import os
import sys
from pathlib import Path

import requests

from api.app import ApiConfig
from ledger.config import LedgerConfig
from ledger.errors import LedgerError, StorageError
from ledger.genesis import DEFAULT_ORIGIN, KeySpec, init
from ledger.local import LocalSource
from ledger.replay import replay
from ledger.store import LevelStore
from ledger.verify import Report, VerificationError, verify
from orchestrator.client import Client
from orchestrator.progress import ProgressBar


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ORCHESTRATOR_DATA_DIR", "data")),
        help="ledger data directory (default: ./data, or $ORCHESTRATOR_DATA_DIR)",
    )


def _cmd_init(args: argparse.Namespace) -> int:
    specs = [KeySpec.parse(text) for text in args.key]
    written = init(LedgerConfig(data_dir=args.data_dir, signature_window=args.signature_window), args.origin, specs)
    print(f"created ledger {args.origin!r} in {args.data_dir}")
    for path in written:
        print(f"  key written: {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from orchestrator import server  # gunicorn only for this command

    config = LedgerConfig(data_dir=args.data_dir)
    if not config.log_dir.exists():
        written = init(config)
        print(f"no ledger in {args.data_dir}: created one; admin key written to {written[1]}", flush=True)
    LevelStore(config.log_dir, create=False).close()  # fail clearly if another process holds the data dir
    server.run(config, ApiConfig(body_limit=args.body_limit), args.bind, args.threads)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    result = replay(LedgerConfig(data_dir=args.data_dir), to=args.to, progress=ProgressBar("replay"))
    print(f"replayed {result.applied} of {result.log_size} entries")
    print(f"state digest: {result.digest.hex()}")
    return 0


def _report(report: Report, save: Path | None) -> int:
    if save is not None:
        save.write_text(report.checkpoint)
    print(report.summary())
    return 0


def _trusted(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as e:
        raise StorageError(f"cannot read --trusted-checkpoint {path}: {e.strerror}") from e


def _cmd_verify(args: argparse.Namespace) -> int:
    trusted = _trusted(args.trusted_checkpoint)
    with LocalSource(LedgerConfig(data_dir=args.data_dir)) as source:
        report = verify(source, trusted=trusted, progress=ProgressBar("verify"))
    return _report(report, args.save_checkpoint)


def _cmd_audit(args: argparse.Namespace) -> int:
    from orchestrator.audit import RemoteSource

    trusted = _trusted(args.trusted_checkpoint)
    try:
        client = Client.from_file(args.url, args.key_file, args.key_id)
    except OSError as e:
        raise StorageError(f"cannot read --key-file {args.key_file}: {e.strerror}") from e
    try:
        report = verify(RemoteSource(client), trusted=trusted, progress=ProgressBar("audit"))
    except requests.RequestException as e:
        raise StorageError(f"cannot reach {args.url}: {e}") from e
    return _report(report, args.save_checkpoint)


def _checkpoint_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="a checkpoint saved earlier: also prove the ledger is consistent with it",
    )
    p.add_argument("--save-checkpoint", type=Path, metavar="FILE", help="write the verified checkpoint here")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="orchestrator", description="Signed-ledger Orchestrator for collaborative ML.")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("init", help="create a ledger: node key, client keys and genesis entry")
    _data_dir(p)
    p.add_argument("--origin", default=DEFAULT_ORIGIN, help=f"ledger name (default: {DEFAULT_ORIGIN})")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="NAME=ROLE[,ROLE...]",
        help="a client key to create (repeatable); default: admin with every role",
    )
    p.add_argument("--signature-window", type=int, default=300, help="seconds a signature's created may differ")
    p.set_defaults(func=_cmd_init)

    p = commands.add_parser("serve", help="serve the API with gunicorn (creates the ledger if absent)")
    _data_dir(p)
    p.add_argument("--bind", default=os.environ.get("ORCHESTRATOR_BIND", "127.0.0.1:8000"), help="HOST:PORT")
    p.add_argument("--threads", type=int, default=int(os.environ.get("ORCHESTRATOR_THREADS", "64")))
    p.add_argument("--body-limit", type=int, default=int(os.environ.get("ORCHESTRATOR_BODY_LIMIT", str(1024 * 1024))))
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser("replay", help="rebuild state from the log and print the state digest")
    _data_dir(p)
    p.add_argument("--to", type=int, default=None, metavar="SEQ", help="stop after this entry")
    p.set_defaults(func=_cmd_replay)

    p = commands.add_parser("verify", help="verify a stopped node's data dir (or a copy) offline")
    _data_dir(p)
    _checkpoint_flags(p)
    p.set_defaults(func=_cmd_verify)

    p = commands.add_parser("audit", help="verify a running node over HTTP with an auditor key")
    p.add_argument("--url", required=True, help="the node, e.g. http://127.0.0.1:8000")
    p.add_argument("--key-file", required=True, type=Path, help="the auditor's private key (PEM)")
    p.add_argument("--key-id", required=True, help="the auditor's key id")
    _checkpoint_flags(p)
    p.set_defaults(func=_cmd_audit)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VerificationError as e:
        print(f"FAILED at {e.where}: {e.message}", file=sys.stderr)
        return 1
    except LedgerError as e:
        print(f"orchestrator: error: {e.message}", file=sys.stderr)
        return 2
