"""Turning a Falcon (ASGI) request into the SignedRequest the ledger authenticates."""

from typing import Any

import falcon
import falcon.asgi

from ledger import authority
from ledger.entry import SignedRequest
from ledger.errors import TooLargeError, ValidationError

_CHUNK = 64 * 1024

#: Scope key set by the HTTP layer (orchestrator/protocol.py) when it has answered a request
#: itself while its body was being read (bad chunked framing, a cut-off body, a body read
#: timeout): ``(status, title, description)``. The app stops and reports the same outcome.
REFUSED = "orchestrator.refused"

#: Scope key set by the HTTP layer when the client closed its sending side after its whole
#: request (a half-close, or the whole connection: the server cannot tell which). The answer is
#: still sent; a request waiting for the ledger to change (api.waits) stops waiting and sends it now.
CLIENT_EOF = "orchestrator.client_eof"


def _refused(req: falcon.asgi.Request) -> None:
    refused: tuple[int, str, str] | None = req.scope.get(REFUSED)
    if refused is not None:
        status, title, description = refused
        raise falcon.HTTPError(falcon.code_to_http_status(status), title=title, description=description)


async def read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over limit without reading it whole.

    The limit holds while reading, so a chunked body (no Content-Length) is refused as soon as
    it passes the limit. A body the HTTP layer could not read is refused as the layer answered.
    """
    length = req.content_length
    if length is not None and length > limit:
        raise TooLargeError(f"body of {length} bytes exceeds the {limit}-byte limit")
    stream = req.stream
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise TooLargeError(f"body exceeds the {limit}-byte limit")
        parts.append(chunk)
    _refused(req)
    if length is not None and total < length:  # the client went away before the end
        raise ValidationError(f"the request body could not be read: {total} of {length} bytes came")
    return b"".join(parts)


def target_uri(req: falcon.asgi.Request) -> str:
    """The absolute request URI as the client addressed it (raw path and query, the Host field).

    Only the connection decides the scheme and the Host field the authority: the HTTP layer
    ignores X-Forwarded-* and Forwarded, so they can never change what a signature covers.
    """
    scope: dict[str, Any] = req.scope
    raw = scope.get("raw_path") or req.path.encode()
    target = raw.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    if query:
        target += "?" + query.decode("latin-1")
    host = req.get_header("Host")
    if host is None:
        server = scope.get("server") or ("", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    authority.normalize(req.scheme, host)  # a Host that is no authority (holds "/", "@", ...) is a 400
    return f"{req.scheme}://{host}{target}"


def signed_request(req: falcon.asgi.Request, body: bytes) -> SignedRequest:
    headers = {name.lower(): value for name, value in req.headers.items()}
    return SignedRequest(method=req.method, target=target_uri(req), headers=headers, body=body)
