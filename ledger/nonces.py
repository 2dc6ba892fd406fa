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
        self._seen: dict[tuple[str, str], bytes] = {}
        self._expiry: deque[tuple[int, tuple[str, str]]] = deque()
        self._lock = threading.Lock()

    def claim(self, key_id: str, nonce: str, fingerprint: bytes, created: int, now_s: int, *, resend: bool) -> bool:
        """Record the nonce for this signature; False if it was used before.

        With resend=True (writes), the exact same signature may use it again.
        """
        with self._lock:
            while self._expiry and self._expiry[0][0] < now_s:
                self._seen.pop(self._expiry.popleft()[1], None)
            item = (key_id, nonce)
            seen = self._seen.get(item)
            if seen is not None:
                return resend and seen == fingerprint
            self._seen[item] = fingerprint
            # A signature stays acceptable until created + window; remember it at least that long.
            self._expiry.append((max(created, now_s) + self.window_s, item))
            return True
