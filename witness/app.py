"""The witness's HTTP interface (Falcon ASGI), submission and monitoring prefix both at ``/``.

- ``POST /add-checkpoint``: the tlog-witness call (see :mod:`witness.service`); the decision,
  which may fsync, runs on one thread beside the loop, so requests are decided one at a time.
- ``GET /<sha256(origin) hex>/checkpoint``: the latest checkpoint cosigned for that log, with
  the log's signature and our cosignature; 404 if there is none.
- ``GET /``: the witness's name, verifier key and the logs it knows, as text.

Answers are text; refusals carry their reason as a line of text.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import falcon
import falcon.asgi

from witness.records import origin_hash
from witness.service import TEXT, Witness

#: The largest add-checkpoint body read: a checkpoint, 63 proof lines and the 16 signatures of up to
#: nearly 5 kB (post-quantum ones) that signed-note says a verifier must accept fit.
BODY_LIMIT = 128 * 1024


class AddCheckpoint:
    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="witness-decide")

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.content_length is not None and req.content_length > BODY_LIMIT:
            raise falcon.HTTPContentTooLarge(description=f"the body exceeds {BODY_LIMIT} bytes")
        body = await req.stream.read(BODY_LIMIT + 1)
        if len(body) > BODY_LIMIT:
            raise falcon.HTTPContentTooLarge(description=f"the body exceeds {BODY_LIMIT} bytes")
        answer = await asyncio.get_running_loop().run_in_executor(self.pool, self.witness.add_checkpoint, body)
        resp.status = answer.status
        resp.content_type = answer.content_type
        resp.data = answer.body


class Monitoring:
    def __init__(self, witness: Witness) -> None:
        self.by_hash = {origin_hash(origin): origin for origin in witness.logs}
        self.witness = witness

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, digest: str) -> None:
        origin = self.by_hash.get(digest)
        record = None if origin is None else self.witness.held(origin)
        if record is None:
            raise falcon.HTTPNotFound(description="this witness never cosigned a checkpoint of that log")
        resp.content_type = TEXT
        resp.text = record.note


class Index:
    def __init__(self, witness: Witness) -> None:
        self.witness = witness

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        lines = [f"witness {self.witness.key.name}", f"vkey {self.witness.key.vkey()}"]
        for origin in sorted(self.witness.logs):
            record = self.witness.held(origin)
            size = "none" if record is None else str(record.head.size)
            lines.append(f"log {origin} {origin_hash(origin)} cosigned size {size}")
        resp.content_type = TEXT
        resp.text = "\n".join(lines) + "\n"


def create_app(witness: Witness) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response] = falcon.asgi.App()
    app.add_route("/add-checkpoint", AddCheckpoint(witness))
    app.add_route("/{digest}/checkpoint", Monitoring(witness))
    app.add_route("/", Index(witness))
    return app
