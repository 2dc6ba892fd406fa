"""Probes, unauthenticated: GET /healthz (the process answers), GET /readyz (it can serve).

Neither writes anything: readiness is read from the ledger's own bookkeeping (the outcome of
the last log write, and how far state is behind the log), so state stays equal to a replay.
"""

import asyncio
import time
from typing import Any, Protocol

import falcon
import orjson
from falcon.asgi import Request, Response

#: A commit updates the head just before it writes state; a lag seen in that instant is not
#: trouble. Readiness looks again for up to this long before it reports a lag.
LAG_GRACE_S = 0.05


class Probed(Protocol):
    """What readiness reads (a :class:`ledger.service.Ledger`)."""

    write_error: str | None

    def state_lag(self) -> int: ...

    def witness_report(self) -> dict[str, Any] | None: ...
    def order_trouble(self) -> str | None: ...


async def readiness(ledger: Probed, grace_s: float = LAG_GRACE_S) -> str | None:
    """None when the ledger can serve; otherwise why not, in a sentence (looks again without blocking the loop)."""
    if ledger.write_error is not None:
        return f"the last log write failed: {ledger.write_error}"
    trouble = ledger.order_trouble()
    if trouble is not None:
        return f"writes cannot be ordered: {trouble} (reads go on)"
    deadline = time.monotonic() + grace_s
    while True:
        lag = ledger.state_lag()
        if lag <= 0:
            return None
        if time.monotonic() >= deadline:
            return f"state is {lag} entries behind the log (a state write failed; the next write catches it up)"
        await asyncio.sleep(grace_s / 5)


class Health:
    """GET /healthz: 200 {"status": "ok"} while the process answers."""

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"status":"ok"}'


class Ready:
    """GET /readyz: 200 {"status": "ready"}, or 503 with the reason as the description.

    With witnesses, the 200 answer also holds ``"witnessing"``: the quorum, the witnessed tree
    size and each witness's state (``pending``, ``ok``, ``refused`` or ``down``, with the reason):
    a witness that refuses or is down never makes the node unready (writes go on).
    """

    def __init__(self, ledger: Probed) -> None:
        self.ledger = ledger

    async def on_get(self, req: Request, resp: Response) -> None:
        reason = await readiness(self.ledger)
        if reason is not None:
            raise falcon.HTTPServiceUnavailable(title="Not ready", description=reason)
        resp.content_type = falcon.MEDIA_JSON
        answer: dict[str, Any] = {"status": "ready"}
        report = self.ledger.witness_report()
        if report is not None:
            answer["witnessing"] = report
        resp.data = orjson.dumps(answer)
