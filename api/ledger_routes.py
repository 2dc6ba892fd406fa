"""Ledger endpoints: head, checkpoint, verifier key, entries and RFC 9162 proofs.

Hashes in proofs are base64, like the root in a checkpoint. All but
/ledger/head need the auditor role. Entry pages and proofs (many LevelDB reads)
are built on the read pool; the head, the checkpoint, the key and one entry on the loop.
"""

import base64
import re
from typing import Any

import falcon
import orjson
from falcon.asgi import Request, Response

from api.resources import Authenticated
from api.waits import ended_of, wait_seconds
from ledger import canonical
from ledger.errors import ValidationError

AUDITOR = "auditor"
MAX_PAGE = 1000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int_param(req: Request, name: str, default: int | None = None) -> int:
    value = req.get_param(name)
    if value is None:
        if default is None:
            raise ValidationError(f"query parameter {name!r} is required")
        return default
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise ValidationError(f"query parameter {name!r} must be a non-negative integer")
    return int(value)


def _send(resp: Response, data: object) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(data)


def entry_view(seq: int, raw: bytes) -> dict[str, Any]:
    return {"seq": seq, "raw": _b64(raw), "entry": canonical.loads(raw)}


class Head(Authenticated):
    """GET /ledger/head: the log size and the state digest after applying it (any key)."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, params=())
        size, digest = self.ledger.head()
        _send(resp, {"size": size, "state_digest": digest.hex()})


class Checkpoint(Authenticated):
    """GET /ledger/checkpoint: the latest C2SP signed checkpoint, text/plain."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, AUDITOR, ())
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = self.ledger.checkpoint()


class Key(Authenticated):
    """GET /ledger/key: the node's C2SP verifier key (name+keyid+base64 key), text/plain."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, AUDITOR, ())
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = self.ledger.vkey() + "\n"


class Entries(Authenticated):
    """GET /ledger/entries?start=N&end=M[&wait=S] (at most 1000 a page); GET /ledger/entries/{seq}.

    With ``wait``, a start equal to the log size waits (at most S seconds) for the next entry."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, AUDITOR, ("start", "end", "wait"))
        size = self.ledger.head()[0]
        start = _int_param(req, "start", 0)
        wanted_end = _int_param(req, "end", start + 100)
        wait = wait_seconds(req.get_param("wait"))
        if wait is not None and start == size and wanted_end > start:  # a follower waits for the next entry
            await self.waits.grown(size, wait, ended_of(req.scope))
            size = self.ledger.head()[0]
            if start >= size:  # none came within `wait` seconds
                _send(resp, {"entries": [], "size": size, "next": None})
                return
        end = min(wanted_end, size, start + MAX_PAGE)
        if start >= size:
            raise ValidationError(f"start {start} is beyond the log (size {size})")
        if end <= start:
            raise ValidationError("end must be greater than start")
        raws = await self.offload.run(self.ledger.entries, start, end)
        entries = [entry_view(seq, raw) for seq, raw in raws]
        _send(resp, {"entries": entries, "size": size, "next": end if end < size else None})

    async def on_get_item(self, req: Request, resp: Response, seq: str) -> None:
        await self._read(req, AUDITOR, ())
        size = self.ledger.head()[0]
        if not re.fullmatch(r"[0-9]{1,18}", seq) or int(seq) >= size:
            raise falcon.HTTPNotFound(title="Not found", description=f"no entry {seq} (log size {size})")
        _send(resp, entry_view(int(seq), self.ledger.entry(int(seq))))


class Receipt(Authenticated):
    """GET /ledger/receipts/{seq}: entry seq's C2SP tlog-proof@v1 receipt under the checkpoint
    served (or the latest signed one, when that does not hold the entry yet), text/plain."""

    async def on_get(self, req: Request, resp: Response, seq: str) -> None:
        await self._read(req, AUDITOR, ())
        size = self.ledger.head()[0]
        if not re.fullmatch(r"[0-9]{1,18}", seq) or int(seq) >= size:
            raise falcon.HTTPNotFound(title="Not found", description=f"no entry {seq} (log size {size})")
        resp.content_type = falcon.MEDIA_TEXT
        resp.set_header("Content-Disposition", f'attachment; filename="{int(seq)}.tlog-proof"')
        resp.text = await self.offload.run(self.ledger.receipt, int(seq))


class InclusionProof(Authenticated):
    """GET /ledger/proofs/inclusion?seq=N&tree_size=S (tree_size defaults to the current size)."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, AUDITOR, ("seq", "tree_size"))
        size = self.ledger.head()[0]
        seq = _int_param(req, "seq")
        tree_size = _int_param(req, "tree_size", size)
        if not seq < tree_size <= size:
            raise ValidationError(f"need seq < tree_size <= {size}, got seq={seq} tree_size={tree_size}")
        _send(resp, await self.offload.run(self.ledger.inclusion, seq, tree_size))


class ConsistencyProof(Authenticated):
    """GET /ledger/proofs/consistency?first=A&second=B (second defaults to the current size)."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req, AUDITOR, ("first", "second"))
        size = self.ledger.head()[0]
        first = _int_param(req, "first")
        second = _int_param(req, "second", size)
        if not 0 < first <= second <= size:
            raise ValidationError(f"need 0 < first <= second <= {size}, got first={first} second={second}")
        _send(resp, await self.offload.run(self.ledger.consistency, first, second))
