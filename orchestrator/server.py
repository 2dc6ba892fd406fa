"""Running the Falcon ASGI app under gunicorn: one worker process (uvicorn's, one event loop), one writer."""

import dataclasses
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from api.app import ApiConfig, create_app
from api.metrics import Metrics
from api.waits import Waits
from ledger.config import LedgerConfig
from ledger.errors import LedgerError, ValidationError
from ledger.service import Ledger
from ledger.witnessing import Witnessing
from orchestrator import logs, peers, stopping
from orchestrator.protocol import HttpLimits
from orchestrator.settings import Settings
from orchestrator.witness_client import poster
from orchestrator.worker import worker_class

SWITCH_INTERVAL = 0.0005  # seconds; see Server.load


OpenLedger = Callable[..., Ledger]


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any], open_ledger: OpenLedger = Ledger.open) -> None:
        self.settings = settings
        self.options = options
        self.open_ledger = open_ledger
        self.ledger: Ledger | None = None
        self.waits: Waits | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", self._worker_exit)
        self.cfg.set("when_ready", _when_ready)
        self.cfg.set("pre_fork", _pre_fork)

    def load(self) -> Any:
        # Runs in the worker process: it alone opens the data dir.
        # The event loop, the read pool and the writer share one GIL: with the default 5 ms
        # switch interval a busy loop holds the writer off for whole fsync periods (a convoy
        # measured at ~15 ms per commit group). A short interval keeps groups flowing.
        sys.setswitchinterval(SWITCH_INTERVAL)
        logs.configure(self.settings.log_level)
        metrics = Metrics()
        try:
            extra: dict[str, Any] = {}
            if self.settings.etcd:
                extra["peers"] = peers.factory(self.settings.peer_urls())
            self.ledger = self.open_ledger(self.settings.ledger_config(), on_group=metrics.on_group, **extra)
            witnessing = open_witnessing(self.settings, self.ledger)
            if witnessing is not None:
                self.ledger.witness(witnessing)
        except LedgerError as e:  # gunicorn prints just the message of this one and stops
            if self.ledger is not None:
                self.ledger.close()
            raise AppImportError(f"orchestrator: error: {e.message}") from e
        self.waits = Waits(self.ledger)
        return create_app(self.ledger, api_config(self.settings), metrics, self.waits)

    def serving_stops(self) -> None:
        """Called by the worker on the event loop as it starts to shut down: the requests that wait
        for the ledger to change are answered now, not after the graceful timeout."""
        if self.waits is not None:
            self.waits.close()

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.ledger is not None:
            self.ledger.close()  # commits whatever writes are still queued


def _when_ready(arbiter: Any) -> None:
    # The master's own handlers are in place (they queue a signal for its loop): a stop signal
    # recorded before them stops the command now, before any worker starts.
    stopping.check()


def _pre_fork(arbiter: Any, worker: Any) -> None:
    # The worker starts with its stop signals blocked; they wait for uvicorn's handlers (worker.py).
    stopping.block_for_fork()


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(
        body_limit=settings.body_limit, read_threads=settings.threads, max_queued_writes=settings.max_queued_writes,
        receipt_wait=settings.witness_timeout, public_log=settings.public_log,
    )


def open_witnessing(settings: Settings, ledger: Ledger) -> Witnessing | None:
    """The witnessing of the settings' witnesses over the ledger's checkpoints (None: no witnesses).

    Raises LedgerError if the kept witnessed checkpoint is not the ledger's, or the quorum is off."""
    witnesses = settings.witnesses()
    if not witnesses:
        return None
    try:
        return Witnessing(
            witnesses, settings.witness_quorum,
            latest=ledger.signed_checkpoint,
            consistency=lambda first, second: ledger.log.tree().consistency(first, second),
            root=lambda size: ledger.log.tree().root(size),
            post=poster(settings.witness_timeout),
            path=settings.ledger_config().witnessed_file,
        )
    except ValueError as e:
        raise ValidationError(f"--witness-quorum: {e}") from e


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout)


def run(settings: Settings, open_ledger: OpenLedger = Ledger.open) -> None:
    """Serve the data dir until stopped; `open_ledger` opens it in the worker (a seam for bench variants)."""
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
    Server(settings, options, open_ledger).run()


def check_ledger(config: LedgerConfig) -> None:
    """Open the ledger as the worker will, in a child process, then close it; raise LedgerError
    with the reason if it is refused (a damaged or shortened log, ledger/checkpoint_file.py; a
    node key or state of another ledger...).

    Before gunicorn binds its socket, so that a refused data dir costs one line on stderr and
    nothing is served. The master must not open LevelDB itself (see ledger.store.check_unlocked):
    a fork does, and exits. It also catches state up with the log, which the worker then need not.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report a refusal through the pipe, never return
        code = 0
        try:
            os.close(reader)
            stopping.interrupt_in_child()  # a long catch-up stops on Ctrl-C
            try:
                # Without etcd: this only checks the data dir (the worker takes up the order).
                Ledger.open(dataclasses.replace(config, etcd=())).close()
            except LedgerError as e:
                os.write(writer, e.message.encode())
                code = 1
        except KeyboardInterrupt:  # the parent reports it (it recorded the signal, or passed it on)
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 2
        finally:
            os._exit(code)
    os.close(writer)
    with stopping.forwarding(pid):  # a SIGTERM sent to this process alone stops the child too
        with os.fdopen(reader, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    stopping.check()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RefusedLedger(message or f"opening {config.data_dir} failed (see above)")


class RefusedLedger(LedgerError):
    """The ledger could not be opened for serving."""

    default_title = "Ledger refused"
