"""The `orchestrator` command: thin flag parsing over the ledger and API libraries."""

#: The distribution that installs `ledger`, `api` and `orchestrator` (setup.cfg's name).
DISTRIBUTION = "orchestrator-ledger"


def version() -> str:
    """The installed version (setup.cfg's ``version``), or ``unknown`` when run from a bare checkout."""
    from importlib import metadata  # here, not at import: `python -m orchestrator` starts with nothing heavy

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
