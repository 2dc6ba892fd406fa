"""Mapping domain errors to HTTP, in one place."""

import logging
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


def status_of(error: errors.LedgerError) -> str:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return falcon.HTTP_500


def handle_ledger_error(req: falcon.Request, resp: falcon.Response, error: errors.LedgerError, params: Any) -> None:
    raise falcon.HTTPError(status_of(error), title=error.title, description=error.message)


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Every error as JSON ``{"title", "description"}``, whatever the request's Accept header asks.

    Falcon's own errors (405 for a method a route lacks) carry no description: give them one.
    """
    description = error.description
    if description is None:
        if error.status_code == 405:
            allowed = resp.get_header("Allow") or "none"
            description = f"method {req.method} is not allowed on {req.path}; allowed: {allowed}"
        else:
            description = str(error.title)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps({"title": error.title, "description": description})


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error
    log.exception("unexpected error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal error", description="the server failed; see its log")


def no_route(req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
    """Where no route matches: a 404 that says which endpoint does not exist."""
    raise falcon.HTTPNotFound(title="Not found", description=f"no endpoint {req.method} {req.path}")
