"""Ledger endpoints available to every registered key."""

import falcon
import orjson

from api.resources import Authenticated


class Head(Authenticated):
    """GET /ledger/head: the log size and the state digest after applying it."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._read(req)
        size, digest = self.ledger.head()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"size": size, "state_digest": digest.hex()})
