"""Load generation: requests signed in advance, replayed over keep-alive connections.

Signing happens before the clock starts, so the client's own Ed25519 work does
not count against the server. Each worker thread owns one HTTP/1.1 connection.
"""

import http.client
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests_http_signature import HTTPSignatureAuth, algorithms


@dataclass(frozen=True)
class Prepared:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def presign(url: str, key_pem: bytes, key_id: str, method: str, path: str, json_body: object = None) -> Prepared:
    auth = HTTPSignatureAuth(signature_algorithm=algorithms.ED25519, key=key_pem, key_id=key_id, use_nonce=True)
    prepared = requests.Request(method, url + path, json=json_body, auth=auth).prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    return Prepared(method, prepared.path_url, dict(prepared.headers), body)


@dataclass
class Result:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(url: str, batches: list[list[Prepared]]) -> Result:
    """Send each batch on its own connection and thread; returns counts and latencies."""
    parts = urlsplit(url)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(len(batches) + 1)

    def worker(batch: list[Prepared]) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        mine: list[float] = []
        counts: dict[int, int] = {}
        start_gate.wait()
        for req in batch:
            t0 = time.perf_counter()
            conn.request(req.method, req.path, body=req.body or None, headers=req.headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t0)
            counts[response.status] = counts.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, n in counts.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [threading.Thread(target=worker, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return Result(sum(len(b) for b in batches), time.perf_counter() - t0, statuses, latencies)
