"""The gunicorn worker: uvicorn's, on uvloop, with our HTTP protocol (orchestrator/protocol.py).

One worker process serves the Falcon ASGI app on one event loop. Proxy headers are off:
X-Forwarded-For/-Proto and Forwarded never change the scheme, the client address or anything a
signature covers (``@authority``, ``@target-uri``); the Host field and the connection decide.

Stopping (orchestrator/stopping.py): the worker is forked with SIGINT, SIGTERM and SIGQUIT
blocked; they stay pending while it opens the ledger, until uvicorn's handlers are in place. Each
of them then stops it gracefully (a second SIGINT forcefully): the requests under way are
answered (at most ``GRACEFUL_S``), the requests that wait for the ledger to change are answered
at once with what they would get had their time run out, and the worker returns from serving
and exits normally, so that gunicorn's ``worker_exit`` closes the ledger.
"""

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from orchestrator import stopping
from orchestrator.protocol import HttpLimits, protocol_class

#: Seconds uvicorn waits for requests under way at shutdown before cancelling their tasks (a
#: cancelled task never cancels its write: the ledger commits it before it closes). Below
#: gunicorn's graceful_timeout, so the ledger closes before gunicorn would kill the worker.
GRACEFUL_S = 20


class StoppingServer(uvicorn.Server):
    """uvicorn's server, stopped by SIGINT, SIGTERM or SIGQUIT, and exiting normally afterwards."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown
        self._interrupts = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for signum in stopping.WORKER_SIGNALS:
            signal.signal(signum, self.handle_exit)
        stopping.unblock()  # what arrived since the fork is handled now
        try:
            yield
        finally:
            # Done serving: the process exits next and closes the ledger on its way out (not
            # uvicorn's way, which raises the caught signal again under the default handlers).
            for signum in stopping.WORKER_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # On Ctrl-C the worker gets the terminal's SIGINT and the master's SIGQUIT, in either order:
        # only a second SIGINT means "do not wait".
        if sig == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                self.force_exit = True
        self.should_exit = True

    async def shutdown(self, sockets: Any = None) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        await super().shutdown(sockets=sockets)


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": protocol_class(HttpLimits()),
        "ws": "none",
        "lifespan": "off",
        "proxy_headers": False,
        "forwarded_allow_ips": [],
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_S,
    }

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        # The gunicorn application (orchestrator.server.Server) says what to do as serving stops.
        server = StoppingServer(self.config, getattr(self.app, "serving_stops", None))
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def worker_class(limits: HttpLimits) -> type[Worker]:
    """The worker class whose connections keep these limits."""
    kwargs = {**Worker.CONFIG_KWARGS, "http": protocol_class(limits)}
    return type("OrchestratorWorker", (Worker,), {"CONFIG_KWARGS": kwargs})
