"""The signature fast path accepts and rejects exactly what the general RFC 9421 library does."""

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signing import Signer

from ledger import ed25519, fastsig, httpsig, keys
from ledger.entry import SignedRequest
from ledger.errors import AuthError

KEY = keys.new_private_key()
OTHER = keys.new_private_key()
SIGNER = Signer(keys.private_pem(KEY), "alice")


def resolve(key_id: str):
    keyring = {"alice": KEY, "bob": OTHER}
    return ed25519.verify_key(keys.public_b64(keyring[key_id])) if key_id in keyring else None


def outcome(verify, request: SignedRequest):
    try:
        signer = verify(request, resolve)
    except AuthError:
        return "rejected"
    return ("accepted", signer.params, signer.covered_fields)


def _replace_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    headers = dict(request.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return SignedRequest(request.method, request.target, headers, request.body)


def _edit(name: str, old: str, new: str):
    """A mutation replacing `old` by `new` in one header (absent header: empty)."""
    return lambda r, d: _replace_header(r, name, r.headers.get(name, "").replace(old, new))


MUTATIONS = [
    lambda r, d: r,
    lambda r, d: SignedRequest(r.method, r.target, r.headers, r.body + b" "),
    lambda r, d: SignedRequest("PUT", r.target, r.headers, r.body),
    lambda r, d: SignedRequest(r.method.lower(), r.target, r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target.replace("ledger.test", "LEDGER.test"), r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target.replace("ledger.test", "ledger.test:80"), r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target.replace("ledger.test", "ledger.test:"), r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target + "?x=1", r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target.replace("/problem", "/problem%2"), r.headers, r.body),
    lambda r, d: SignedRequest(r.method, r.target.replace("http://", "https://"), r.headers, r.body),
    lambda r, d: _replace_header(r, "date", r.headers.get("date", "") + " "),
    _edit("date", "GMT", "UTC"),
    lambda r, d: _replace_header(r, "date", None),
    lambda r, d: _replace_header(r, "date", "Fri,\t27 Nov"),
    lambda r, d: _replace_header(r, "content-digest", None),
    _edit("content-digest", "sha-256", "sha-512"),
    lambda r, d: _replace_header(r, "content-digest", "sha-256=:" + base64.b64encode(bytes(32)).decode() + ":"),
    _edit("signature-input", "alice", "bob"),
    _edit("signature-input", "alice", "carol"),
    _edit("signature-input", "ed25519", "rsa"),
    _edit("signature-input", ";created", ";created=1;x"),
    _edit("signature-input", '" "', '"  "'),
    _edit("signature-input", '"date" ', ""),
    _edit("signature-input", '"date"', '"date" "date"'),
    _edit("signature-input", ' "content-digest"', ""),
    _edit("signature-input", "pyhms=", "other="),
    lambda r, d: _replace_header(r, "signature-input", r.headers.get("signature-input", "") + ';tag="x"'),
    _edit("signature-input", ";created=", ";created=0"),
    _edit("signature", "pyhms=:", "pyhms=:A"),
    lambda r, d: _replace_header(r, "signature", r.headers.get("signature", "")[:-5] + "AAAA:"),
    lambda r, d: _replace_header(r, "signature", r.headers.get("signature", "") + ", x=:AAAA:"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=4),
    method=st.sampled_from(["POST", "GET"]),
    mutations=st.lists(st.sampled_from(range(len(MUTATIONS))), max_size=3),
    data=st.data(),
)
def test_fast_path_agrees_with_library(body, method, mutations, data) -> None:
    request = SIGNER.sign(method, "/problem", json=body if method == "POST" else None)
    for index in mutations:
        request = MUTATIONS[index](request, data)
    assert outcome(httpsig.verify_request, request) == outcome(httpsig.verify_general, request)


def test_stock_client_requests_take_the_fast_path() -> None:
    request = SIGNER.sign("POST", "/problem", json={"a": 1})
    parsed = fastsig.parse(request)
    assert parsed is not None and fastsig.verify(parsed, request, ed25519.verify_key(keys.public_b64(KEY)))
    assert outcome(httpsig.verify_request, request)[0] == "accepted"
