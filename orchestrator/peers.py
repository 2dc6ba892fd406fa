"""The ledger's other nodes, read over HTTP for catching up (ledger.catchup.Peers).

Requests are signed with this node's own key under its genesis name (a node reads its peers'
ledger endpoints as an auditor would). Peers are asked in turn; one that fails, refuses or has
fewer entries than asked for is passed over for the next. What they answer is verified by the
caller: a peer is only a source of bytes.
"""

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import keys
from ledger.errors import StorageError
from orchestrator.client import Client

log = logging.getLogger("orchestrator.peers")


class PeerSource:
    def __init__(self, urls: Sequence[str], node_name: str, node_key: Ed25519PrivateKey, timeout_s: float = 30) -> None:
        pem = keys.private_pem(node_key)
        self.clients = [Client(url, pem, node_name, timeout=timeout_s) for url in urls]
        self._at = 0

    def _ask(self, path: str, check: Any, **params: Any) -> Any:
        errors = []
        for turn in range(len(self.clients)):
            client = self.clients[(self._at + turn) % len(self.clients)]
            try:
                response = client.get(path, **params)
                if response.status_code != 200:
                    raise ValueError(f"answered {response.status_code}: {response.text[:200]}")
                value = check(response.json())
            except (requests.RequestException, ValueError, TypeError, KeyError, binascii.Error) as e:
                errors.append(f"{client.url}: {e}")
                continue
            self._at = (self._at + turn) % len(self.clients)
            return value
        raise StorageError(f"no peer answered GET {path}: " + "; ".join(errors) if errors else "no peer is configured")

    def entries(self, start: int, end: int) -> list[bytes]:
        def check(answer: Any) -> list[bytes]:
            page = answer["entries"]
            raws = [base64.b64decode(e["raw"], validate=True) for e in page]
            if not raws or [e["seq"] for e in page] != list(range(start, start + len(raws))) or len(raws) > end - start:
                raise ValueError(f"no entries {start}..{end - 1}")
            return raws

        return list(self._ask("/ledger/entries", check, start=start, end=end))

    def consistency(self, first: int, second: int) -> list[bytes]:
        def check(answer: Any) -> list[bytes]:
            return [base64.b64decode(p, validate=True) for p in answer["proof"]]

        return list(self._ask("/ledger/proofs/consistency", check, first=first, second=second))


def factory(urls: Sequence[str]) -> Any:
    """What Ledger.open takes as `peers`: builds the source once the node knows its name."""

    def make(node_name: str, node_key: Ed25519PrivateKey) -> PeerSource:
        return PeerSource(urls, node_name, node_key)

    return make
