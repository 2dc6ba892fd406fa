"""Nonces seen on reads, remembered for the signature window (reads are not logged)."""

import threading
from collections import deque


class NonceCache:
    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._seen: set[tuple[str, str]] = set()
        self._expiry: deque[tuple[int, tuple[str, str]]] = deque()
        self._lock = threading.Lock()

    def claim(self, key_id: str, nonce: str, created: int, now_s: int) -> bool:
        """Record the nonce; False if this key already used it within the window."""
        with self._lock:
            while self._expiry and self._expiry[0][0] < now_s:
                self._seen.discard(self._expiry.popleft()[1])
            item = (key_id, nonce)
            if item in self._seen:
                return False
            self._seen.add(item)
            # A signature stays acceptable until created + window; remember it at least that long.
            self._expiry.append((max(created, now_s) + self.window_s, item))
            return True
