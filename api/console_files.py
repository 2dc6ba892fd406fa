"""GET /console/: the web console, static files shipped in the package (api/console/), unsigned.

The page signs every API call in the browser with a key file the user loads (the key never
leaves it) and checks what it shows of the ledger itself; the node only serves the files. Each
answer carries a Content-Security-Policy that lets the page load and call nothing but this node.
"""

from importlib import resources

import falcon
from falcon.asgi import Request, Response

#: The console's directory inside the package ``api``.
DIRECTORY = "console"
INDEX = "index.html"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
#: Scripts, styles, images and calls from this node only; no inline script or style, no frames,
#: no form posting anywhere, no <base> rewriting.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def load() -> dict[str, tuple[str, bytes]]:
    """The console's files by name: (content type, bytes), read once from the package."""
    files: dict[str, tuple[str, bytes]] = {}
    for item in (resources.files("api") / DIRECTORY).iterdir():
        suffix = item.name[item.name.rfind("."):] if "." in item.name else ""
        if item.is_file() and suffix in TYPES:
            files[item.name] = (TYPES[suffix], item.read_bytes())
    return files


class Console:
    """GET /console (or /console/): the page; GET /console/{name}: one of its files. No signature."""

    def __init__(self, files: dict[str, tuple[str, bytes]] | None = None) -> None:
        self._files = load() if files is None else files

    def _send(self, resp: Response, name: str) -> None:
        found = self._files.get(name)
        if found is None:
            raise falcon.HTTPNotFound(description=f"no console file {name!r}")
        resp.content_type, resp.data = found
        resp.set_headers(HEADERS)

    async def on_get(self, req: Request, resp: Response) -> None:
        self._send(resp, INDEX)

    async def on_get_file(self, req: Request, resp: Response, name: str) -> None:
        self._send(resp, name)
