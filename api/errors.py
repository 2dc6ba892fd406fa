"""Mapping domain errors to HTTP, in one place.

Every error answer is JSON ``{"title", "description"}`` whose title is the standard reason
phrase of its status (:data:`TITLES`, RFC 9110's wording), whoever raised it: an engine
error, Falcon itself (404, 405), a probe, or the gunicorn worker refusing an unparseable
request (``orchestrator/worker.py`` uses :func:`title_of` too). The description says what
went wrong.
"""

import logging
from http import HTTPStatus
from typing import Any

import falcon
import orjson

from ledger import errors

log = logging.getLogger("orchestrator.api")

STATUS: list[tuple[type[errors.LedgerError], str]] = [
    (errors.NotFoundError, falcon.HTTP_404),
    (errors.ConflictError, falcon.HTTP_409),
    (errors.ValidationError, falcon.HTTP_400),
    (errors.AuthError, falcon.HTTP_401),
    (errors.ForbiddenError, falcon.HTTP_403),
    (errors.TooLargeError, falcon.HTTP_413),
    (errors.UnsupportedMediaError, falcon.HTTP_415),
    (errors.StorageError, falcon.HTTP_503),
    (errors.MisdirectedError, falcon.HTTP_421),
]

#: The one title of each error status (RFC 9110 section 15 reason phrases, and RFC 6585's 431).
TITLES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def title_of(status: int) -> str:
    """The title of an error answer with this status: its standard reason phrase."""
    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Error" if status < 500 else "Server Error"


def status_of(error: errors.LedgerError) -> str:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return falcon.HTTP_500


def handle_ledger_error(req: falcon.Request, resp: falcon.Response, error: errors.LedgerError, params: Any) -> None:
    raise falcon.HTTPError(status_of(error), description=error.message)


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Every error as JSON ``{"title", "description"}``, whatever the request's Accept header asks.

    The title (and the status line's reason phrase) comes from the status alone; a title the
    raiser chose becomes the description when it gave none. Falcon's own 405 gets one that
    names the allowed methods.
    """
    code = error.status_code
    title = title_of(code)
    description = error.description
    if description is None:
        if code == 405:
            allowed = resp.get_header("Allow") or "none"
            description = f"method {req.method} is not allowed on {req.path}; allowed: {allowed}"
        else:
            given = str(error.title or "")
            description = given if given and given != str(error.status) else title
    resp.status = f"{code} {title}"
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps({"title": title, "description": description})


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error
    log.exception("unexpected error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="the server failed; see its log")


def no_route(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
    """Where no route matches: a 404 that says which endpoint does not exist."""
    raise falcon.HTTPNotFound(description=f"no endpoint {req.method} {req.path}")
