"""GET /: a small JSON index of the service, unauthenticated: which ledger this is, which
version serves it, and where to read more."""

from typing import Protocol

import falcon
import orjson
from falcon.asgi import Request, Response

from orchestrator import version

NAME = "Orchestrator ledger"
#: What a newcomer can open without a signature.
LINKS: dict[str, str] = {
    "console": "/console/",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "healthz": "/healthz",
    "readyz": "/readyz",
    "metrics": "/metrics",
}


class Named(Protocol):
    """What the index reads (a :class:`ledger.service.Ledger`)."""

    @property
    def origin(self) -> str: ...


class Index:
    """GET /: 200 ``{"name", "origin", "version", "links"}``, no signature needed."""

    def __init__(self, ledger: Named) -> None:
        self._data = orjson.dumps({"name": NAME, "origin": ledger.origin, "version": version(), "links": LINKS})

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data
