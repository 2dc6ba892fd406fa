"""The log as C2SP tlog-tiles, at the prefix ``/``: ``GET /checkpoint``, ``GET /tile/<L>/<N>[.p/<W>]``
and ``GET /tile/entries/<N>[.p/<W>]`` (ledger/tiles.py lays them out).

Signed reads with the auditor role, like /ledger/*, unless the node serves a public log
(``public_log``): then these three need no signature, so that any tlog-tiles client, or a plain
file server mirroring them, can follow the log. Tiles and bundles are immutable once served:
``Cache-Control: public, max-age=31536000, immutable`` (``private`` instead of ``public`` when they
need a signature, so that no shared cache hands them to anyone); the checkpoint is ``no-cache``. Bundles
are gzipped for a client that accepts it. Tiles are read on the read pool (one stored tile each).
"""

import gzip

import falcon
from falcon.asgi import Request, Response

from api.resources import Authenticated, Context, only_params
from ledger import tiles

AUDITOR = "auditor"
IMMUTABLE = "max-age=31536000, immutable"
OCTETS = "application/octet-stream"


class Public(Authenticated):
    def __init__(self, context: Context, public: bool) -> None:
        super().__init__(context)
        self.public = public

    async def _allow(self, req: Request) -> None:
        if not self.public:
            await self._read(req, AUDITOR)
        only_params(req, ())

    def _immutable(self, resp: Response) -> None:
        """Cache forever; in shared caches only what anyone may read."""
        resp.set_header("Cache-Control", f"{'public' if self.public else 'private'}, {IMMUTABLE}")


class Checkpoint(Public):
    """GET /checkpoint: the checkpoint /ledger/checkpoint serves, as tlog-tiles asks for it."""

    async def on_get(self, req: Request, resp: Response) -> None:
        await self._allow(req)
        resp.content_type = "text/plain; charset=utf-8"
        resp.cache_control = ["no-cache"]
        resp.text = self.ledger.checkpoint()

    on_head = on_get  # as a file server answers HEAD: the headers of the GET, no body


class Tile(Public):
    """GET /tile/{path}: a hash tile or an entry bundle; 404 for one the tree does not hold."""

    async def on_get(self, req: Request, resp: Response, path: str) -> None:
        await self._allow(req)
        tile = tiles.parse_path(path)
        try:
            data = await self.offload.run(self.ledger.tile, tile)
        except tiles.EntryTooLargeError as e:
            raise falcon.HTTPError(falcon.HTTP_501, description=e.message) from e
        if tile.level is None and "gzip" in (req.get_header("Accept-Encoding") or "").lower():
            data = gzip.compress(data, compresslevel=6, mtime=0)
            resp.set_header("Content-Encoding", "gzip")
        if tile.level is None:
            resp.set_header("Vary", "Accept-Encoding")
        resp.content_type = OCTETS
        self._immutable(resp)
        resp.data = data

    on_head = on_get
