"""What the crash, concurrency and disk-trouble suites share: the black-box server of
tests/conftest.py, and the end-of-run check that a stopped data dir verifies and replays
to the state digest the server reported.

Inside tests/reliability, ``import conftest`` is tests/conftest.py (pytest loaded it first).
"""

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

from conftest import KEYS, Server, free_port, init_ledger, new_uuid, orchestrator  # noqa: F401 (re-exported)

from orchestrator.client import Client

DIGEST = re.compile(r"state digest: ([0-9a-f]{64})")


def verify(data_dir: Path) -> str:
    """`orchestrator verify --data-dir` on a stopped node: must exit 0; its summary line."""
    result = orchestrator("verify", "--data-dir", str(data_dir), check=False)
    assert result.returncode == 0, f"verify failed ({result.returncode}): {result.stdout}{result.stderr}"
    return result.stdout.strip()


def replay(data_dir: Path, *, fresh: bool = True) -> str:
    """`orchestrator replay` (into a fresh state directory unless fresh=False); the digest it prints."""
    if fresh:
        shutil.rmtree(data_dir / "state", ignore_errors=True)
    result = orchestrator("replay", "--data-dir", str(data_dir), check=False)
    assert result.returncode == 0, f"replay failed ({result.returncode}): {result.stdout}{result.stderr}"
    found = DIGEST.search(result.stdout)
    assert found is not None, result.stdout
    return found.group(1)


def stop_verify_replay(server: Any, head: dict[str, Any]) -> None:
    """Stop the server cleanly; then verify passes and a replay into fresh state gives head's digest."""
    server.stop()
    verify(server.data_dir)
    digest = replay(server.data_dir)
    assert digest == head["state_digest"], f"replay digest {digest} != head {head}"


def log_entries(auditor: Client, start: int = 0) -> list[dict[str, Any]]:
    """Every log entry from start on, decoded, via GET /ledger/entries (auditor)."""
    entries: list[dict[str, Any]] = []
    while True:
        page = auditor.entries(start, start + 1000)
        entries.extend(item["entry"] for item in page["entries"])
        if not page["entries"] or page.get("next") is None or page["next"] >= page["size"]:
            return entries
        start = page["next"]


def entry_path(entry: dict[str, Any]) -> str:
    """The request path of a log entry ('' for the genesis)."""
    target = entry.get("target", "")
    rest = target.split("://", 1)[-1]
    return rest[rest.find("/") :].split("?", 1)[0] if "/" in rest else ""


def entry_body(entry: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(entry["body"])) if entry.get("body") else None
