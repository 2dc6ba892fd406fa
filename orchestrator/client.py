"""A small signing client for the Orchestrator API, on requests + requests-http-signature."""

from pathlib import Path
from typing import Any

import requests
from requests_http_signature import HTTPSignatureAuth, algorithms


class Client:
    """Sends requests signed with one key (RFC 9421, Ed25519, fresh nonce each time)."""

    def __init__(self, url: str, key_pem: bytes, key_id: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key_pem = key_pem
        self.key_id = key_id
        self.timeout = timeout
        self.session = requests.Session()

    @classmethod
    def from_file(cls, url: str, key_file: Path, key_id: str | None = None) -> "Client":
        return cls(url, key_file.read_bytes(), key_id or key_file.stem)

    def auth(self) -> HTTPSignatureAuth:
        return HTTPSignatureAuth(
            signature_algorithm=algorithms.ED25519, key=self.key_pem, key_id=self.key_id, use_nonce=True
        )

    def request(
        self, method: str, path: str, *, json: Any = None, params: Any = None, **kwargs: Any
    ) -> requests.Response:
        return self.session.request(
            method, self.url + path, json=json, params=params, auth=self.auth(), timeout=self.timeout, **kwargs
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.request("POST", path, json=body)
