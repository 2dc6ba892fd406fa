"""The gunicorn worker: gthread, answering HTTP it cannot parse with the API's JSON error body.

gunicorn refuses a malformed request line or header (a NUL, CR or LF inside a value, a folded
line, two Content-Length fields, an oversized line...) before the app sees it, and by default
answers with an HTML page. This worker gives the same status as a JSON ``{"title",
"description"}`` body, so every error a client gets from the service has one shape.
"""

import json
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from api.errors import title_of

#: gunicorn's own statuses for parse errors that are not a plain 400 (gunicorn/workers/base.py).
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (errors.LimitRequestLine, 414),
    (errors.LimitRequestHeaders, 431),
    (errors.UnsupportedTransferCoding, 501),
    (errors.ExpectationFailed, 417),
    (errors.ForbiddenProxyRequest, 403),
)
#: Parse errors that are not the client's fault: left to gunicorn (a 500).
NOT_CLIENT_ERRORS = (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName, errors.ConfigurationProblem)


def error_response(exc: Exception) -> bytes:
    """The whole HTTP response for a request gunicorn could not parse."""
    status = next((s for cls, s in STATUSES if isinstance(exc, cls)), 400)
    reason = title_of(status)  # the API's one title per status
    body = json.dumps({"title": reason, "description": f"malformed HTTP request: {exc}"}).encode("ascii")
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


class JsonErrorWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, with JSON bodies for the requests it refuses to parse."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        if not isinstance(exc, errors.ParseException) or isinstance(exc, NOT_CLIENT_ERRORS):
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, error_response(exc))
        except Exception:
            self.log.debug("Failed to send error message.")
