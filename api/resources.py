"""REST resources: parse and shape; the ledger does the work.

Responders run on the event loop. Writes wait for their commit without blocking it
(:class:`api.writes.Writes`); reads that scan go to the small read pool (:class:`api.offload.Offload`);
point reads stay on the loop.
"""

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass

import falcon
import orjson
from falcon.asgi import Request, Response

from api.door import LedgerDoor
from api.offload import Offload
from api.signed import read_body, signed_request
from api.waits import Waits, ended_of, wait_seconds
from api.writes import Writes
from ledger import routes
from ledger.documents import COLLECTIONS
from ledger.errors import ValidationError
from ledger.query import Page, check_collection

RESERVED = ("limit", "after", "wait", "at")


def at_param(value: str | list[str] | None) -> int | None:
    """The ``at`` query parameter: a sequence number (the state right after that entry), or None
    when absent. Raises ValidationError unless it is one non-negative integer (whether the log holds
    that entry, the ledger checks)."""
    if value is None:
        return None
    if isinstance(value, list):
        raise ValidationError("query parameter 'at' is given more than once")
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise ValidationError(
            f"query parameter 'at' must be a sequence number (an integer from 0, as /ledger/entries numbers "
            f"entries), not {value[:20]!r}"
        )
    return int(value)


def _json(resp: Response, status: int | str, data: bytes) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = data


@dataclass(frozen=True)
class Context:
    """What every resource works with: the ledger, the body limit, the write queue, the read pool,
    the requests that wait for the ledger to change."""

    ledger: LedgerDoor
    body_limit: int
    writes: Writes
    offload: Offload
    waits: Waits
    #: Seconds a write asking for a receipt waits for a cosigned checkpoint holding it.
    receipt_wait: float = 5.0


class Authenticated:
    def __init__(self, context: Context) -> None:
        self.ledger = context.ledger
        self.body_limit = context.body_limit
        self.writes = context.writes
        self.offload = context.offload
        self.receipt_wait = context.receipt_wait
        self.waits = context.waits

    async def _read(self, req: Request, role: str | None = None, params: tuple[str, ...] | None = None) -> None:
        """Authenticate a read (with `role`); `params`: the query parameters the endpoint takes (None:
        it checks them itself), any other is refused."""
        body = await read_body(req, self.body_limit)
        self.ledger.read(signed_request(req, body), role)
        if params is not None:
            only_params(req, params)

    async def _write(self, req: Request, resp: Response) -> None:
        wants_proof = _wants_proof(req)
        body = await read_body(req, self.body_limit)
        media = (req.content_type or "").split(";")[0].strip().lower()
        committed = await self.writes.submit(signed_request(req, body), media)
        # The outcome's keys sorted as it is recorded, so an exact resend's answer is byte-identical;
        # the receipt last, as always (with a proof, the checkpoint in it may be a newer one).
        outcome = orjson.dumps(committed.body, option=orjson.OPT_SORT_KEYS)
        fields: dict[str, object] = {"seq": committed.receipt.seq, "hash": committed.receipt.leaf_hash}
        if wants_proof:
            fields["proof"] = await self._proof(committed.receipt.seq)
            if _prefers_proof(req):
                resp.set_header("Preference-Applied", "return=proof")
        receipt = orjson.dumps(fields)
        separator = b"," if outcome != b"{}" else b""
        _json(resp, committed.status, outcome[:-1] + separator + b'"receipt":' + receipt + b"}")

    async def _proof(self, seq: int) -> str:
        """The tlog-proof of a committed entry: under a checkpoint cosigned by a quorum of witnesses
        when one holding it comes within receipt_wait seconds, else under the node's latest."""
        note = None
        future = self.ledger.cosigned_after(seq)
        if future is not None:
            try:
                note = await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.receipt_wait)
            except TimeoutError:
                note = None
        if note is None:
            note = self.ledger.signed_checkpoint()  # signed with the entry's commit, or later: it holds it
        return await self.offload.run(self.ledger.receipt, seq, note)


class Collection(Authenticated):
    """GET /{collection}, GET /{collection}/{uuid}, GET /{collection}/{uuid}/history (each also
    ``?at=SEQ``: as of right after entry SEQ); POST /problem, /algo, /data, /prediction."""

    async def on_get(self, req: Request, resp: Response, collection: str) -> None:
        await self._read(req)
        filters: dict[str, str] = {}
        for name, value in req.params.items():
            if isinstance(value, list):
                raise ValidationError(f"query parameter {name!r} is given more than once")
            filters[name] = value
        limit_text = filters.pop("limit", None)
        after = filters.pop("after", None)
        wait = wait_seconds(filters.pop("wait", None))
        at = at_param(filters.pop("at", None))
        if at is not None and wait is not None:
            raise ValidationError("query parameters 'at' and 'wait' cannot be combined: a past state does not change")
        limit = 1000
        if limit_text is not None:
            if not re.fullmatch(r"[0-9]{1,6}", limit_text):
                raise ValidationError("limit must be a positive integer")
            limit = int(limit_text)

        def look() -> Awaitable[Page]:
            return self.offload.run(self.ledger.find, collection, filters, limit=limit, after=after, at=at)

        if wait is None:
            page = await look()
        else:  # the page as soon as it has documents; the empty page once `wait` seconds pass
            prefixes = self.ledger.read_prefixes(collection, filters)
            query = (collection, tuple(sorted(filters.items())), limit, after)
            page = await self.waits.page(query, collection, prefixes, look, wait, ended_of(req.scope))
        key = collection + "s"
        data = b'{"%s":[%s]' % (key.encode(), b",".join(page.documents))
        if page.next_after is not None:
            data += b',"next_after":' + orjson.dumps(page.next_after)
        _json(resp, falcon.HTTP_200, data + b"}")

    async def on_get_item(self, req: Request, resp: Response, collection: str, uuid: str) -> None:
        await self._read(req)
        check_collection(collection)  # GET /learndone/x: no such collection (404) before its parameters
        only_params(req, ("at",))
        at = at_param(req.params.get("at"))
        if at is None:
            _json(resp, falcon.HTTP_200, self.ledger.document(collection, uuid))
        else:  # a scan of the document's versions
            _json(resp, falcon.HTTP_200, await self.offload.run(self.ledger.document, collection, uuid, at))

    async def on_get_history(self, req: Request, resp: Response, collection: str, uuid: str) -> None:
        await self._read(req)
        check_collection(collection)
        only_params(req, ("at",))
        at = at_param(req.params.get("at"))
        versions = await self.offload.run(self.ledger.history, collection, uuid, at)
        items = [
            b'{"seq":%d,"time":%d,"keyid":%s,"request":%s,"document":%s}'
            % (v.seq, v.time_ms, orjson.dumps(v.key_id), orjson.dumps(v.request), v.document)
            for v in versions
        ]
        _json(resp, falcon.HTTP_200, b"[" + b",".join(items) + b"]")

    async def on_post(self, req: Request, resp: Response, collection: str) -> None:
        await self._write(req, resp)

    async def on_post_item(self, req: Request, resp: Response, collection: str, uuid: str) -> None:
        await self._write(req, resp)

    async def on_options(self, req: Request, resp: Response, collection: str) -> None:
        _options(resp, collection, 0)

    async def on_options_item(self, req: Request, resp: Response, collection: str, uuid: str) -> None:
        _options(resp, collection, 1)

    async def on_options_history(self, req: Request, resp: Response, collection: str, uuid: str) -> None:
        if collection not in COLLECTIONS:
            raise falcon.HTTPNotFound(title="Not found", description=f"no endpoint /{collection}/.../history")
        resp.set_header("Allow", "GET")
        resp.content_length = 0


PROOF_VALUES = {"1": True, "true": True, "0": False, "false": False}


def only_params(req: Request, allowed: tuple[str, ...]) -> None:
    """Refuse (ValidationError) a query parameter the endpoint does not take, as the API contract
    lists them (routes.refuse_unknown_params)."""
    routes.refuse_unknown_params(req.params, allowed, f"{req.method} {req.uri_template}")


def _prefers_proof(req: Request) -> bool:
    """RFC 7240 ``Prefer: return=proof`` (among other preferences)."""
    prefer = req.get_header("Prefer") or ""
    return any(p.strip().lower() == "return=proof" for p in prefer.replace(";", ",").split(","))


def _wants_proof(req: Request) -> bool:
    """Whether a write asks for a receipt that proves itself: ?proof=1 (or true), or Prefer: return=proof."""
    value = req.get_param("proof")
    if value is not None and value.lower() not in PROOF_VALUES:
        raise ValidationError(f"query parameter 'proof' must be 1, 0, true or false, not {value[:20]!r}")
    return (value is not None and PROOF_VALUES[value.lower()]) or _prefers_proof(req)


def _options(resp: Response, name: str, args: int) -> None:
    """OPTIONS on the generic routes: Allow names what /name (args=0) or /name/x (args=1) really serves."""
    methods = ["GET"] if name in COLLECTIONS else []
    if routes.accepts_post([name] + ["x"] * args):
        methods.append("POST")
    if not methods:
        raise falcon.HTTPNotFound(title="Not found", description=f"no endpoint {'/' + name}{'/...' * args}")
    resp.set_header("Allow", ", ".join(methods))  # as Falcon's own OPTIONS responder words it
    resp.content_length = 0


def _present_only(req: Request) -> None:
    """Membership keeps no versions: a read of it as of an earlier entry is refused, not answered now."""
    if "at" in req.params:
        raise ValidationError("membership reads answer the present only: /nodes does not take 'at'")


class Worker(Authenticated):
    """POST /worker/{uplet_type}/{uplet_uuid}."""

    async def on_post(self, req: Request, resp: Response, kind: str, uuid: str) -> None:
        await self._write(req, resp)


class Nodes(Authenticated):
    """Membership: GET /nodes, GET /nodes/{key_id}; POST /nodes, /nodes/{key_id}, /nodes/{key_id}/revoke."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._read(req)
        _present_only(req)
        only_params(req, ())
        members = await self.offload.run(self.ledger.members)
        _json(resp, falcon.HTTP_200, b'{"nodes":[%s]}' % b",".join(members))

    async def on_get_item(self, req: Request, resp: Response, key_id: str) -> None:
        await self._read(req)
        _present_only(req)
        only_params(req, ())
        _json(resp, falcon.HTTP_200, self.ledger.member(key_id))

    async def on_post(self, req: Request, resp: Response, **_: str) -> None:
        await self._write(req, resp)

    on_post_item = on_post
    on_post_revoke = on_post
