"""The gunicorn worker: uvicorn's, on uvloop, with our HTTP protocol (orchestrator/protocol.py).

One worker process serves the Falcon ASGI app on one event loop. Proxy headers are off:
X-Forwarded-For/-Proto and Forwarded never change the scheme, the client address or anything a
signature covers (``@authority``, ``@target-uri``); the Host field and the connection decide.
"""

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from orchestrator.protocol import HttpLimits, protocol_class

#: Seconds uvicorn waits for requests under way at shutdown before cancelling their tasks (a
#: cancelled task never cancels its write: the ledger commits it before it closes). Below
#: gunicorn's graceful_timeout, so the ledger closes before gunicorn would kill the worker.
GRACEFUL_S = 20


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


def worker_class(limits: HttpLimits) -> type[Worker]:
    """The worker class whose connections keep these limits."""
    kwargs = {**Worker.CONFIG_KWARGS, "http": protocol_class(limits)}
    return type("OrchestratorWorker", (Worker,), {"CONFIG_KWARGS": kwargs})
