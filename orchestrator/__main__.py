# `python -m orchestrator`. Stop signals are recorded from the first line on, so that a Ctrl-C
# while the command starts is not lost inside an import (orchestrator/stopping.py); main() then
# gives every command but `serve` Python's own handling back.
from orchestrator import stopping

stopping.defer()

from orchestrator.cli import main  # noqa: E402

raise SystemExit(main())
