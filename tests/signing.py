"""Signed requests for in-process engine tests.

A stock client (``requests`` + ``requests-http-signature``, the same settings as
``orchestrator.client.Client``) signs a prepared request; :func:`sign` turns it
into the :class:`ledger.entry.SignedRequest` the ledger authenticates, exactly as
``api.signed.signed_request`` does for a request that came over HTTP.
"""

import datetime
from pathlib import Path
from typing import Any

import requests
from requests_http_signature import HTTPSignatureAuth, algorithms

from ledger.entry import SignedRequest

BASE_URL = "http://ledger.test"


class _ChosenAuth(HTTPSignatureAuth):
    """A stock signer whose nonce or created time the test chooses (None: the stock choice)."""

    def __init__(self, *args: Any, nonce: str | None, created: float | None, **kwargs: Any) -> None:
        super().__init__(*args, use_nonce=True, **kwargs)
        self._nonce = nonce
        self._created = created

    def get_nonce(self, request: requests.PreparedRequest) -> str | None:
        return self._nonce if self._nonce is not None else super().get_nonce(request)

    def get_created(self, request: requests.PreparedRequest) -> datetime.datetime:
        if self._created is None:
            return super().get_created(request)  # type: ignore[no-any-return]
        return datetime.datetime.fromtimestamp(self._created)


class Signer:
    """Signs requests with one key file (key id = the file's stem unless given)."""

    def __init__(self, key_pem: bytes, key_id: str) -> None:
        self.key_pem = key_pem
        self.key_id = key_id

    @classmethod
    def from_file(cls, path: Path, key_id: str | None = None) -> "Signer":
        return cls(path.read_bytes(), key_id or path.stem)

    def sign(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        nonce: str | None = None,
        created: float | None = None,
        base_url: str = BASE_URL,
    ) -> SignedRequest:
        """A signed request for base_url + path; `data` sends raw body bytes instead of `json`;
        `nonce` and `created` (Unix seconds) replace the stock client's choices."""
        if nonce is None and created is None:
            auth: HTTPSignatureAuth = HTTPSignatureAuth(
                signature_algorithm=algorithms.ED25519, key=self.key_pem, key_id=self.key_id, use_nonce=True
            )
        else:
            auth = _ChosenAuth(
                signature_algorithm=algorithms.ED25519, key=self.key_pem, key_id=self.key_id, nonce=nonce,
                created=created,
            )
        prepared = requests.Request(method, base_url + path, json=json, data=data, headers=headers).prepare()
        prepared = auth(prepared)
        return to_signed_request(prepared)


def to_signed_request(prepared: requests.PreparedRequest) -> SignedRequest:
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    assert prepared.method is not None and prepared.url is not None
    assert isinstance(body, bytes), "streamed bodies are not supported"
    headers = {
        name.lower(): value if isinstance(value, str) else value.decode() for name, value in prepared.headers.items()
    }
    return SignedRequest(method=prepared.method, target=prepared.url, headers=headers, body=body)
