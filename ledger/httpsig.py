"""RFC 9421 request signatures, as the ledger checks them live and offline.

The same :func:`verify_request` authenticates a live request and re-checks a
logged entry. It delegates the RFC 9421 and RFC 9530 work to the
``http-message-signatures`` library and adds the ledger's profile: exactly one
Ed25519 signature carrying ``keyid``, ``created`` and ``nonce``, covering
``@method``, the target (``@target-uri``, or ``@path`` and ``@query``) and
``content-digest``. Time windows are checked by the caller against its own
reference time (:func:`check_window`), never against a moving clock here.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import http_sf
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureAlgorithm, HTTPSignatureKeyResolver
from http_message_signatures.exceptions import HTTPMessageSignaturesException, InvalidSignature

from ledger import ed25519, fastsig
from ledger.entry import SignedRequest
from ledger.errors import AuthError

SIGNATURE_HEADERS = ("signature", "signature-input")
#: Longest accepted signature nonce, in characters (both the fast and the general path parse here).
MAX_NONCE = 128


@dataclass(frozen=True)
class SignatureParams:
    """The signature parameters the state machine needs, read without any crypto."""

    key_id: str
    created: int
    nonce: str
    expires: int | None
    fingerprint: bytes  # SHA-256 of key id and Signature value: identifies an exact resend


@dataclass(frozen=True)
class Signer:
    """A verified signature: its parameters and the header fields it covers."""

    params: SignatureParams
    covered_fields: tuple[str, ...]

    @property
    def key_id(self) -> str:
        return self.params.key_id


class _Message:
    """The request interface the library's component resolver reads."""

    def __init__(self, request: SignedRequest) -> None:
        self.method = request.method
        self.url = request.target
        self.headers = request.headers


class _SodiumEd25519(HTTPSignatureAlgorithm):
    """The library's ed25519 algorithm, checked with libsodium like the fast path."""

    algorithm_id = "ed25519"

    def __init__(self, public_key: ed25519.VerifyKey | None = None, private_key: Any = None) -> None:
        self.public_key = public_key

    def sign(self, message: bytes) -> bytes:
        raise NotImplementedError("the ledger only verifies")

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None or not ed25519.valid(self.public_key, signature, message):
            raise InvalidSignature("Signature verification failed")


class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        """Presence only; the window is checked by check_window with a fixed reference time."""
        if "created" not in sig_input.params:
            raise InvalidSignature('signature is missing the "created" parameter')


class _Resolver(HTTPSignatureKeyResolver):
    def __init__(self, resolve: Callable[[str], ed25519.VerifyKey | None]) -> None:
        self._resolve = resolve
        self.unknown: str | None = None

    def resolve_public_key(self, key_id: str) -> ed25519.VerifyKey | None:
        key = self._resolve(key_id)
        if key is None:
            self.unknown = key_id
        return key

    def resolve_private_key(self, key_id: str) -> Any:
        raise NotImplementedError


def _field_name(component_id: str) -> str:
    return component_id.split('"')[1]


def _unsigned(header: str) -> AuthError:
    return AuthError(f"missing {header.title()} header: requests must be signed (RFC 9421, ed25519)", reason="unsigned")


def verify_request(request: SignedRequest, resolve_key: Callable[[str], ed25519.VerifyKey | None]) -> Signer:
    """Verify the request's signature and body digest.

    Raises AuthError naming what is wrong; returns the signer's parameters.
    """
    for name in SIGNATURE_HEADERS:
        if name not in request.headers:
            raise _unsigned(name)
    parsed = fastsig.parse(request)
    if parsed is not None and isinstance(parsed.params.get("keyid"), str):
        key = resolve_key(str(parsed.params["keyid"]))
        if key is None:
            raise AuthError(f"unknown key id {parsed.params['keyid']!r}", reason="unknown_key")
        if fastsig.verify(parsed, request, key):
            return _profile(request, {f'"{name}"' for name in parsed.components}, parsed.components)
    return verify_general(request, resolve_key)


def verify_general(request: SignedRequest, resolve_key: Callable[[str], ed25519.VerifyKey | None]) -> Signer:
    """verify_request through the general RFC 9421 library only (no fast path)."""
    for name in SIGNATURE_HEADERS:
        if name not in request.headers:
            raise _unsigned(name)
    resolver = _Resolver(resolve_key)
    verifier = _Verifier(signature_algorithm=_SodiumEd25519, key_resolver=resolver)
    message = _Message(request)
    try:
        results = verifier.verify(message, max_age=None)
        if len(results) != 1:
            raise AuthError("exactly one signature is expected", reason="malformed")
        result = verifier.verify_body(message, results, request.body)[0]
    except (InvalidSignature, HTTPMessageSignaturesException) as e:
        if resolver.unknown is not None:
            raise AuthError(f"unknown key id {resolver.unknown!r}", reason="unknown_key") from e
        raise AuthError(f"invalid signature: {e}", reason=_failure_reason(e)) from e
    covered = result.covered_components
    names = {key.split(";")[0] for key in covered}
    fields = tuple(_field_name(k) for k in covered if not k.startswith('"@'))
    return _profile(request, names, fields)


def _failure_reason(error: Exception) -> str:
    """The AuthError reason for a failure the RFC 9421 library reports."""
    return "bad_digest" if "digest" in str(error).lower() else "bad_signature"


def _profile(request: SignedRequest, names: set[str], fields: tuple[str, ...]) -> Signer:
    """The ledger's coverage rules on a verified signature; its parameters."""
    if '"@method"' not in names:
        raise AuthError("signature must cover @method", reason="coverage")
    if '"@target-uri"' not in names and not {'"@path"', '"@query"'} <= names:
        raise AuthError("signature must cover @target-uri (or @path and @query)", reason="coverage")
    if '"content-digest"' not in names:
        raise AuthError("signature must cover content-digest", reason="coverage")
    params = signature_params(request)
    return Signer(params=params, covered_fields=tuple(sorted({f for f in fields if not f.startswith("@")})))


def check_window(signer: SignatureParams, now_s: int, window_s: int) -> None:
    """Refuse a signature created outside now ± window, or already expired."""
    check_not_ahead(signer, now_s, window_s)
    if signer.created < now_s - window_s:
        raise AuthError(
            f"signature created {now_s - signer.created} s ago, outside the {window_s} s window", reason="clock"
        )
    if signer.expires is not None and signer.expires < now_s:
        raise AuthError("signature has expired", reason="clock")


def check_not_ahead(signer: SignatureParams, now_s: int, window_s: int) -> None:
    """Refuse a signature created more than the window after now (the ledger's rule in apply)."""
    if signer.created > now_s + window_s:
        raise AuthError(
            f"signature created {signer.created - now_s} s in the future (window {window_s} s)", reason="clock"
        )


def loggable(request: SignedRequest, signer: Signer) -> SignedRequest:
    """The request reduced to what the log keeps: covered fields and signature headers."""
    keep = set(signer.covered_fields) | set(SIGNATURE_HEADERS)
    headers = {name: value for name, value in request.headers.items() if name in keep}
    return SignedRequest(request.method, request.target, headers, request.body)


def signature_params(request: SignedRequest) -> SignatureParams:
    """Parse keyid, created, nonce and expires from a (verified) request's Signature-Input.

    A pure function of the two signature headers (memoized: the request thread and
    the writer both ask); raises AuthError when they are absent.
    """
    return _signature_params(request.headers.get("signature-input", ""), request.headers.get("signature", ""))


@lru_cache(maxsize=4096)
def _signature_params(signature_input: str, signature: str) -> SignatureParams:
    fast = fastsig.parse_fields(signature_input, signature)
    if fast is not None:
        params = fast.params
        key_id, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
        expires = params.get("expires")
    else:
        key_id, created, nonce, expires = _general_params(signature_input)
    if not isinstance(key_id, str) or type(created) is not int or not isinstance(nonce, str) or not nonce:
        raise AuthError(
            "malformed Signature-Input parameters (keyid, created and a non-empty nonce are required)",
            reason="malformed",
        )
    if len(nonce) > MAX_NONCE:
        raise AuthError(
            f"malformed Signature-Input: the nonce is longer than {MAX_NONCE} characters", reason="malformed"
        )
    fingerprint = hashlib.sha256(key_id.encode() + b"\x00" + signature.encode()).digest()
    return SignatureParams(key_id, created, nonce, expires if type(expires) is int else None, fingerprint)


def _general_params(signature_input: str) -> tuple[Any, Any, Any, Any]:
    try:
        parsed: Any = http_sf.parse(signature_input.encode(), tltype="dictionary")
        if len(parsed) != 1:
            raise AuthError("exactly one signature is expected", reason="malformed")
        ((_, (_, params)),) = parsed.items()
        return params.get("keyid"), params.get("created"), params.get("nonce"), params.get("expires")
    except (KeyError, ValueError, TypeError) as e:
        raise AuthError(f"malformed Signature-Input: {e}", reason="malformed") from e
