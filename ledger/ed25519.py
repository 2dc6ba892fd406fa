"""Ed25519 verification of client signatures, through libsodium (PyNaCl).

libsodium's check is about twice as fast as OpenSSL's here and releases the
GIL, so request threads (and `verify`'s worker threads) check signatures on
the second core while the writer applies entries on the first. It is also at
least as strict (canonical S, no small-order keys), so whatever it accepts an
OpenSSL-based auditor accepts too. Both the fast and the general RFC 9421 path
use it, so they agree.
"""

import base64
from functools import lru_cache

import nacl.exceptions
import nacl.signing

VerifyKey = nacl.signing.VerifyKey


@lru_cache(maxsize=4096)
def verify_key(public_b64: str) -> VerifyKey:
    """The verifier for a membership record's base64 raw public key."""
    return VerifyKey(base64.b64decode(public_b64, validate=True))


def valid(key: VerifyKey, signature: bytes, message: bytes) -> bool:
    """Whether signature is key's Ed25519 signature of message."""
    if len(signature) != 64:
        return False
    try:
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True
