"""Domain errors of the ledger engine.

A shallow tree under :class:`LedgerError`. ``api/`` maps each class to one HTTP
status in a single place; nothing in ``ledger/`` knows about HTTP.
"""


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.title = title or self.default_title

    default_title = "Ledger error"


class ValidationError(LedgerError):
    """The request body or query is malformed or invalid (names the field)."""

    default_title = "Invalid request"


class UnknownReferenceError(ValidationError):
    """The body references an entity that does not exist."""

    default_title = "Unknown reference"


class NotFoundError(LedgerError):
    """The uuid or collection named in the path does not exist."""

    default_title = "Not found"


class ConflictError(LedgerError):
    """Duplicate uuid or a transition the entity's current state forbids."""

    default_title = "Conflict"


AUTH_REASONS = (
    "unsigned",  # no Signature / Signature-Input header
    "unknown_key",  # the key id is not registered
    "revoked_key",
    "bad_signature",
    "bad_digest",  # Content-Digest does not match the body
    "coverage",  # the signature does not cover what the profile requires
    "clock",  # created outside the window, or expired
    "replay",  # the nonce was used before
    "malformed",  # unparseable signature parameters
    "other",
)


class AuthError(LedgerError):
    """The request is not authenticated (bad signature, unknown key, replay...).

    ``reason`` is one of :data:`AUTH_REASONS`, set where the error is raised; metrics and
    logs read it (never the wording of the message).
    """

    default_title = "Unauthenticated"

    def __init__(self, message: str, *, reason: str = "other", title: str | None = None) -> None:
        super().__init__(message, title=title)
        if reason not in AUTH_REASONS:
            raise ValueError(f"unknown AuthError reason {reason!r}")
        self.reason = reason


class MisdirectedError(LedgerError):
    """The request (its signed authority) is addressed to a node other than this one."""

    default_title = "Misdirected request"


class ForbiddenError(LedgerError):
    """The key is known but its roles do not allow this action."""

    default_title = "Forbidden"


class TooLargeError(LedgerError):
    """The request body exceeds the configured limit."""

    default_title = "Body too large"


class UnsupportedMediaError(LedgerError):
    """The request body is not JSON."""

    default_title = "Unsupported media type"


class StorageError(LedgerError):
    """LevelDB failed (I/O error, disk full, data dir locked...)."""

    default_title = "Storage unavailable"


class OrderingError(StorageError):
    """The etcd cluster that orders this node's writes cannot order them now (unreachable, no
    quorum, shutting down): 503, nothing of the write is kept by this node."""

    default_title = "Ordering unavailable"


class InternalError(LedgerError):
    """A bug: the engine failed on a transaction it should have accepted or rejected."""

    default_title = "Internal error"


class IntegrityError(LedgerError):
    """Stored data does not check out (bad entry, state from another ledger...)."""

    default_title = "Integrity failure"
