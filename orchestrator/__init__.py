"""The `orchestrator` command: thin flag parsing over the ledger and API libraries."""

from importlib import metadata

#: The distribution that installs `ledger`, `api` and `orchestrator` (setup.cfg's name).
DISTRIBUTION = "orchestrator-ledger"


def version() -> str:
    """The installed version (setup.cfg's ``version``), or ``unknown`` when run from a bare checkout."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
