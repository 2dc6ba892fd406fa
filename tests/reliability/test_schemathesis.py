"""Generated bad (and good) input: schemathesis against a live server, every request signed.

schemathesis derives requests from the OpenAPI contract (api/openapi.py): examples, boundary
and negative cases (its coverage phase), then random valid and invalid ones (fuzzing). Each is
signed by ``requests-http-signature`` as a requests auth, so the signature covers exactly the
bytes sent. For every request:

- no 5xx, and the response conforms to the contract (status, content type, schema) and to
  schemathesis's other default checks (negative data rejected, unsigned requests refused,
  405 with Allow for undocumented methods...);
- when the server refused it (4xx), the ledger head (log size and state digest) is unchanged.

About a thousand requests by default; at least 10,000 with ORCHESTRATOR_FULL=1. Figures are
printed by the last test (run with -s).
"""

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from conftest import FULL, Server, free_port, init_ledger, report, scale
from requests_http_signature import HTTPSignatureAuth, algorithms
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from api.openapi import spec

KEY_ID = "everything"  # tests/conftest.py's key holding every role
EXAMPLES = scale(ci=5, full=450)  # fuzzing examples per operation, after the coverage phase
MINIMUM = 10_000 if FULL else 500  # requests the suite must have sent

TRIED: Counter[str] = Counter()  # operation label -> generated requests sent
STATUSES: Counter[int] = Counter()


class Signer(requests.auth.AuthBase):
    """The stock RFC 9421 client as a requests auth; its key is set once the server exists.

    A request that already carries signature headers is left as it is: schemathesis's
    ignored_auth check sets made-up values of the contract's apiKey headers to probe that the
    server refuses them, and its failure reports rebuild a request from the signed headers.
    """

    auth: HTTPSignatureAuth | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert self.auth is not None, "the fuzzed fixture sets the key"
        if any(name in request.headers for name in ("Signature", "Signature-Input", "Content-Digest")):
            return request
        return self.auth(request)


SIGNER = Signer()
schema = schemathesis.openapi.from_dict(
    spec(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": EXAMPLES, "with-security-parameters": False},
            # Refusals of invalid input: schemathesis's list, plus the HTTP server's 414/431 for
            # a request line or header block over its limits, and 413; never a 5xx.
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431]
                }
            },
        }
    ),
)
schema.auth.set_from_requests(SIGNER)


#: First path segments the seed's generic routes (/{collection}, /{collection}/{uuid}) serve: there a
#: method the contract does not list is an unknown collection or write endpoint, 404 (README, DESIGN).
GENERIC = {"problem", "algo", "data", "learnuplet", "preduplet", "prediction", "learndone", "preddone"}


def undeclared_method(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """schemathesis's unsupported_method check (405 with Allow), but 404 on the generic routes."""
    segment = case.formatted_path.strip("/").split("/")[0]
    if response.status_code == 404 and segment in GENERIC:
        return None
    return unsupported_method(ctx, response, case)


class Head:
    """The ledger head of the fuzzed server, read with a signed GET /ledger/head."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()
        self.last: dict | None = None  # the head after the previous generated request

    def log_lines(self) -> list[dict]:
        """The server's request log lines (every request it answered, probes and head reads too)."""
        path = self.server.data_dir.parent / f"server-{self.server.port}.log"
        lines = (line for line in path.read_text().splitlines() if '"orchestrator.request"' in line)
        return [json.loads(line) for line in lines]

    def read(self) -> dict:
        response = self.session.get(self.server.url + "/ledger/head", auth=SIGNER, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    init_ledger(data_dir)
    SIGNER.auth = HTTPSignatureAuth(
        signature_algorithm=algorithms.ED25519,
        key=(Path(data_dir) / "keys" / f"{KEY_ID}.pem").read_bytes(),
        key_id=KEY_ID,
        use_nonce=True,
    )
    server = Server(data_dir, free_port()).start()
    yield Head(server)
    server.stop()


def short_waits(case: schemathesis.Case) -> None:
    """A valid generated ``wait`` holds its request that many seconds when nothing matches (almost
    always): 0.05 s instead, so that a run takes minutes, not hours. Invalid ones go as generated."""
    query = case.query
    if not query or "wait" not in query:
        return
    try:
        seconds = float(query["wait"])
    except (TypeError, ValueError):
        return
    if 0 < seconds <= 60:
        query["wait"] = "0.05"


@schema.parametrize()
def test_generated_requests(case: schemathesis.Case, fuzzed: Head) -> None:
    if case.method == "POST" and (case.path_parameters or {}).get("key_id") == KEY_ID:
        return  # changing the signing key's own roles would blind the rest of the run
    short_waits(case)
    before = fuzzed.read()
    # Between two generated requests only the checks' probes ran (unsigned, refused): no change.
    assert fuzzed.last in (None, before), f"a check's probe changed the ledger: {fuzzed.last} -> {before}"
    response = case.call(base_url=fuzzed.server.url, timeout=30)
    after = fuzzed.last = fuzzed.read()
    TRIED[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if 400 <= response.status_code < 500:
        assert after == before, f"refused {case.method} {case.formatted_path} changed the ledger: {before} -> {after}"
    case.validate_response(
        response,
        # Valid-looking input may still be refused (unknown references, wrong state): not a failure.
        excluded_checks=[positive_data_acceptance, unsupported_method],
        additional_checks=[undeclared_method],
        transport_kwargs={"base_url": fuzzed.server.url, "timeout": 30},
    )


def test_figures(fuzzed: Head) -> None:
    """The run's figures; it must have sent enough requests, to every operation."""
    tried = sum(TRIED.values())
    answered = Counter(line["status"] for line in fuzzed.log_lines())
    report(
        "schemathesis",
        requests_tried=tried,
        operations=len(TRIED),
        statuses=dict(sorted(STATUSES.items())),
        server_answers_incl_head_reads_and_auth_probes=dict(sorted(answered.items())),
        log_size=fuzzed.read()["size"],
    )
    assert not any(status >= 500 for status in answered)
    documented = {f"{method.upper()} {path}" for path, item in spec()["paths"].items() for method in item}
    assert set(TRIED) == documented, sorted(documented - set(TRIED))
    assert tried >= MINIMUM
    assert not any(status >= 500 for status in STATUSES)
