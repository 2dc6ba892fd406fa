"""Nonces seen in the signature window, for reads and writes alike.

Writes also record their nonce in state (the state machine refuses a reused
one, durably); reads are not logged, so this in-memory cache is what stops a
read reusing a nonce, and a write reusing a read's nonce. A nonce is tied to
the signature that used it: the exact same signed write may come again (a
safe retry), any other request with that nonce is refused.
"""

import threading
from collections import deque


class NonceCache:
    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[bytes]] = {}  # (key id, nonce) -> (fingerprint,)
        self._expiry: deque[tuple[int, tuple[str, str]]] = deque()
        self._pruning = threading.Lock()

    def claim(self, key_id: str, nonce: str, fingerprint: bytes, created: int, now_s: int, *, resend: bool) -> bool:
        """Record the nonce for this signature; False if it was used before.

        With resend=True (writes), the exact same signature may use it again. Without a lock:
        dict.setdefault is atomic, so of two concurrent claims exactly one inserts (request
        threads waiting on a shared lock here cost every request context switches under load).
        """
        self._prune(now_s)
        item = (key_id, nonce)
        mine = (fingerprint,)  # a new object: whether it went in tells whether this claim came first
        seen = self._seen.setdefault(item, mine)
        if seen is not mine:
            return resend and seen[0] == fingerprint
        # A signature stays acceptable until created + window; remember it at least that long.
        self._expiry.append((max(created, now_s) + self.window_s, item))
        return True

    def _prune(self, now_s: int) -> None:
        """Forget nonces whose signatures can no longer be accepted (one pruner at a time)."""
        if self._pruning.acquire(blocking=False):  # only the pruner pops: the peek below is safe
            try:
                while self._expiry and self._expiry[0][0] < now_s:
                    self._seen.pop(self._expiry.popleft()[1], None)
            finally:
                self._pruning.release()
