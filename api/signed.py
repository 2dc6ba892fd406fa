"""Turning a Falcon request into the SignedRequest the ledger authenticates."""

import falcon

from ledger import authority
from ledger.entry import SignedRequest
from ledger.errors import TooLargeError, ValidationError

_CHUNK = 64 * 1024


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over limit without reading it whole."""
    length = req.content_length
    if length is not None and length > limit:
        raise TooLargeError(f"body of {length} bytes exceeds the {limit}-byte limit")
    # Without Content-Length (chunked), Falcon's bounded stream reads nothing; the server's
    # input stream decodes the chunks and ends at the last one.
    stream = req.bounded_stream if length is not None else req.stream
    parts, total = [], 0
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except Exception as e:  # the server's body decoder: a bad chunk size, a missing CRLF, a cut-off body
            raise ValidationError(f"the request body could not be read: {e}") from e
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise TooLargeError(f"body exceeds the {limit}-byte limit")
        parts.append(chunk)
    return b"".join(parts)


def target_uri(req: falcon.Request) -> str:
    """The absolute request URI as the client addressed it (raw path and query)."""
    raw = req.env.get("RAW_URI")
    if not raw:
        raw = req.env.get("SCRIPT_NAME", "") + req.env.get("PATH_INFO", "/")
        if req.query_string:
            raw += "?" + req.query_string
    host = req.get_header("Host") or req.env.get("SERVER_NAME", "")
    authority.normalize(req.scheme, host)  # a Host that is no authority (holds "/", "@", ...) is a 400
    return f"{req.scheme}://{host}{raw}"


def signed_request(req: falcon.Request, body: bytes) -> SignedRequest:
    headers = {name.lower(): value for name, value in req.headers.items()}
    return SignedRequest(method=req.method, target=target_uri(req), headers=headers, body=body)
