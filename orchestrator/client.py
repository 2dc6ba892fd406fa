"""A signing client for the Orchestrator API, on requests + requests-http-signature.

:class:`Client` signs every request with one key (RFC 9421, Ed25519, a fresh nonce each time).
Two levels:

- ``request``/``get``/``post`` send a signed request and return the raw
  :class:`requests.Response`, whatever its status;
- ``call`` and one method per endpoint (``add_problem``, ``find``, ``head``, ``add_node``...)
  return the decoded answer (JSON, or text for the checkpoint and key) and raise a
  :class:`ClientError` subclass carrying the status and the server's description otherwise.
"""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests_http_signature import HTTPSignatureAuth, algorithms

JSON = dict[str, Any]
#: The longest a request may wait for the ledger to change, in seconds (the server's limit).
MAX_WAIT_S = 60
UpletKind = Literal["learnuplet", "preduplet"]
QueryValue = str | int | float | bool | None


class ClientError(Exception):
    """The call failed. ``status`` is the HTTP status (None when no answer came back),
    ``title`` and ``description`` the server's explanation."""

    def __init__(
        self, description: str, *, status: int | None = None, title: str = "", method: str = "", path: str = ""
    ) -> None:
        super().__init__(description)
        self.status = status
        self.title = title
        self.description = description
        self.method = method
        self.path = path

    def __str__(self) -> str:
        if self.status is None:
            return self.description
        return f"{self.status} {self.title}: {self.description}" if self.title else f"{self.status}: {self.description}"


class Unreachable(ClientError):
    """No answer: the server is down, the address is wrong, or the request timed out."""


class BadRequest(ClientError):
    """400: malformed or invalid body or query, or an unknown entity referenced in the body."""


class Unauthorized(ClientError):
    """401: the signature was refused (unknown or revoked key, replayed nonce, clock skew...)."""


class Forbidden(ClientError):
    """403: the key's roles do not allow the endpoint, or the uplet was claimed by another key."""


class NotFound(ClientError):
    """404: unknown endpoint, collection or document."""


class Conflict(ClientError):
    """409: duplicate uuid or a transition the current state forbids."""


class PayloadTooLarge(ClientError):
    """413: the body exceeds the server's limit."""


class UnsupportedMediaType(ClientError):
    """415: the body is not JSON."""


class ServerError(ClientError):
    """5xx: the server failed."""


class ServiceUnavailable(ServerError):
    """503: storage trouble, or the server is not ready."""


ERRORS: dict[int, type[ClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    503: ServiceUnavailable,
}


def error_for(response: requests.Response) -> ClientError:
    """The typed error for a 4xx/5xx answer, with the server's title and description."""
    title, description = response.reason or "", ""
    try:
        data = response.json()
        if isinstance(data, dict):
            title = str(data.get("title") or title)
            description = str(data.get("description") or "")
    except ValueError:
        description = response.text.strip()
    status = response.status_code
    cls = ERRORS.get(status) or (ServerError if status >= 500 else ClientError)
    request = response.request
    path = urlsplit(request.url or "").path if request is not None else ""
    return cls(description or title, status=status, title=title, method=request.method or "", path=path)


def _unreachable(url: str, error: requests.RequestException) -> Unreachable:
    if isinstance(error, requests.Timeout):
        reason = "timed out"
    else:
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
        reason = found.group(1).strip().lower() if found else type(error).__name__
    return Unreachable(f"cannot reach {url}: {reason}")


def _query_value(value: QueryValue) -> str:
    """A filter value as the server reads it: JSON text for null, booleans and numbers."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        """A client signing with a PEM file; the key id defaults to the file's stem. Raises OSError."""
        return cls(url, key_file.read_bytes(), key_id or key_file.stem)

    def auth(self) -> HTTPSignatureAuth:
        return HTTPSignatureAuth(
            signature_algorithm=algorithms.ED25519, key=self.key_pem, key_id=self.key_id, use_nonce=True
        )

    # -- raw: any status comes back as a Response ----------------------------

    def request(
        self, method: str, path: str, *, json: Any = None, params: Any = None, timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """``timeout`` (seconds) defaults to the client's."""
        return self.session.request(
            method, self.url + path, json=json, params=params, auth=self.auth(),
            timeout=self.timeout if timeout is None else timeout, **kwargs,
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.request("POST", path, json=body)

    # -- checked: decoded answer, or a ClientError ---------------------------

    def call(
        self, method: str, path: str, body: Any = None, *, params: Mapping[str, QueryValue] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one signed request; the decoded JSON answer (text when the server sends text, the
        bytes as they came when it sends other content, such as a tile).

        ``path`` may carry a query string; ``timeout`` (seconds) defaults to the client's. Raises
        the ClientError subclass for the status, or Unreachable when no answer comes back.
        """
        query = None if params is None else {name: _query_value(value) for name, value in params.items()}
        try:
            response = self.request(method.upper(), path, json=body, params=query, timeout=timeout)
        except requests.RequestException as e:
            raise _unreachable(self.url, e) from e
        if response.status_code >= 400:
            raise error_for(response)
        content_type = response.headers.get("Content-Type") or ""
        if content_type.startswith("application/json"):
            return response.json()
        if content_type and not content_type.startswith("text/"):
            return response.content
        return response.text

    def _post(self, path: str, body: JSON) -> JSON:
        result: JSON = self.call("POST", path, body)
        return result

    def _get(self, path: str, params: Mapping[str, QueryValue] | None = None, timeout: float | None = None) -> JSON:
        result: JSON = self.call("GET", path, params=params, timeout=timeout)
        return result

    def _waiting(self, wait: float | None) -> float | None:
        """The timeout of a request that may wait ``wait`` seconds: the client's, on top of the wait."""
        return None if wait is None else wait + self.timeout

    # -- the seed API ---------------------------------------------------------

    def add_problem(self, uuid: str, workflow: str, test_dataset: list[str], size_train_dataset: int) -> JSON:
        """POST /problem (admin): ``{"new_problem", "receipt"}``."""
        body = {"uuid": uuid, "workflow": workflow, "test_dataset": test_dataset,
                "size_train_dataset": size_train_dataset}
        return self._post("/problem", body)

    def add_algo(self, uuid: str, name: str, problem: str) -> JSON:
        """POST /algo (analytics): ``{"new_algo", "new_learnuplets", "receipt"}``."""
        return self._post("/algo", {"uuid": uuid, "name": name, "problem": problem})

    def add_data(self, uuid: str | list[str], problems: str | list[str]) -> JSON:
        """POST /data (viewer): ``{"new_datas", "new_learnuplets", "receipt"}``."""
        return self._post("/data", {"uuid": uuid, "problems": problems})

    def request_prediction(self, data: list[str], problem: str) -> JSON:
        """POST /prediction (viewer): ``{"new_preduplets", "receipt"}``."""
        return self._post("/prediction", {"data": data, "problem": problem})

    def set_worker(self, kind: UpletKind, uuid: str, worker: str) -> JSON:
        """POST /worker/{kind}/{uuid} (compute): claim a todo uplet; ``{"<kind>_worker_set"}``."""
        return self._post(f"/worker/{kind}/{uuid}", {"worker": worker})

    def learn_done(
        self,
        uuid: str,
        status: Literal["done", "failed"],
        *,
        perf: float | None = None,
        train_perf: list[float] | Mapping[str, float] | None = None,
        test_perf: list[float] | Mapping[str, float] | None = None,
    ) -> JSON:
        """POST /learndone/{uuid} (compute, the claimer): ``{"updated_learnuplet"}``."""
        body: JSON = {"status": status}
        for name, value in (("perf", perf), ("train_perf", train_perf), ("test_perf", test_perf)):
            if value is not None:
                body[name] = dict(value) if isinstance(value, Mapping) else value
        return self._post(f"/learndone/{uuid}", body)

    def pred_done(
        self, uuid: str, status: Literal["done", "failed"], prediction_storage_uuid: str | None = None
    ) -> JSON:
        """POST /preddone/{uuid} (compute, the claimer): ``{"updated_preduplet"}``."""
        body: JSON = {"status": status}
        if prediction_storage_uuid is not None:
            body["prediction_storage_uuid"] = prediction_storage_uuid
        return self._post(f"/preddone/{uuid}", body)

    def document(self, collection: str, uuid: str, *, at: int | None = None) -> JSON:
        """GET /{collection}/{uuid}: one document (with ``at``: as it was right after entry ``at``)."""
        return self._get(f"/{collection}/{uuid}", None if at is None else {"at": at})

    def history(self, collection: str, uuid: str, *, at: int | None = None) -> JSON:
        """GET /{collection}/{uuid}/history: each version, oldest first, ``[{"seq", "time", "keyid",
        "request", "document"}]`` (with ``at``: those written by entries 0..at)."""
        return self._get(f"/{collection}/{uuid}/history", None if at is None else {"at": at})

    def find(self, collection: str, *, limit: int | None = None, after: str | None = None,
             **filters: QueryValue) -> JSON:
        """GET /{collection}?field=value...: one page, ``{"<collection>s": [...], "next_after"?}``
        (``at=SEQ`` among the filters: the page as of right after entry SEQ)."""
        params: dict[str, QueryValue] = dict(filters)
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        return self._get(f"/{collection}", params)

    def wait_for(self, collection: str, *, wait: float = MAX_WAIT_S, limit: int | None = None,
                 after: str | None = None, **filters: QueryValue) -> list[JSON]:
        """GET /{collection}?field=value...&wait=S: the matching documents (in ledger order, at most
        ``limit``) as soon as there are any: at once if some match now, else when one appears; the
        empty list once ``wait`` seconds (more than 0, at most 60) pass without one.

        A Compute node's loop::

            while True:
                for uplet in client.wait_for("learnuplet", status="todo"):
                    ...  # claim it (set_worker; Conflict if another node was first), run it, report
        """
        params: dict[str, QueryValue] = dict(filters)
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        params["wait"] = wait
        found: list[JSON] = self._get(f"/{collection}", params, timeout=self._waiting(wait))[collection + "s"]
        return found

    def find_all(self, collection: str, *, page: int = 1000, **filters: QueryValue) -> Iterator[JSON]:
        """Every matching document, in ledger order, following ``next_after`` page by page."""
        after: str | None = None
        while True:
            answer = self.find(collection, limit=page, after=after, **filters)
            yield from answer[collection + "s"]
            after = answer.get("next_after")
            if after is None:
                return

    # -- the ledger -----------------------------------------------------------

    def head(self) -> JSON:
        """GET /ledger/head: ``{"size", "state_digest"}``."""
        return self._get("/ledger/head")

    def checkpoint(self) -> str:
        """GET /ledger/checkpoint (auditor): the latest signed checkpoint note."""
        return str(self.call("GET", "/ledger/checkpoint"))

    def verifier_key(self) -> str:
        """GET /ledger/key (auditor): the node's C2SP verifier key."""
        return str(self.call("GET", "/ledger/key")).strip()

    def entries(self, start: int = 0, end: int | None = None, *, wait: float | None = None) -> JSON:
        """GET /ledger/entries (auditor): ``{"entries": [{"seq", "raw", "entry"}], "size", "next"}``.

        With ``wait`` (seconds, at most 60) a ``start`` equal to the log size waits for the next entry
        (``"entries"`` empty if none came by then); a follower asks again from ``start + len(entries)``."""
        params: dict[str, QueryValue] = {"start": start}
        if end is not None:
            params["end"] = end
        if wait is not None:
            params["wait"] = wait
        return self._get("/ledger/entries", params, timeout=self._waiting(wait))

    def entry(self, seq: int) -> JSON:
        """GET /ledger/entries/{seq} (auditor): ``{"seq", "raw", "entry"}``."""
        return self._get(f"/ledger/entries/{seq}")

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> JSON:
        """GET /ledger/proofs/inclusion (auditor): ``{"seq", "tree_size", "leaf_hash", "root", "proof"}``."""
        params: dict[str, QueryValue] = {"seq": seq}
        if tree_size is not None:
            params["tree_size"] = tree_size
        return self._get("/ledger/proofs/inclusion", params)

    def consistency_proof(self, first: int, second: int | None = None) -> JSON:
        """GET /ledger/proofs/consistency (auditor): ``{"first", "second", "first_root", "second_root", "proof"}``."""
        params: dict[str, QueryValue] = {"first": first}
        if second is not None:
            params["second"] = second
        return self._get("/ledger/proofs/consistency", params)

    # -- membership -----------------------------------------------------------

    def add_node(self, key_id: str, public_key: str, roles: list[str]) -> JSON:
        """POST /nodes (admin): register a key (base64 raw Ed25519 public key); ``{"new_node"}``."""
        return self._post("/nodes", {"key_id": key_id, "public_key": public_key, "roles": roles})

    def set_roles(self, key_id: str, roles: list[str]) -> JSON:
        """POST /nodes/{key_id} (admin): replace a key's roles; ``{"updated_node"}``."""
        return self._post(f"/nodes/{key_id}", {"roles": roles})

    def revoke_node(self, key_id: str) -> JSON:
        """POST /nodes/{key_id}/revoke (admin): revoke a key for good; ``{"revoked_node"}``."""
        return self._post(f"/nodes/{key_id}/revoke", {})

    def nodes(self) -> list[JSON]:
        """GET /nodes: every membership record."""
        result: list[JSON] = self._get("/nodes")["nodes"]
        return result

    def node(self, key_id: str) -> JSON:
        """GET /nodes/{key_id}: one membership record."""
        return self._get(f"/nodes/{key_id}")
