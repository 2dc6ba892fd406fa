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

from ledger import httpsig, service  # noqa: E402
from ledger.writer import Committed, Receipt  # noqa: E402
from orchestrator import server  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402

VARIANTS = ("full", "no-writer", "no-auth")


def _answered_at_once(self: service.Ledger, request: object, signer: object) -> "Future[Committed]":
    future: Future[Committed] = Future()
    future.set_result(Committed(201, {"new_datas": [], "new_learnuplets": 0}, Receipt(0, "00" * 32)))
    return future


def _unchecked(self: service.Ledger, request: object, role: str | None = None) -> httpsig.Signer:
    return httpsig.Signer(httpsig.signature_params(request), ("content-digest",))  # type: ignore[arg-type]


def main() -> None:
    data_dir, bind, variant = sys.argv[1:4]
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if variant in ("no-writer", "no-auth"):
        service.Ledger.submit = _answered_at_once  # type: ignore[method-assign]
    if variant == "no-auth":
        service.Ledger.authenticate = _unchecked  # type: ignore[method-assign]
    server.run(Settings(data_dir=Path(data_dir), bind=bind))


if __name__ == "__main__":
    main()
