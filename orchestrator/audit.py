"""A running node, read over HTTP with an auditor key, as a verification source."""

import base64
from collections.abc import Iterator

import requests

from ledger.errors import StorageError
from ledger.store import Store
from orchestrator.client import Client

PAGE = 1000


class RemoteSource:
    live = True

    def __init__(self, client: Client) -> None:
        self.client = client
        self._size = 0

    def _get(self, path: str, **params: object) -> requests.Response:
        response = self.client.get(path, **params)
        if response.status_code != 200:
            try:
                detail = response.json().get("description", response.text)
            except ValueError:
                detail = response.text
            raise StorageError(f"GET {path} answered {response.status_code}: {detail}")
        return response

    def checkpoint(self) -> str:
        return str(self._get("/ledger/checkpoint").text)

    def size(self) -> int:
        return int(self._get("/ledger/head").json()["size"])

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        position = start
        while position < end:
            page = self._get("/ledger/entries", start=position, end=min(end, position + PAGE)).json()
            for item in page["entries"]:
                yield int(item["seq"]), base64.b64decode(item["raw"])
                position = int(item["seq"]) + 1
            if not page["entries"]:
                return

    def stored_leaf(self, seq: int) -> None:
        return None  # checked through the checkpoint root

    def stored_nodes(self) -> None:
        return None  # the node's tree is checked through the checkpoint root and proofs

    def state(self) -> Store | None:
        return None

    def consistency(self, first: int, second: int) -> list[bytes]:
        proof = self._get("/ledger/proofs/consistency", first=first, second=second).json()["proof"]
        return [base64.b64decode(p) for p in proof]
