"""Running the Falcon app under gunicorn: one worker process, many threads, one writer."""

import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import ApiConfig, create_app
from api.metrics import Metrics
from ledger.service import Ledger
from orchestrator import logs
from orchestrator.settings import Settings
from orchestrator.worker import JsonErrorWorker

SWITCH_INTERVAL = 0.0005  # seconds; see Server.load


OpenLedger = Callable[..., Ledger]


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any], open_ledger: OpenLedger = Ledger.open) -> None:
        self.settings = settings
        self.options = options
        self.open_ledger = open_ledger
        self.ledger: Ledger | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> Any:
        # Runs in the worker process: it alone opens the data dir.
        # Request threads and the writer share one GIL: the default 5 ms switch interval
        # lets busy request threads hold the writer off for whole fsync periods (a convoy
        # measured at ~15 ms per commit group). A short interval keeps groups flowing.
        sys.setswitchinterval(SWITCH_INTERVAL)
        logs.configure(self.settings.log_level)
        metrics = Metrics()
        self.ledger = self.open_ledger(self.settings.ledger_config(), on_group=metrics.on_group)
        return create_app(self.ledger, ApiConfig(body_limit=self.settings.body_limit), metrics)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.ledger is not None:
            self.ledger.close()


def run(settings: Settings, open_ledger: OpenLedger = Ledger.open) -> None:
    """Serve the data dir until stopped; `open_ledger` opens it in the worker (a seam for bench variants)."""
    options = {
        "bind": settings.bind,
        "workers": 1,  # LevelDB allows one process per data dir
        "worker_class": JsonErrorWorker,  # gthread, with JSON bodies for unparseable requests
        "threads": settings.threads,
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "control_socket_disable": True,  # nothing is written outside the data dir
    }
    Server(settings, options, open_ledger).run()
