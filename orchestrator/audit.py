"""A running node, read over HTTP with an auditor key, as a verification source.

The node's answers are the input being audited: an answer that is not what the API promises
(not JSON, a missing field, bad base64, entries out of order) is a verification failure naming
the entry or the part ("head", "checkpoint", "trusted checkpoint") it concerns, never a crash.
An answer other than 200 is a StorageError (the node refused or failed: exit 2).
"""

import base64
import binascii
from collections.abc import Iterator
from typing import Any

import requests

from ledger.errors import IntegrityError, StorageError
from ledger.store import Store
from ledger.verify import VerificationError
from orchestrator.client import Client

PAGE = 1000


class RemoteSource:
    live = True

    def __init__(self, client: Client) -> None:
        self.client = client
        self._size = 0

    def _get(self, path: str, **params: object) -> requests.Response:
        response: requests.Response = self.client.get(path, **params)
        if response.status_code != 200:
            try:
                detail = response.json().get("description", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise StorageError(f"GET {path} answered {response.status_code}: {detail}")
        return response

    def _json(self, path: str, **params: object) -> dict[str, Any]:
        """A 200 answer's JSON object; raises IntegrityError if it is none."""
        response = self._get(path, **params)
        try:
            answer = response.json()
        except ValueError as e:
            raise IntegrityError(f"GET {path} did not answer JSON: {_excerpt(response)}") from e
        if not isinstance(answer, dict):
            raise IntegrityError(f"GET {path} answered {_excerpt(response)}, not a JSON object")
        return answer

    def checkpoint(self) -> str:
        content = self._get("/ledger/checkpoint").content  # a signed note is UTF-8, whatever the header says
        try:
            return content.decode()
        except UnicodeDecodeError as e:
            reason = f"GET /ledger/checkpoint answered bytes that are not UTF-8 text (byte {e.start})"
            raise VerificationError("checkpoint", reason) from e

    def kept_checkpoint(self) -> None:
        return None  # a node keeps it in its data dir: `verify` checks it there

    def witnessed_checkpoint(self) -> None:
        return None  # GET /ledger/checkpoint is the witnessed one, when the node has witnesses

    def size(self) -> int:
        try:
            size = self._json("/ledger/head").get("size")
        except IntegrityError as e:
            raise VerificationError("head", e.message) from e
        if type(size) is not int or size < 0:
            raise VerificationError("head", f"GET /ledger/head answered size {size!r}, not a count of entries")
        return size

    def raws(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        position = start
        while position < end:
            try:
                page = self._json("/ledger/entries", start=position, end=min(end, position + PAGE))
            except IntegrityError as e:
                raise VerificationError(position, e.message) from e
            entries = page.get("entries")
            if not isinstance(entries, list):
                raise VerificationError(position, "GET /ledger/entries answered no list of entries")
            for item in entries:
                yield position, _raw(position, item)
                position += 1
            if not entries:
                return

    def stored_leaf(self, seq: int) -> None:
        return None  # checked through the checkpoint root

    def stored_nodes(self) -> None:
        return None  # the node's tree is checked through the checkpoint root and proofs

    def state(self) -> Store | None:
        return None

    def consistency(self, first: int, second: int) -> list[bytes]:
        proof = self._json("/ledger/proofs/consistency", first=first, second=second).get("proof")
        if not isinstance(proof, list):
            raise IntegrityError("the node answered no list of proof hashes")
        try:
            return [base64.b64decode(p, validate=True) for p in proof]
        except (TypeError, ValueError) as e:  # not a string / not base64 (binascii.Error)
            raise IntegrityError("the node answered proof hashes that are not base64") from e


def _raw(position: int, item: Any) -> bytes:
    """The bytes of one item of an entries page, which must be entry `position`."""
    if not isinstance(item, dict) or item.get("seq") != position or isinstance(item.get("seq"), bool):
        seq = item.get("seq") if isinstance(item, dict) else item
        raise VerificationError(position, f"GET /ledger/entries answered entry {str(seq)[:40]!r} in its place")
    raw = item.get("raw")
    if not isinstance(raw, str):
        raise VerificationError(position, "GET /ledger/entries answered the entry without its raw bytes")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error as e:
        raise VerificationError(position, f"GET /ledger/entries answered raw bytes that are not base64: {e}") from e


def _excerpt(response: requests.Response) -> str:
    text = response.text
    return repr(text[:60] + ("..." if len(text) > 60 else ""))
