"""`orchestrator serve` with parts of the write path switched off, to see what each part costs.

    python bench/variant_server.py DATA_DIR HOST:PORT VARIANT

VARIANT is one of:
  full          the real server
  no-writer     writes are authenticated, then answered at once with a fixed receipt: no
                ordering, state machine, log append or fsync (nothing is written)
  no-auth       as no-writer, and the signature is not checked nor the key looked up

Only for bench/decompose.py: the variants answer writes without recording them.
"""

import sys
from concurrent.futures import Future
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import httpsig  # noqa: E402
from ledger.entry import SignedRequest  # noqa: E402
from ledger.proposal import Committed, Receipt  # noqa: E402
from ledger.service import Ledger  # noqa: E402
from orchestrator import server  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402

VARIANTS = ("full", "no-writer", "no-auth")


class NoWriter(Ledger):
    """Writes are authenticated (signature, key, role, window, nonce), then answered at once."""

    def write(self, request: SignedRequest, media_type: str = "application/json") -> "Future[Committed]":
        signer = self.authenticate(request, "viewer")
        params = signer.params
        self.nonces.claim(params.key_id, params.nonce, params.fingerprint, params.created, int(self.clock()),
                          resend=True)
        future: Future[Committed] = Future()
        future.set_result(Committed(201, {"new_datas": [], "new_learnuplets": 0}, Receipt(0, "00" * 32)))
        return future


class NoAuth(NoWriter):
    """As NoWriter, and the signature is not checked nor the key looked up."""

    def authenticate(self, request: SignedRequest, role: str | None = None) -> httpsig.Signer:
        return httpsig.Signer(httpsig.signature_params(request), ("content-digest",))


def main() -> None:
    data_dir, bind, variant = sys.argv[1:4]
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    kind = {"full": Ledger, "no-writer": NoWriter, "no-auth": NoAuth}[variant]
    server.run(Settings(data_dir=Path(data_dir), bind=bind), open_ledger=kind.open)


if __name__ == "__main__":
    main()
