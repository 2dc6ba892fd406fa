"""Checking live responses against the OpenAPI contract (api/openapi.py) with openapi-core.

:class:`Contract` validates a ``requests`` response (status documented for its operation,
content type, body schema) and records which (method, path template, status) it has seen,
so a test can tell which parts of the contract a run exercised.
"""

import re
from collections import Counter
from functools import lru_cache

import jsonschema
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from api.openapi import spec


@lru_cache(maxsize=1)
def _api() -> OpenAPI:
    return OpenAPI.from_dict(spec())


@lru_cache(maxsize=1)
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Path templates as regexes, literal ones first (``/ledger/head`` before ``/{collection}``...)."""
    paths = sorted(spec()["paths"], key=lambda p: (p.count("{"), p))
    return [(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p) for p in paths]


def template_of(path: str) -> str | None:
    """The contract's path template a concrete path falls under, or None."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    return next((template for regex, template in _templates() if regex.match(path)), None)


class Contract:
    """Validates responses against the contract and counts what it validated."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str, int]] = Counter()

    def check(self, response: requests.Response) -> None:
        """Raise (an openapi-core validation error) unless the response conforms to its operation."""
        request = response.request
        assert request.method is not None and request.path_url is not None
        template = template_of(request.path_url)
        if template is None or request.method.lower() not in spec()["paths"][template]:
            # Outside the contract: the documented answer is a JSON 404 (no such path) or 405.
            assert response.status_code in (404, 405), f"{request.method} {request.path_url}: {response.status_code}"
            assert response.headers["content-type"] == "application/json", response.headers
            jsonschema.validate(response.json(), spec()["components"]["schemas"]["Error"])
            self.seen[(request.method, "(undocumented)", response.status_code)] += 1
            return
        _api().validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(response))
        self.seen[(request.method, template, response.status_code)] += 1

    def hook(self, response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        """A requests response hook: ``session.hooks["response"].append(contract.hook)``."""
        self.check(response)
        return response

    def operations(self) -> set[tuple[str, str]]:
        return {(method, template) for method, template, _ in self.seen if template != "(undocumented)"}


def documented_operations() -> set[tuple[str, str]]:
    """Every (METHOD, path template) the contract documents."""
    return {(method.upper(), path) for path, item in spec()["paths"].items() for method in item}


def documented_statuses() -> set[tuple[str, str, int]]:
    return {
        (method.upper(), path, int(status))
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
