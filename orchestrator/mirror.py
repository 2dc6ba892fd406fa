"""`orchestrator mirror`: a node's log, fetched as tlog-tiles over HTTP into a local data dir.

The checking is :func:`ledger.mirror.mirror`'s; this is the HTTP side. Requests are signed when a
key is found as `orchestrator call` finds one (--key-file, else DATA_DIR/keys/KEY_ID.pem), which
must hold the auditor role; without one they go unsigned, which a node serving ``public_log``
answers.
"""

from pathlib import Path

import requests

from ledger.errors import StorageError
from orchestrator.client import Client

TIMEOUT = 60.0


class HttpFetch:
    """GET URL/PATH -> the answer's bytes; raises StorageError unless the node answers 200."""

    def __init__(self, url: str, client: Client | None) -> None:
        self.url = url.rstrip("/")
        self.client = client
        self.session = requests.Session()
        self.requests = 0

    def __call__(self, path: str) -> bytes:
        self.requests += 1
        try:
            if self.client is not None:
                response: requests.Response = self.client.request("GET", "/" + path, timeout=TIMEOUT)
            else:
                response = self.session.get(f"{self.url}/{path}", timeout=TIMEOUT)
        except requests.RequestException as e:
            raise StorageError(f"cannot reach {self.url}: {e}") from e
        if response.status_code == 200:
            return response.content
        try:
            detail = response.json().get("description") or response.json().get("title") or response.text
        except (ValueError, AttributeError):
            detail = response.text[:200]
        hint = ""
        if response.status_code == 401 and self.client is None:
            hint = (
                "; the node does not publish its log (public_log): sign with a key holding the auditor role "
                "(--key-file, or DATA_DIR/keys/KEY_ID.pem with --key-id)"
            )
        raise StorageError(f"GET /{path} answered {response.status_code}: {detail}{hint}")


def key_client(url: str, key_file: Path, key_id: str, required: bool) -> Client | None:
    """A signing client when the key file exists; None (unsigned requests) when it does not and
    none was asked for explicitly. Raises StorageError for a key file asked for that cannot be read."""
    if not key_file.exists() and not required:
        return None
    try:
        return Client.from_file(url, key_file, key_id)
    except OSError as e:
        raise StorageError(f"cannot read the key file {key_file}: {e.strerror}") from e
