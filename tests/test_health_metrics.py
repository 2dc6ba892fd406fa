"""Probes, Prometheus metrics and structured logs: against a real server, and in-process for the
storage failures a real disk will not produce on demand."""

import json
import time
import uuid
from pathlib import Path

import falcon.testing
import requests
from conftest import Server, new_uuid
from prometheus_client.parser import text_string_to_metric_families
from signing import Signer

from api.app import create_app
from ledger import keys
from ledger.config import LedgerConfig
from ledger.entry import encode
from ledger.genesis import genesis_entry
from ledger.service import Ledger
from ledger.store import MemoryStore
from orchestrator.client import Client

Samples = dict[tuple[str, frozenset], float]


def scrape(server: Server) -> tuple[str, Samples]:
    response = requests.get(server.url + "/metrics", timeout=10)  # no signature: a plain scraper
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _problem() -> dict:
    return {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}


def test_healthz_and_readyz_need_no_signature(server: Server) -> None:
    health = requests.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = requests.get(server.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    # The rest of the API still refuses unsigned requests.
    assert requests.get(server.url + "/ledger/head", timeout=10).status_code == 401


def test_metrics_count_requests_commits_and_refused_signatures(server: Server) -> None:
    admin, viewer = server.client("admin"), server.client("viewer")
    _, before = scrape(server)

    problems = [_problem(), _problem()]
    for body in problems:
        assert admin.post("/problem", body).status_code == 201
    assert viewer.get(f"/problem/{problems[0]['uuid']}").status_code == 200
    assert requests.get(server.url + "/problem", timeout=10).status_code == 401  # unsigned
    stranger = Client(server.url, keys.private_pem(keys.new_private_key()), "stranger")
    assert stranger.get("/problem").status_code == 401  # unknown key
    prepared = requests.Request("GET", server.url + "/nodes").prepare()
    prepared = viewer.auth()(prepared)
    with requests.Session() as session:
        assert session.send(prepared, timeout=10).status_code == 200
        assert session.send(prepared, timeout=10).status_code == 401  # the same nonce again

    text, after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("orchestrator_requests_total", route="/{collection}", method="POST", status="201") == 2
    assert delta("orchestrator_requests_total", route="/{collection}/{uuid}", method="GET", status="200") == 1
    assert delta("orchestrator_requests_total", route="/{collection}", method="GET", status="401") == 2
    assert delta("orchestrator_requests_total", route="/nodes", method="GET", status="401") == 1
    assert delta("orchestrator_request_duration_seconds_count", route="/{collection}", method="POST") == 2
    assert delta("orchestrator_request_duration_seconds_bucket", route="/{collection}", method="POST",
                 le="+Inf") == 2
    for reason in ("unsigned", "unknown_key", "replay"):
        assert delta("orchestrator_signature_failures_total", reason=reason) == 1, reason

    groups = delta("orchestrator_commit_group_size_count")
    assert 1 <= groups <= 2 and delta("orchestrator_commit_group_size_sum") == 2
    assert delta("orchestrator_commit_duration_seconds_count") == groups
    assert delta("orchestrator_commit_duration_seconds_sum") > 0
    assert value(after, "orchestrator_log_entries") == server.head()["size"]
    assert value(after, "orchestrator_state_lag_entries") == 0

    # Bounded labels only: no key ids, no uuids from paths or bodies.
    assert 'key_id="' not in text and "stranger" not in text and problems[0]["uuid"] not in text


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_one_json_log_line_per_request_without_signatures_or_bodies(fresh_server: Server) -> None:
    server = fresh_server
    log_file = server.data_dir.parent / f"server-{server.port}.log"
    admin = server.client("admin")
    secret = _problem()
    written = admin.post("/problem", secret)
    assert written.status_code == 201
    read = server.client("viewer").get(f"/problem/{secret['uuid']}")
    assert read.status_code == 200
    assert requests.get(server.url + "/nodes", timeout=10).status_code == 401

    # Info lines reach the log within 50 ms (a background thread writes them): wait for the last.
    deadline = time.monotonic() + 10
    while True:
        lines = _json_lines(log_file)
        requests_logged = [line for line in lines if line["logger"] == "orchestrator.request"]
        if any(line["route"] == "/nodes" for line in requests_logged) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    post = [line for line in requests_logged if line["method"] == "POST"]
    assert len(post) == 1
    assert post[0]["route"] == "/{collection}" and post[0]["status"] == 201 and post[0]["key_id"] == "admin"
    assert post[0]["seq"] == written.json()["receipt"]["seq"] and post[0]["latency_ms"] > 0
    assert post[0]["level"] == "info" and post[0]["time"].endswith("+00:00")
    get = [line for line in requests_logged if line["route"] == "/{collection}/{uuid}"]
    assert [(g["status"], g["key_id"], "seq" in g) for g in get] == [(200, "viewer", False)]
    unsigned = [line for line in requests_logged if line["route"] == "/nodes"]
    assert [(u["status"], u["key_id"]) for u in unsigned] == [(401, None)]
    (warning,) = [line for line in lines if line["level"] == "warning"]
    assert warning["message"] == "rejected signature" and warning["reason"] == "unsigned"
    assert warning["route"] == "/nodes" and "Signature" in warning["detail"]

    text = log_file.read_text()
    for request in (written.request, read.request):
        assert request.headers["Signature"] not in text
        assert request.headers["Signature-Input"] not in text
    private = (server.data_dir / "keys" / "admin.pem").read_text()
    assert private.splitlines()[1] not in text and "PRIVATE KEY" not in text
    assert secret["uuid"] not in text and secret["workflow"] not in text  # neither body nor concrete path


# -- in-process: storage failures ------------------------------------------------------------


def _in_memory(signer: Signer) -> Ledger:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = keys.public_b64(load_pem_private_key(signer.key_pem, None))  # type: ignore[arg-type]
    members = [{"key_id": signer.key_id, "public_key": public, "roles": ["admin"]}]
    node = keys.new_private_key()
    genesis = genesis_entry("test/ledger", keys.public_b64(node), members, 300, int(time.time() * 1000))
    return Ledger.in_memory(LedgerConfig(), encode(genesis), node)


def _post_problem(client: falcon.testing.TestClient, signer: Signer) -> falcon.testing.Result:
    body = {"uuid": str(uuid.uuid4()), "workflow": str(uuid.uuid4()), "test_dataset": [], "size_train_dataset": 1}
    signed = signer.sign("POST", "/problem", json=body)
    return client.simulate_post("/problem", body=signed.body, headers=signed.headers, host="ledger.test")


def _contents(store: MemoryStore) -> list[tuple[bytes, bytes]]:
    return list(store.scan(b""))


def test_readyz_reports_failed_writes_and_state_lag_and_probes_write_nothing() -> None:
    signer = Signer(keys.private_pem(keys.new_private_key()), "alice")
    ledger = _in_memory(signer)
    client = falcon.testing.TestClient(create_app(ledger))
    state: MemoryStore = ledger.state  # type: ignore[assignment]
    log_store: MemoryStore = ledger.log.store  # type: ignore[assignment]
    try:
        assert _post_problem(client, signer).status_code == 201
        before = _contents(state), _contents(log_store)
        for _ in range(3):
            for path in ("/healthz", "/readyz", "/metrics"):
                assert client.simulate_get(path).status_code == 200, path
        assert (_contents(state), _contents(log_store)) == before  # probes write nothing anywhere

        state.fail_writes = OSError("disk full")
        assert _post_problem(client, signer).status_code == 201  # durable in the log; state lags
        not_ready = client.simulate_get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json["title"] == "Service Unavailable"
        assert "state is 1 entries behind the log" in not_ready.json["description"]
        assert "orchestrator_state_lag_entries 1.0" in client.simulate_get("/metrics").text

        state.fail_writes = None
        log_store.fail_writes = OSError("I/O error")
        assert _post_problem(client, signer).status_code == 503  # state caught up, the log write failed
        not_ready = client.simulate_get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json["description"].startswith("the last log write failed: write failed: I/O error")
        assert client.simulate_get("/healthz").status_code == 200  # up, though not ready

        log_store.fail_writes = None
        assert _post_problem(client, signer).status_code == 201
        assert client.simulate_get("/readyz").json == {"status": "ready"}
    finally:
        ledger.close()
