"""Running the Falcon app under gunicorn: one worker process, many threads, one writer."""

from typing import Any

from gunicorn.app.base import BaseApplication

from api.app import ApiConfig, create_app
from ledger.config import LedgerConfig
from ledger.service import Ledger


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, ledger_config: LedgerConfig, api_config: ApiConfig, options: dict[str, Any]) -> None:
        self.ledger_config = ledger_config
        self.api_config = api_config
        self.options = options
        self.ledger: Ledger | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> Any:
        # Runs in the worker process: it alone opens the data dir.
        self.ledger = Ledger.open(self.ledger_config)
        return create_app(self.ledger, self.api_config)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.ledger is not None:
            self.ledger.close()


def run(ledger_config: LedgerConfig, api_config: ApiConfig, bind: str, threads: int) -> None:
    options = {
        "bind": bind,
        "workers": 1,  # LevelDB allows one process per data dir
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "control_socket_disable": True,  # nothing is written outside the data dir
    }
    Server(ledger_config, api_config, options).run()
