"""The C2SP tlog-witness ``add-checkpoint`` messages, both ways (https://c2sp.org/tlog-witness).

A request body is an ``old <size>`` line, zero to 63 base64 consistency-proof lines, an empty
line, then the signed checkpoint note. Every line ends in a newline; sizes are decimals without
leading zeroes. A 200 answer is one or more note signature lines (the cosignatures); a 409
answer's body, of type ``text/x.tlog.size``, is the size the witness holds and a newline.
"""

import base64
import re
from dataclasses import dataclass

from ledger.errors import ValidationError

PATH = "/add-checkpoint"
SIZE_TYPE = "text/x.tlog.size"
MAX_PROOF = 63
_OLD = re.compile(r"old (0|[1-9][0-9]{0,18})")
_SIZE = re.compile(r"(0|[1-9][0-9]{0,18})\n")


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: tuple[bytes, ...]
    note: str


def request_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}\n", *(base64.b64encode(p).decode() + "\n" for p in proof), "\n", note]
    return "".join(lines).encode()


def parse_request(body: bytes) -> AddCheckpoint:
    """An add-checkpoint request body; raises ValidationError (400) if malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"the body is not UTF-8 (byte {e.start})") from e
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValidationError("the body has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if match is None:
        raise ValidationError(f"the first line must be 'old <size>', not {lines[0][:40]!r}")
    if len(lines) - 1 > MAX_PROOF:
        raise ValidationError(f"more than {MAX_PROOF} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            hash_ = base64.b64decode(line.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as e:
            raise ValidationError(f"consistency proof line {line[:60]!r} is not base64") from e
        if len(hash_) != 32:
            raise ValidationError("a consistency proof line is not a 32-byte hash")
        proof.append(hash_)
    return AddCheckpoint(int(match.group(1)), tuple(proof), note)


def size_body(size: int) -> bytes:
    return f"{size}\n".encode()


def parse_size(body: bytes) -> int:
    """The tree size in a 409 answer; raises ValidationError if the body is not one."""
    match = _SIZE.fullmatch(body.decode("ascii", errors="replace"))
    if match is None:
        raise ValidationError(f"a {SIZE_TYPE} body must be a decimal size and a newline, not {body[:40]!r}")
    return int(match.group(1))
