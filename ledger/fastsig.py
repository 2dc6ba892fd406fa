"""A fast path for the one RFC 9421 profile stock clients send.

``requests-http-signature`` (and :mod:`orchestrator.client`) always send one
signature whose Signature-Input member is already in canonical Structured
Field form, covering plain components with no parameters. For exactly that
shape the signature base can be built with string operations, skipping the
general Structured Field parser, which costs several times the Ed25519 check
itself. :func:`parse` recognises the shape with strict patterns and returns
None for anything else; the caller then uses the general library path. Both
paths must accept and reject the same requests (a property test holds them to
it), so every rule the library applies to this shape is applied here too.
"""

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from ledger import ed25519
from ledger.entry import SignedRequest
from ledger.errors import AuthError

_LABEL = r"[a-z*][a-z0-9_\-.*]*"
_COMPONENT = r'"(?:@[a-z\-]+|[a-z0-9!#$%&\'*+\-.^_`|~]+)"'
_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_INTEGER = r"(?:0|[1-9][0-9]{0,14})"
_PARAM = rf";(?:created|expires)={_INTEGER}|;(?:keyid|alg|nonce)={_STRING}"
_INPUT = re.compile(rf"({_LABEL})=(\((?:{_COMPONENT}(?: {_COMPONENT})*)?\)(?:{_PARAM})*)")
_SIGNATURE = re.compile(rf"({_LABEL})=:([A-Za-z0-9+/]*={{0,2}}):")
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
_PARAMS = re.compile(r';([a-z]+)=("[^"]*"|[0-9]+)')
# RFC 3986 absolute URL without userinfo, IPv6 literals or fragment (library: _url.py).
_CHARS = r"A-Za-z0-9._~\-!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_URL = re.compile(
    rf"([A-Za-z][A-Za-z0-9+.\-]*)://((?:[{_CHARS}]|{_PCT})+)(?::([0-9]*))?"
    rf"(/(?:[{_CHARS}:@/]|{_PCT})*)?(?:\?((?:[{_CHARS}:@/?]|{_PCT})*))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_DERIVED = ("@method", "@authority", "@target-uri", "@path", "@query")


@dataclass(frozen=True)
class Parsed:
    components: tuple[str, ...]
    signature_params: str  # the member's text: exactly the @signature-params value
    params: dict[str, str | int]
    signature: bytes


def parse(request: SignedRequest) -> Parsed | None:
    """The signature in the common canonical shape, or None to use the general path."""
    headers = request.headers
    return parse_fields(headers.get("signature-input", ""), headers.get("signature", ""))


@lru_cache(maxsize=4096)  # authentication and the signature parameters both ask, per request
def parse_fields(signature_input: str, signature_field: str) -> Parsed | None:
    """parse() on the two header values, Signature-Input's and Signature's (its result is
    shared: read it, never change it)."""
    sig_input = _INPUT.fullmatch(signature_input)
    signature = _SIGNATURE.fullmatch(signature_field)
    if sig_input is None or signature is None or sig_input.group(1) != signature.group(1):
        return None
    text = sig_input.group(2)
    inner, _, _ = text[1:].partition(")")
    components = tuple(c.strip('"') for c in inner.split(" ")) if inner else ()
    if len(set(components)) != len(components):
        return None
    params: dict[str, str | int] = {}
    for name, value in _PARAMS.findall(text[len(inner) + 2 :]):
        if name in params:
            return None
        params[name] = value[1:-1] if value.startswith('"') else int(value)
    try:
        raw_signature = base64.b64decode(signature.group(2), validate=True)
    except binascii.Error:
        return None
    return Parsed(components, text, params, raw_signature)


@lru_cache(maxsize=256)  # a signature covers several derived components of one target
def _url(target: str) -> re.Match[str] | None:
    return _URL.fullmatch(target)


def _component_value(request: SignedRequest, name: str) -> str | None:
    """A component's value as the library computes it, or None when the fast path cannot say."""
    if name.startswith("@"):
        url = _url(request.target)
        if url is None or name not in _DERIVED or request.method in ("OPTIONS", "CONNECT"):
            return None
        if not request.method.isascii() or request.method != request.method.upper():
            return None
        scheme, host, port, path, query = url.groups()
        authority = host if port is None else f"{host}:{port}"
        if name == "@method":
            value = request.method
        elif name == "@authority":
            kept = port if port and port.lstrip("0") != _DEFAULT_PORTS.get(scheme.lower()) else None
            value = f"{host.lower()}:{kept}" if kept else host.lower()
        elif name == "@target-uri":
            value = f"{scheme}://{authority}{path or '/'}" + ("" if query is None else "?" + query)
        elif name == "@path":
            value = path or "/"
        elif name == "@query":
            value = "?" + (query or "")
        else:
            return None
        if not value.isascii() or not value.isprintable() or value != value.strip(" "):
            return None
        return value
    field = request.headers.get(name)
    if field is None or not field.isascii() or not field.isprintable() or field != field.strip(" \t"):
        return None
    return field


def verify(parsed: Parsed, request: SignedRequest, key: ed25519.VerifyKey) -> bool:
    """Check signature and content digest; False when the fast path cannot decide.

    Raises AuthError when it can decide and the request does not verify.
    """
    params = parsed.params
    if "keyid" not in params or "created" not in params:
        return False
    if params.get("alg", "ed25519") != "ed25519":
        raise AuthError("invalid signature: Unexpected algorithm specified in the signature", reason="bad_signature")
    lines = []
    for name in parsed.components:
        value = _component_value(request, name)
        if value is None:
            return False
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {parsed.signature_params}')
    if not ed25519.valid(key, parsed.signature, "\n".join(lines).encode("ascii")):
        raise AuthError("invalid signature: Signature verification failed", reason="bad_signature")
    if "content-digest" in parsed.components:
        digest = _DIGEST.fullmatch(request.headers["content-digest"])
        if digest is None:
            return False
        expected = base64.b64encode(hashlib.sha256(request.body).digest()).decode()
        if not hmac.compare_digest(digest.group(1), expected):
            raise AuthError("invalid signature: Content-Digest does not match the message body", reason="bad_digest")
    return True
