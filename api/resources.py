"""REST resources: parse and shape; the ledger does the work."""

import re

import falcon
import orjson

from api.door import LedgerDoor
from api.signed import read_body, signed_request
from ledger import routes
from ledger.documents import COLLECTIONS
from ledger.errors import ValidationError

RESERVED = ("limit", "after")


def _json(resp: falcon.Response, status: int | str, data: bytes) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = data


class Authenticated:
    def __init__(self, ledger: LedgerDoor, body_limit: int) -> None:
        self.ledger = ledger
        self.body_limit = body_limit

    def _read(self, req: falcon.Request, role: str | None = None) -> None:
        body = read_body(req, self.body_limit)
        self.ledger.read(signed_request(req, body), role)

    def _write(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, self.body_limit)
        media = (req.content_type or "").split(";")[0].strip().lower()
        committed = self.ledger.write(signed_request(req, body), media).result()
        # The outcome's keys sorted as it is recorded, so an exact resend's answer is byte-identical;
        # the receipt last, as always.
        outcome = orjson.dumps(committed.body, option=orjson.OPT_SORT_KEYS)
        receipt = orjson.dumps({"seq": committed.receipt.seq, "hash": committed.receipt.leaf_hash})
        separator = b"," if outcome != b"{}" else b""
        _json(resp, committed.status, outcome[:-1] + separator + b'"receipt":' + receipt + b"}")


class Collection(Authenticated):
    """GET /{collection}, GET /{collection}/{uuid}; POST /problem, /algo, /data, /prediction."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        self._read(req)
        filters: dict[str, str] = {}
        for name, value in req.params.items():
            if isinstance(value, list):
                raise ValidationError(f"query parameter {name!r} is given more than once")
            filters[name] = value
        limit_text = filters.pop("limit", None)
        after = filters.pop("after", None)
        limit = 1000
        if limit_text is not None:
            if not re.fullmatch(r"[0-9]{1,6}", limit_text):
                raise ValidationError("limit must be a positive integer")
            limit = int(limit_text)
        page = self.ledger.find(collection, filters, limit=limit, after=after)
        key = collection + "s"
        data = b'{"%s":[%s]' % (key.encode(), b",".join(page.documents))
        if page.next_after is not None:
            data += b',"next_after":' + orjson.dumps(page.next_after)
        _json(resp, falcon.HTTP_200, data + b"}")

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, collection: str, uuid: str) -> None:
        self._read(req)
        _json(resp, falcon.HTTP_200, self.ledger.document(collection, uuid))

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        self._write(req, resp)

    def on_post_item(self, req: falcon.Request, resp: falcon.Response, collection: str, uuid: str) -> None:
        self._write(req, resp)

    def on_options(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        _options(resp, collection, 0)

    def on_options_item(self, req: falcon.Request, resp: falcon.Response, collection: str, uuid: str) -> None:
        _options(resp, collection, 1)


def _options(resp: falcon.Response, name: str, args: int) -> None:
    """OPTIONS on the generic routes: Allow names what /name (args=0) or /name/x (args=1) really serves."""
    methods = ["GET"] if name in COLLECTIONS else []
    if routes.accepts_post([name] + ["x"] * args):
        methods.append("POST")
    if not methods:
        raise falcon.HTTPNotFound(title="Not found", description=f"no endpoint {'/' + name}{'/...' * args}")
    resp.set_header("Allow", ", ".join(methods))  # as Falcon's own OPTIONS responder words it
    resp.content_length = 0


class Worker(Authenticated):
    """POST /worker/{uplet_type}/{uplet_uuid}."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, kind: str, uuid: str) -> None:
        self._write(req, resp)



class Nodes(Authenticated):
    """Membership: GET /nodes, GET /nodes/{key_id}; POST /nodes, /nodes/{key_id}, /nodes/{key_id}/revoke."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._read(req)
        _json(resp, falcon.HTTP_200, b'{"nodes":[%s]}' % b",".join(self.ledger.members()))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        self._read(req)
        _json(resp, falcon.HTTP_200, self.ledger.member(key_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        self._write(req, resp)

    on_post_item = on_post
    on_post_revoke = on_post
