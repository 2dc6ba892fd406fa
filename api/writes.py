"""Handing authenticated writes to the ledger from the event loop, with a bound on the queue.

A write waits for its commit without holding the loop (:mod:`api.bridge`). At most
``max_queued`` writes wait at once; past that a write is refused with 503 and ``Retry-After``
before it reaches the ledger, so nothing of it is appended and its nonce stays unused.
"""

import falcon

from api.bridge import Bridges
from api.door import LedgerDoor
from ledger.entry import SignedRequest
from ledger.proposal import Committed

#: Seconds a client refused for a full queue is asked to wait (a commit group takes milliseconds).
RETRY_AFTER_S = 1


class Writes:
    def __init__(self, ledger: LedgerDoor, max_queued: int) -> None:
        self.ledger = ledger
        self.max_queued = max_queued
        self._bridges = Bridges()

    @property
    def queued(self) -> int:
        """Writes handed to the ledger whose outcome has not come back yet."""
        return self._bridges.current().pending

    async def submit(self, request: SignedRequest, media_type: str) -> Committed:
        """Hand a write to the ledger (which authenticates it) and wait, without blocking the loop,
        until it is durable or refused.

        Raises falcon.HTTPServiceUnavailable when ``max_queued`` writes already wait, or the
        ledger's error for this write.
        """
        bridge = self._bridges.current()
        if bridge.pending >= self.max_queued:
            raise falcon.HTTPServiceUnavailable(
                title="Too many queued writes",
                description=f"{bridge.pending} writes are waiting to be committed (the limit is {self.max_queued}); "
                f"nothing was written: retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S,
            )
        return await bridge.wait(self.ledger.write(request, media_type))
