"""What flows through the write pipeline: proposals in, ordered proposals, outcomes out.

A :class:`Proposal` is an authenticated write as the log will keep it. A sequencer hands
proposals back as :class:`Ordered`, in their final order, each with the time its clock read;
``apply_batch`` turns them into entries and :class:`Committed` outcomes.
"""

from dataclasses import dataclass
from typing import Any

from ledger.entry import SignedRequest


@dataclass(frozen=True)
class Proposal:
    """An authenticated write: the request reduced to what the log keeps, and who signed it."""

    request: SignedRequest
    key_id: str
    nonce: str
    fingerprint: bytes  # SHA-256 of the key id and the Signature value: identifies an exact resend


@dataclass(frozen=True)
class Ordered:
    """A proposal in its place in the order, with the time (Unix ms) its sequencer read then.

    `position` is the sequencer's bookmark just after this proposal (opaque bytes, ordered as
    the sequencer orders; empty for the local sequencer): persisted with what was applied, it
    is where the order resumes after a restart."""

    proposal: Proposal
    proposed_ms: int
    position: bytes = b""


@dataclass(frozen=True)
class Receipt:
    seq: int
    leaf_hash: str


@dataclass(frozen=True)
class Committed:
    """What a client is told: the outcome of its transaction and where it sits in the log."""

    status: int
    body: dict[str, Any]
    receipt: Receipt
    resent: bool = False
