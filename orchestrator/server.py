"""Running the Falcon ASGI app under gunicorn: one worker process (uvicorn's, one event loop), one writer."""

import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import ApiConfig, create_app
from api.metrics import Metrics
from ledger.service import Ledger
from orchestrator import logs
from orchestrator.protocol import HttpLimits
from orchestrator.settings import Settings
from orchestrator.worker import worker_class

SWITCH_INTERVAL = 0.0005  # seconds; see Server.load


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        self.ledger: Ledger | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> Any:
        # Runs in the worker process: it alone opens the data dir.
        # The event loop, the read pool and the writer share one GIL: with the default 5 ms
        # switch interval a busy loop holds the writer off for whole fsync periods (a convoy
        # measured at ~15 ms per commit group). A short interval keeps groups flowing.
        sys.setswitchinterval(SWITCH_INTERVAL)
        logs.configure(self.settings.log_level)
        metrics = Metrics()
        self.ledger = Ledger.open(self.settings.ledger_config(), on_group=metrics.on_group)
        return create_app(self.ledger, api_config(self.settings), metrics)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.ledger is not None:
            self.ledger.close()  # commits whatever writes are still queued


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(
        body_limit=settings.body_limit, read_threads=settings.threads, max_queued_writes=settings.max_queued_writes
    )


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout)


def run(settings: Settings) -> None:
    options = {
        "bind": settings.bind,
        "workers": 1,  # LevelDB allows one process per data dir
        "worker_class": worker_class(http_limits(settings)),  # uvicorn's, with JSON bodies for unparseable requests
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "forwarded_allow_ips": "",  # no proxy is trusted: forwarded headers change nothing
        "control_socket_disable": True,  # nothing is written outside the data dir
    }
    Server(settings, options).run()
