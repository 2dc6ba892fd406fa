"""Observing requests: one structured log line and the request metrics per request, and a
warning with a short reason for each refused signature.

Log lines carry the method, the route template, the status, the key id the request claims,
the log sequence number of a write, and the latency. Never a private key, a signature, a
body, or a concrete path or query (uuids stay out of the logs).
"""

import logging
import re
import time
from typing import Any

import falcon
from falcon.asgi import Request, Response

from api.errors import status_of
from api.metrics import Metrics
from ledger.errors import AuthError

request_log = logging.getLogger("orchestrator.request")
auth_log = logging.getLogger("orchestrator.auth")

UNMATCHED = "unmatched"  # the route label of a request no route matched
_KEYID = re.compile(r'keyid="([A-Za-z0-9._-]{1,128})"')
_SEQ = re.compile(rb'"receipt":\{"seq":([0-9]+)')

def claimed_key_id(req: Request) -> str | None:
    """The keyid a request's Signature-Input names (as claimed: it may not have verified)."""
    found = _KEYID.search(req.get_header("Signature-Input") or "")
    return found.group(1) if found else None


class RequestObserver:
    """Falcon middleware: times each request, then logs it and counts it in ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def process_request(self, req: Request, resp: Response) -> None:
        req.context.started = time.perf_counter()

    async def process_response(self, req: Request, resp: Response, resource: Any, req_succeeded: bool) -> None:
        elapsed = time.perf_counter() - getattr(req.context, "started", time.perf_counter())
        route = req.uri_template or UNMATCHED
        status = resp.status_code
        self.metrics.observe_request(route, req.method, status, elapsed)
        if not request_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "method": req.method,
            "route": route,
            "status": status,
            "key_id": claimed_key_id(req),
            "latency_ms": round(elapsed * 1000, 3),
        }
        if req.method == "POST" and status < 300 and isinstance(resp.data, bytes):
            found = _SEQ.search(resp.data)
            if found:
                fields["seq"] = int(found.group(1))
        request_log.info("request", extra={"fields": fields})


def auth_error_handler(metrics: Metrics) -> Any:
    """The error handler for AuthError: count the reason, warn, answer 401 like any LedgerError."""

    async def handle(req: Request, resp: Response, error: AuthError, params: Any) -> None:
        reason = error.reason
        metrics.signature_failure(reason)
        auth_log.warning(
            "rejected signature",
            extra={
                "fields": {
                    "reason": reason,
                    "detail": error.message,
                    "method": req.method,
                    "route": req.uri_template or UNMATCHED,
                    "key_id": claimed_key_id(req),
                }
            },
        )
        raise falcon.HTTPError(status_of(error), title=error.title, description=error.message)

    return handle
