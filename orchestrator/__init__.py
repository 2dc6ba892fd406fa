"""The `orchestrator` command: thin flag parsing over the ledger and API libraries."""
